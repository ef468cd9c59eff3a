"""The audit log of a project: who changed the loop or who may act, when, before and after."""

from __future__ import annotations

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import generics

from api.access import ADMINS
from api.base import ProjectScopedView
from api.serializers import AuditEventSerializer, AuditFilterSerializer
from feedback.models import AuditEvent
from feedback.selectors import audit_events


@extend_schema(
    tags=["audit"],
    summary="The project's audit log, newest first (admin)",
    description="One entry per change to the loop or to who may act: promotions, rollbacks, "
    "iterations started, cancelled, approved or rejected, gate, schedule, training-config and "
    "settings changes, members added, changed or removed, imports and exports. `actor` is null "
    "for the system; `before` and `after` name people by id. Entries are never changed.",
    parameters=[AuditFilterSerializer],
)
class AuditEventListApi(ProjectScopedView, generics.ListAPIView):
    serializer_class = AuditEventSerializer
    read_roles = ADMINS

    def get_queryset(self) -> QuerySet[AuditEvent]:
        if self.is_schema:
            return AuditEvent.objects.none()
        filters = self.query(AuditFilterSerializer)
        return audit_events(project=self.get_project(), **filters)
