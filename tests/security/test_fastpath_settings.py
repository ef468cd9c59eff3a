"""The lean labeling path (api/fastpath.py) under settings it must not answer past: it stays
unmounted (config/asgi.py mounts it only where `enabled()`) and says why, or hands the
request to Django."""

from __future__ import annotations

import logging

import pytest
from django.conf import settings

from api import fastpath
from feedback.models import Assignment
from tests.api.test_fastpath import NEXT, Caller, run
from tests.factories import make_comparisons

pytestmark = pytest.mark.skipif(
    settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql",
    reason="the fast path serves PostgreSQL only (SQLite: Django answers everything)",
)

PREFIX = "HONE_LABELING_FASTPATH is on, but Django serves next-item and submit: "
LOGIN_REQUIRED = "django.contrib.auth.middleware.LoginRequiredMiddleware"
FRAME_OPTIONS = "django.middleware.clickjacking.XFrameOptionsMiddleware"
CASES = {
    "a middleware more": (
        {"MIDDLEWARE": [*settings.MIDDLEWARE, LOGIN_REQUIRED]},
        f"MIDDLEWARE adds ['{LOGIN_REQUIRED}'] and lacks []",
    ),
    "a middleware less": (
        {"MIDDLEWARE": [m for m in settings.MIDDLEWARE if m != FRAME_OPTIONS]},
        f"MIDDLEWARE adds [] and lacks ['{FRAME_OPTIONS}']",
    ),
    "middleware reordered": (
        {"MIDDLEWARE": list(reversed(settings.MIDDLEWARE))},
        "MIDDLEWARE has its classes in another order",
    ),
    "www redirect": ({"PREPEND_WWW": True}, "PREPEND_WWW is set"),
    "refused user agents": (
        {"DISALLOWED_USER_AGENTS": [r"^curl/"]},
        "DISALLOWED_USER_AGENTS is set",
    ),
    "session saved every request": (
        {"SESSION_SAVE_EVERY_REQUEST": True},
        "SESSION_SAVE_EVERY_REQUEST is set",
    ),
    "csrf in sessions": ({"CSRF_USE_SESSIONS": True}, "CSRF_USE_SESSIONS is set"),
    "two at once": (
        {"PREPEND_WWW": True, "CSRF_USE_SESSIONS": True},
        "PREPEND_WWW is set; CSRF_USE_SESSIONS is set",
    ),
}


@pytest.mark.django_db
@pytest.mark.parametrize("case", CASES)
def test_a_setting_the_lean_path_does_not_reproduce_keeps_it_unmounted_and_is_named(
    case, settings, caplog
):
    changed, reason = CASES[case]
    caplog.set_level(logging.WARNING, logger="api.fastpath")
    with_defaults = fastpath.enabled()
    logged_with_defaults = list(caplog.messages)
    for name, value in changed.items():
        setattr(settings, name, value)

    assert (with_defaults, logged_with_defaults) == (True, [])
    assert fastpath.enabled() is False
    assert caplog.messages == [f"{PREFIX}{reason}."]


@pytest.mark.django_db(transaction=True)
def test_with_ssl_redirect_plain_http_gets_djangos_redirect_and_https_is_served(
    project, annotator, settings
):
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    make_comparisons(project, [("first answer", "second answer")])
    plain = Caller(None, user=annotator)
    proxied = Caller(None, user=annotator)
    proxied.headers += [(b"x-forwarded-proto", b"https"), (b"origin", b"https://127.0.0.1")]

    async def scenario(app):
        plain.app = proxied.app = app
        return await plain.post(NEXT), await proxied.post(NEXT)

    (redirected, leased), served = run("fast", scenario)

    assert (redirected[0], dict(redirected[1])[b"Location"], redirected[2]) == (
        301,
        f"https://127.0.0.1{NEXT}".encode(),
        b"",
    )
    assert leased[0] == 200
    assert served == {"django": 1, "next": 1}
    assert Assignment.objects.count() == 1
