"""Shared pieces of the API views: project scoping by role, pagination, errors."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework import generics, status
from rest_framework.pagination import PageNumberPagination
from rest_framework.permissions import SAFE_METHODS
from rest_framework.response import Response

from api.access import ADMINS, STAFF, project_for
from feedback.apis import _errors
from feedback.models import Membership, Project


class Page(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


class ProjectScopedView(generics.GenericAPIView):
    """Every view under /api/projects/<slug>/: roles for reading and for writing.

    `get_project()` raises 404 for a non-member and 403 for a member without the role.
    """

    read_roles: tuple[str, ...] = STAFF
    write_roles: tuple[str, ...] = ADMINS
    pagination_class = Page

    def initial(self, request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        self._scoped: tuple[Project, Membership] | None = None

    def get_project(self) -> Project:
        if getattr(self, "_scoped", None) is None:
            roles = self.read_roles if self.request.method in SAFE_METHODS else self.write_roles
            self._scoped = project_for(
                user=self.request.user, slug=self.kwargs["slug"], roles=roles
            )
        return self._scoped[0]

    def get_membership(self) -> Membership:
        self.get_project()
        return self._scoped[1]

    @property
    def is_schema(self) -> bool:
        return getattr(self, "swagger_fake_view", False)

    def query(self, serializer_class) -> dict[str, Any]:
        """Validated query-string filters (400 naming the parameter when one is wrong)."""
        serializer = serializer_class(data=self.request.query_params)
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data


def conflict(error: ValidationError) -> Response:
    """409 with the usual error body: the request is fine, the project's state forbids it."""
    detail = error.message_dict if hasattr(error, "error_dict") else error.messages
    return Response({"errors": _errors(detail)}, status=status.HTTP_409_CONFLICT)


@csrf_exempt  # nothing to protect: it only ever answers 404
def not_found(request, *args: Any, **kwargs: Any) -> JsonResponse:
    """Any /api/ address that matches no endpoint: the same error body as the rest."""
    return JsonResponse(
        {"errors": [{"field": "detail", "message": "No such API endpoint."}]}, status=404
    )
