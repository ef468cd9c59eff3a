"""Shared pieces of the API views: project scoping by role, pagination, errors."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, ValidationError
from django.db.models import QuerySet
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework import generics, status
from rest_framework.exceptions import APIException
from rest_framework.exceptions import ValidationError as DRFValidationError
from rest_framework.pagination import PageNumberPagination
from rest_framework.permissions import SAFE_METHODS
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from api.access import ADMINS, STAFF, project_for
from feedback.models import Membership, Project


def error_list(detail: Any, field: str = "non_field_errors") -> list[dict[str, str]]:
    """Flatten DRF/Django error details into [{"field": ..., "message": ...}]."""
    if isinstance(detail, dict):
        return [e for key, value in detail.items() for e in error_list(value, str(key))]
    if isinstance(detail, (list, tuple)):
        return [e for value in detail for e in error_list(value, field)]
    return [{"field": field, "message": str(detail)}]


class BodyTooLarge(APIException):
    """413: a request body over the endpoint's limit (the labeling endpoints' own, here and in
    api/fastpath.py; DATA_UPLOAD_MAX_MEMORY_SIZE for the others)."""

    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "body_too_large"

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"The request body is larger than {limit} bytes, the most this endpoint accepts."
        )


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Every error body has the same shape: {"errors": [{"field", "message"}]}."""
    if isinstance(exc, RequestDataTooBig):  # Django's own limit, met reading request.data
        exc = BodyTooLarge(settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
    if isinstance(exc, ValidationError):
        detail = exc.message_dict if hasattr(exc, "error_dict") else exc.messages
        return Response({"errors": error_list(detail)}, status=status.HTTP_400_BAD_REQUEST)
    response = drf_exception_handler(exc, context)
    if response is not None:
        if isinstance(exc, DRFValidationError):
            response.data = {"errors": error_list(exc.detail)}
        else:
            response.data = {
                "errors": error_list(response.data.get("detail", response.data), "detail")
            }
    return response


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

    def filtered(self, queryset: QuerySet, serializer_class, lookups: dict[str, str]) -> QuerySet:
        """`queryset` narrowed by the query string's filters that were given, each by its
        lookup in `lookups` (parameter name -> field lookup)."""
        filters = self.query(serializer_class)
        given = {lookup: filters[name] for name, lookup in lookups.items() if name in filters}
        return queryset.filter(**given)


def conflict(error: ValidationError) -> Response:
    """409 with the usual error body: the request is fine, the project's state forbids it."""
    detail = error.message_dict if hasattr(error, "error_dict") else error.messages
    return Response({"errors": error_list(detail)}, status=status.HTTP_409_CONFLICT)


@csrf_exempt  # nothing to protect: it only ever answers 404
def not_found(request, *args: Any, **kwargs: Any) -> JsonResponse:
    """Any /api/ address that matches no endpoint: the same error body as the rest."""
    return JsonResponse(
        {"errors": [{"field": "detail", "message": "No such API endpoint."}]}, status=404
    )
