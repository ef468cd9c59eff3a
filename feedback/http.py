"""Small helpers of the HTML and JSON views (not of the DRF API): error messages, lenient
integers from forms, JSON bodies."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.http import HttpRequest

from feedback.imports import json_loads


def error_messages(error: Exception) -> list[str]:
    return list(getattr(error, "messages", [str(error)]))


def int_or(value: str | None, default: int = 0) -> int:
    try:
        return int(value) if value not in (None, "") else default
    except ValueError:
        return default


def json_body(request: HttpRequest) -> dict[str, Any]:
    if request.content_type == "application/json":
        try:
            body = json_loads(request.body or b"{}")
        except ValueError as error:  # not JSON, or JSON Hone does not take (NaN, deep nesting)
            raise ValidationError(f"The request body is not JSON Hone takes: {error}") from error
        if not isinstance(body, dict):
            raise ValidationError("The request body must be a JSON object.")
        return body
    return request.POST.dict()
