"""The fast path: the two hot endpoints of labeling, served in front of Django on PostgreSQL.

POST /api/projects/<slug>/comparisons/next/ and POST /api/assignments/<id>/label/ are what
every annotator calls for every item. Through Django they cost about 17 ms of CPU per pair
(request, middleware, session and user queries, DRF, the ORM, a thread hop); here, as an
ASGI app in front of Django (config/asgi.py), the same statements run on a psycopg async
connection pool, and the answer is the same.

What is the same, and how:
- The rules: feedback/labeling/, the statements and steps that feedback.services runs on
  Django's connection, run here as the two PL/pgSQL functions built from them (one round
  trip per request).
- Who is calling: the session cookie through django.contrib.auth.get_user (session hash,
  backend, active user), else an "Authorization: Token" header through DRF's
  TokenAuthentication; CSRF through DRF's SessionAuthentication.enforce_csrf; the host
  through ALLOWED_HOSTS; DRF's throttles; membership through project_for_member, and again
  by the labeling statements themselves on every call (an active member); the input
  through the DRF serializer and vote_check of the Django view; the body through DRF's
  JSONRenderer; the headers the middleware adds (test: tests/api/test_fastpath.py).
- Anything that is not the plain successful case (no session, a bad CSRF token, a
  non-member, bad input, a lease not yours or no longer open, a double submit, a throttled
  caller, an unusual content type, an Accept header or ?format= asking for another
  rendering) goes to Django untouched, before anything is written
  here or after rolling back: Django answers it with its own status and error body.
- Bodies: one larger than HONE_LABELING_MAX_BODY_BYTES gets 413 before anything else, as
  the Django views answer it (api.views.LabelingBodyLimit); here no more than that is read.

What is cached, per process: the user of a session key or token and the settings of the
project they asked for, for AUTH_CACHE_SECONDS. A logout or a password change (the session
hash) takes effect within that time; a change of the project's lease, gold or repeat settings
likewise. A removed membership or a deactivated user takes effect at once: the labeling
statements check both in the same round trip (feedback/labeling.py), and what they refuse
goes to Django.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from importlib import import_module
from io import BytesIO
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib import auth
from django.core.exceptions import DisallowedHost, ValidationError
from django.core.handlers.asgi import ASGIRequest
from django.db import DatabaseError, close_old_connections, connections
from django.http import Http404, HttpRequest
from django.utils import timezone
from psycopg import OperationalError
from psycopg.errors import RaiseException
from rest_framework import exceptions, serializers
from rest_framework.authentication import SessionAuthentication, TokenAuthentication
from rest_framework.permissions import IsAuthenticated
from rest_framework.renderers import JSONRenderer
from rest_framework.settings import api_settings

from api.base import BodyTooLarge, error_list
from api.views import LabelSubmitApi, label_payload, lease_payload
from feedback import labeling
from feedback.imports import json_loads
from feedback.selectors import project_for_member
from feedback.services import label_stored_announce, vote_check

logger = logging.getLogger(__name__)

AUTH_CACHE_SECONDS = 10.0
_CACHE_ENTRIES = 10_000  # a bound on each cache; past it the cache starts again empty

# The URL patterns of api/urls.py for these two views (slug and id converters).
_NEXT = re.compile(r"/api/projects/(?P<slug>[-a-zA-Z0-9_]+)/comparisons/next/")
_LABEL = re.compile(r"/api/assignments/(?P<assignment_id>[0-9]{1,18})/label/")

# Accept headers for which DRF's content negotiation picks its first renderer, JSON.
_JSON = ("*/*", "application/json")
# Content types whose body Django reads a CSRF token from (before the header's).
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class _TTLCache:
    def __init__(self) -> None:
        self._entries: dict[Any, tuple[float, Any]] = {}

    def get(self, key: Any) -> tuple[bool, Any]:
        entry = self._entries.get(key)
        if entry is None or entry[0] < time.monotonic():
            return False, None
        return True, entry[1]

    def put(self, key: Any, value: Any) -> None:
        """Kept for AUTH_CACHE_SECONDS at most, at least half of it, at random: entries
        filled together (every annotator starting at nine) then expire apart, instead of
        all asking Django again in the same instant."""
        if len(self._entries) >= _CACHE_ENTRIES:
            self._entries.clear()
        seconds = AUTH_CACHE_SECONDS * random.uniform(0.5, 1.0)
        self._entries[key] = (time.monotonic() + seconds, value)


def _django(function: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
    """`function` in a thread, with Django's database connections handed back after, as
    Django does at the end of a request."""

    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        finally:
            close_old_connections()
            connections.close_all()

    return sync_to_async(call, thread_sensitive=False)


def _session_user(session_key: str) -> Any:
    """The active user the session belongs to, or None (django.contrib.auth's own check:
    backend, session auth hash, active)."""
    request = HttpRequest()
    request.session = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    user = auth.get_user(request)
    return user if user.is_authenticated and user.is_active else None


def _token_user(key: str) -> Any:
    try:
        user, _ = TokenAuthentication().authenticate_credentials(key)
    except exceptions.AuthenticationFailed:
        return None
    return user


def _membership_rules(user: Any, slug: str) -> labeling.ProjectRules | None:
    try:
        project = project_for_member(user=user, slug=slug)
    except Http404:
        return None
    return labeling.ProjectRules.of(project)


def _label_input(request: ASGIRequest, body: bytes) -> dict[str, Any] | None:
    """The submit's fields, validated as the Django view does, or None to let it answer."""
    if request.content_type != "application/json" or request.encoding not in (None, "utf-8"):
        return None
    try:  # DRF reads no body without a length
        length = int(request.META.get("CONTENT_LENGTH", request.META.get("HTTP_CONTENT_LENGTH", 0)))
    except (TypeError, ValueError):
        length = 0
    if length == 0:
        return None
    try:
        data = json_loads(body)  # as strict as Django's parser: what it refuses, Django answers
    except ValueError:
        return None
    try:
        fields = _LABEL_INPUT.run_validation(data)  # what is_valid() runs
        vote_check(choice=fields["choice"], strength=fields["strength"])
    except (serializers.ValidationError, ValidationError):
        return None
    return fields


# One instance for the process: run_validation keeps no state between calls, and building
# a serializer (a deep copy of its fields) costs more than validating with it.
_LABEL_INPUT = LabelSubmitApi.InputSerializer()


def enabled() -> bool:
    """On PostgreSQL (the pool and the row locks), unless HONE_LABELING_FASTPATH is off or a
    setting in force is one this module does not reproduce (logged: Django then serves both
    endpoints)."""
    if not settings.HONE_LABELING_FASTPATH or connections["default"].vendor != "postgresql":
        return False
    unreproduced = settings_not_reproduced()
    if unreproduced:
        logger.warning(
            "HONE_LABELING_FASTPATH is on, but Django serves next-item and submit: %s.",
            "; ".join(unreproduced),
        )
    return not unreproduced


# The middleware whose effect on these two answers is reproduced here (_respond,
# _security_headers, _caller): a copy of config/settings/base.py's list on purpose, so that a
# change there turns this path off until someone checks what the change does to the answers.
_MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]


def settings_not_reproduced() -> list[str]:
    """What in the settings makes Django answer these endpoints otherwise than this module
    would, each named; empty when nothing does."""
    found = []
    if list(settings.MIDDLEWARE) != _MIDDLEWARE:
        added = [m for m in settings.MIDDLEWARE if m not in _MIDDLEWARE]
        missing = [m for m in _MIDDLEWARE if m not in settings.MIDDLEWARE]
        found.append(
            f"MIDDLEWARE adds {added} and lacks {missing}"
            if added or missing
            else "MIDDLEWARE has its classes in another order"
        )
    if list(api_settings.DEFAULT_AUTHENTICATION_CLASSES) != [
        SessionAuthentication,
        TokenAuthentication,
    ]:
        found.append("REST_FRAMEWORK's DEFAULT_AUTHENTICATION_CLASSES are not session, token")
    if list(api_settings.DEFAULT_PERMISSION_CLASSES) != [IsAuthenticated]:
        found.append("REST_FRAMEWORK's DEFAULT_PERMISSION_CLASSES are not IsAuthenticated")
    if api_settings.DEFAULT_RENDERER_CLASSES[0] is not JSONRenderer:
        found.append("REST_FRAMEWORK's first DEFAULT_RENDERER_CLASSES is not JSONRenderer")
    # CommonMiddleware redirects to www. or refuses user agents; SessionMiddleware sets the
    # cookie again on every answer; the CSRF secret is read from the cookie here.
    for name in (
        "PREPEND_WWW",
        "DISALLOWED_USER_AGENTS",
        "SESSION_SAVE_EVERY_REQUEST",
        "CSRF_USE_SESSIONS",
    ):
        if getattr(settings, name):
            found.append(f"{name} is set")
    return found


class LabelingFastPath:
    """ASGI app: the two hot endpoints, everything else (and every unusual case) to `app`."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.app = app
        self.pool: Any = None
        self._pool_lock = asyncio.Lock()
        self._users = _TTLCache()
        self._projects = _TTLCache()
        self._csrf_passed = _TTLCache()
        self.served: Counter[str] = Counter()  # "next", "label", "django": what answered

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope.get("root_path"):
            return await self.app(scope, receive, send)
        next_match = _NEXT.fullmatch(scope["path"])
        label_match = None if next_match else _LABEL.fullmatch(scope["path"])
        if next_match is None and label_match is None:
            return await self.app(scope, receive, send)

        limit = settings.HONE_LABELING_MAX_BODY_BYTES
        body = await _read_body(receive, scope, limit)
        request = ASGIRequest(scope, BytesIO(body or b""))
        if body is None:  # before knowing the caller: nothing past the limit is read or held
            self.served["too_large"] += 1
            payload = {"errors": error_list(BodyTooLarge(limit).detail, "detail")}
            closing = [(b"Connection", b"close")]  # the rest of the body is never read
            return await self._respond(request, send, 413, payload, closing)
        if scope.get("query_string") or request.META.get("HTTP_ACCEPT", "*/*") not in _JSON:
            answer = None  # DRF's content negotiation (?format=, Accept: text/html) decides
        elif next_match:
            answer = await self._next(request, next_match["slug"])
        else:
            answer = await self._label(request, int(label_match["assignment_id"]), body)
        if answer is None:
            self.served["django"] += 1
            return await self.app(scope, _replay(body, receive), send)
        self.served["next" if next_match else "label"] += 1
        status, payload = answer
        await self._respond(request, send, status, payload)

    # --- The two endpoints ----------------------------------------------------------------

    async def _next(self, request: ASGIRequest, slug: str) -> tuple[int, Any] | None:
        user = await self._caller(request)
        if user is None:
            return None
        rules = await self._cached(self._projects, (user.pk, slug), _membership_rules, user, slug)
        if rules is None or not _throttles_allow(request, user):
            return None
        call = labeling.lease_call(
            rules=rules, user_id=user.pk, now=timezone.now(), own_transaction=True
        )
        try:
            row = await self._call(call)
        except RaiseException as error:
            if not str(error.diag.message_primary).startswith(labeling.RAISED):
                raise
            return None  # no longer a member: Django answers (404)
        return (204, None) if row is None else (200, lease_payload(labeling.lease_of(row)))

    async def _label(
        self, request: ASGIRequest, assignment_id: int, body: bytes
    ) -> tuple[int, Any] | None:
        user = await self._caller(request)
        fields = _label_input(request, body) if user is not None else None
        if fields is None or not _throttles_allow(request, user):
            return None
        call = labeling.label_call(
            user_id=user.pk,
            assignment_id=assignment_id,
            now=timezone.now(),
            **{**fields, "rationale": fields["rationale"].strip()},
        )
        try:
            row = await self._call(call)
        except RaiseException as error:
            if not str(error.diag.message_primary).startswith(labeling.RAISED):
                raise
            return None  # rolled back: Django answers (already submitted, closed, ...)
        done = labeling.submitted_of(row)
        if not done.is_repeat and (done.trigger_new_labels or done.human_gate is not None):
            await _django(label_stored_announce)(done=done)  # the loop may act on it
        payload = label_payload(
            label_id=done.label_id,
            comparison_id=done.comparison_id,
            choice=fields["choice"],
            strength=fields["strength"],
            a_shown_left=done.a_shown_left,
        )
        return 201, payload

    # --- Who is calling -----------------------------------------------------------------

    async def _caller(self, request: ASGIRequest) -> Any:
        """The authenticated user as DRF would find it (session first, with its CSRF check,
        then a token), or None to let Django answer."""
        try:
            request.get_host()
        except DisallowedHost:
            return None
        if settings.SECURE_SSL_REDIRECT and not request.is_secure():
            return None  # SecurityMiddleware redirects it to HTTPS
        session_key = request.COOKIES.get(settings.SESSION_COOKIE_NAME)
        if session_key:
            user = await self._cached(
                self._users, ("session", session_key), _session_user, session_key
            )
            if user is not None:
                return user if self._csrf_passes(request) else None
        words = request.META.get("HTTP_AUTHORIZATION", "").split()
        if len(words) == 2 and words[0].lower() == "token":
            return await self._cached(self._users, ("token", words[1]), _token_user, words[1])
        return None

    def _csrf_passes(self, request: ASGIRequest) -> bool:
        """DRF's CSRF check of a session-authenticated request. A pass on a token sent in the
        X-CSRFToken header is remembered: its answer depends only on these request values and
        the settings. A form body is checked every time: Django takes its token first, and
        the body is no part of the key."""
        meta = request.META
        key = None
        if meta.get(settings.CSRF_HEADER_NAME) and request.content_type not in _FORM_TYPES:
            key = (
                request.COOKIES.get(settings.CSRF_COOKIE_NAME),
                meta.get(settings.CSRF_HEADER_NAME),
                meta.get("HTTP_ORIGIN"),
                meta.get("HTTP_REFERER"),
                request.get_host(),
                request.is_secure(),
            )
            if self._csrf_passed.get(key)[0]:
                return True
        try:
            SessionAuthentication().enforce_csrf(request)
        except exceptions.PermissionDenied:
            return False
        if key is not None:
            self._csrf_passed.put(key, True)
        return True

    async def _cached(self, cache: _TTLCache, key: Any, function: Callable[..., Any], *args) -> Any:
        """`function(*args)` run through Django and remembered in `cache`; None, and nothing
        remembered, when the database fails it (a connection that a restart ended): Django
        then answers the whole request, on a connection its pool checks."""
        found, value = cache.get(key)
        if not found:
            try:
                value = await _django(function)(*args)
            except DatabaseError:
                return None
            cache.put(key, value)
        return value

    # --- Database and answer --------------------------------------------------------------

    async def _call(self, call: tuple[str, Any]) -> Any:
        """The row of one labeling function call. After a restart of PostgreSQL the pool
        holds dead connections, each found out by its next query (the pool then drops it):
        the call runs again on another connection, as many times as the pool may hold
        connections, after which it has a new one. Running it again is safe: a lease asked
        again is the same lease, a label sent again is a double submit (Django answers it
        with the stored label). Any other error is raised at once."""
        pool = await self._pool()
        retries = pool.max_size
        while True:
            async with pool.connection() as conn:
                try:
                    return await (await conn.execute(*call)).fetchone()
                except OperationalError:
                    if not conn.broken or not retries:
                        raise
            retries -= 1

    async def _pool(self) -> Any:
        """A psycopg async pool per process, opened on first use, sized like Django's."""
        if self.pool is None:
            async with self._pool_lock:
                if self.pool is None:
                    from psycopg import AsyncConnection
                    from psycopg_pool import AsyncConnectionPool

                    connection = connections["default"]
                    options = connection.settings_dict["OPTIONS"].get("pool") or {}
                    kwargs = connection.get_connection_params()
                    kwargs.pop("cursor_factory", None)
                    # Prepared statements with generic plans: planning the joins of the
                    # labeling statements costs more than running them (0.5 ms against 0.2).
                    kwargs.update(autocommit=True, prepare_threshold=1)
                    kwargs["options"] = (
                        kwargs.get("options", "") + " -c plan_cache_mode=force_generic_plan"
                    ).strip()
                    pool = AsyncConnectionPool(
                        kwargs=kwargs,
                        connection_class=AsyncConnection,
                        min_size=options.get("min_size", 1),
                        max_size=options.get("max_size", 8),
                        timeout=options.get("timeout", 10.0),
                        open=False,
                    )
                    await pool.open()
                    self.pool = pool
        return self.pool

    async def aclose(self) -> None:
        if self.pool is not None:
            await self.pool.close()
            self.pool = None

    async def _respond(
        self, request: ASGIRequest, send: Send, status: int, payload: Any, extra: Any = ()
    ) -> None:
        body = b"" if payload is None else JSONRenderer().render(payload)
        headers = [(b"Content-Type", b"application/json")] if body else []
        headers += [
            (b"Vary", b"Accept, Cookie"),
            (b"Allow", b"POST, OPTIONS"),
            (b"X-Frame-Options", settings.X_FRAME_OPTIONS.encode()),
            (b"Content-Length", str(len(body)).encode()),
            *_security_headers(request),
            *extra,
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _throttles_allow(request: ASGIRequest, user: Any) -> bool:
    """DRF's throttles, as APIView.check_throttles runs them (same cache, same keys)."""
    request.user = user
    return all(
        throttle().allow_request(request, None)
        for throttle in api_settings.DEFAULT_THROTTLE_CLASSES
    )


def _security_headers(request: ASGIRequest) -> list[tuple[bytes, bytes]]:
    """What SecurityMiddleware adds to an API answer (as Django writes the names)."""
    headers = []
    if settings.SECURE_HSTS_SECONDS and request.is_secure():
        hsts = f"max-age={settings.SECURE_HSTS_SECONDS}"
        if settings.SECURE_HSTS_INCLUDE_SUBDOMAINS:
            hsts += "; includeSubDomains"
        if settings.SECURE_HSTS_PRELOAD:
            hsts += "; preload"
        headers.append((b"Strict-Transport-Security", hsts.encode()))
    if settings.SECURE_CONTENT_TYPE_NOSNIFF:
        headers.append((b"X-Content-Type-Options", b"nosniff"))
    if settings.SECURE_REFERRER_POLICY:
        policy = settings.SECURE_REFERRER_POLICY
        if not isinstance(policy, str):
            policy = ",".join(policy)
        headers.append((b"Referrer-Policy", policy.encode()))
    if settings.SECURE_CROSS_ORIGIN_OPENER_POLICY:
        headers.append(
            (b"Cross-Origin-Opener-Policy", settings.SECURE_CROSS_ORIGIN_OPENER_POLICY.encode())
        )
    return headers


async def _read_body(receive: Receive, scope: Scope, limit: int) -> bytes | None:
    """The request body, or None when it is larger than `limit` bytes: by its Content-Length
    (then nothing is read), or as read (then nothing after the chunk that passed the limit,
    and what was read is let go)."""
    for name, value in scope["headers"]:
        if name == b"content-length" and value.isdigit() and int(value) > limit:
            return None
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """`receive` for Django after the body was read here: the body once, then the client."""
    sent = False

    async def replayed() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed
