"""JSON endpoints of the labeling path: next comparison, submit a label."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError as DRFValidationError
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework.views import exception_handler as drf_exception_handler

from feedback.labeling import Lease
from feedback.models import Membership, PreferenceLabel
from feedback.quality import project_quality
from feedback.selectors import project_for_member
from feedback.services import MAX_TIME_SPENT_MS, assignment_lease, label_submit


def _errors(detail: Any, field: str = "non_field_errors") -> list[dict[str, str]]:
    """Flatten DRF/Django error details into [{"field": ..., "message": ...}]."""
    if isinstance(detail, dict):
        return [e for key, value in detail.items() for e in _errors(value, str(key))]
    if isinstance(detail, (list, tuple)):
        return [e for value in detail for e in _errors(value, field)]
    return [{"field": field, "message": str(detail)}]


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Every error body has the same shape: {"errors": [{"field", "message"}]}."""
    if isinstance(exc, DjangoValidationError):
        detail = exc.message_dict if hasattr(exc, "error_dict") else exc.messages
        return Response({"errors": _errors(detail)}, status=status.HTTP_400_BAD_REQUEST)
    response = drf_exception_handler(exc, context)
    if response is not None:
        if isinstance(exc, DRFValidationError):
            response.data = {"errors": _errors(exc.detail)}
        else:
            response.data = {
                "errors": _errors(response.data.get("detail", response.data), "detail")
            }
    return response


def lease_payload(lease: Lease) -> dict[str, Any]:
    """The answer of POST .../comparisons/next/ (here and in api/fastpath.py)."""
    assignment = lease.assignment
    return {
        "assignment_id": assignment["id"],
        "comparison_id": assignment["comparison_id"],
        "expires_at": assignment["expires_at"].isoformat(),
        "a_shown_left": assignment["a_shown_left"],
        "prompt": lease.prompt_messages,
        "completion_a": lease.completion_a,
        "completion_b": lease.completion_b,
    }


def label_payload(
    *, label_id: int, comparison_id: int, choice: str, strength: int, a_shown_left: bool
) -> dict[str, Any]:
    """The answer of POST /api/assignments/<id>/label/ (here and in api/fastpath.py)."""
    return {
        "label_id": label_id,
        "comparison_id": comparison_id,
        "choice": choice,
        "strength": strength,
        "a_shown_left": a_shown_left,
    }


class ComparisonNextApi(APIView):
    """POST: the caller's current lease, or a new one. 204 when nothing is left to label."""

    def post(self, request, slug: str) -> Response:
        project = project_for_member(user=request.user, slug=slug)
        lease = assignment_lease(project=project, user=request.user)
        if lease is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(lease_payload(lease))


class LabelSubmitApi(APIView):
    class InputSerializer(serializers.Serializer):
        choice = serializers.CharField()
        strength = serializers.IntegerField(default=PreferenceLabel.Strength.CLEAR)
        rationale = serializers.CharField(required=False, allow_blank=True, default="")
        time_spent_ms = serializers.IntegerField(
            required=False, default=0, min_value=0, max_value=MAX_TIME_SPENT_MS
        )

    def post(self, request, assignment_id: int) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        label = label_submit(
            user=request.user, assignment_id=assignment_id, **serializer.validated_data
        )
        payload = label_payload(
            label_id=label.pk,
            comparison_id=label.comparison_id,
            choice=label.choice,
            strength=label.strength,
            a_shown_left=label.a_shown_left,
        )
        return Response(payload, status=status.HTTP_201_CREATED)


class ProjectQualityApi(APIView):
    """GET: gold accuracy, self-consistency, position bias and agreement (reviewers, admins)."""

    def get(self, request, slug: str) -> Response:
        project = project_for_member(
            user=request.user, slug=slug, roles=(Membership.Role.REVIEWER, Membership.Role.ADMIN)
        )
        return Response(project_quality(project=project))
