"""Answers to requests Django refuses before a view takes them (handler400 in config/urls.py)."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.http import HttpRequest, HttpResponse, JsonResponse

from api.base import BodyTooLarge


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    """Django's 400, saying why where the client can act on it: a body over
    DATA_UPLOAD_MAX_MEMORY_SIZE (413), too many form fields or files. The API's error body
    under /api/, plain text elsewhere; the exception's own text (a host name, a setting) is
    never echoed."""
    status = 400
    if isinstance(exception, RequestDataTooBig):
        status = 413
        message = str(BodyTooLarge(settings.DATA_UPLOAD_MAX_MEMORY_SIZE).detail)
    elif isinstance(exception, TooManyFieldsSent):
        message = f"The form has more than {settings.DATA_UPLOAD_MAX_NUMBER_FIELDS} fields."
    elif isinstance(exception, TooManyFilesSent):
        message = f"The form has more than {settings.DATA_UPLOAD_MAX_NUMBER_FILES} files."
    else:
        message = "Bad request."
    if request.path.startswith("/api/"):
        return JsonResponse({"errors": [{"field": "detail", "message": message}]}, status=status)
    return HttpResponse(message, status=status, content_type="text/plain; charset=utf-8")
