"""POST requests through an ASGI app as a server hands them over: any body, in chunks, with or
without a Content-Length, and a count of the chunks the app read. tests/api/test_fastpath.py
makes its callers' requests with it (`Caller` for a session or token, `run` for Django alone or
the fast path in front of it)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import pytest
from django.conf import settings

JSON = b"application/json"
FORM = b"application/x-www-form-urlencoded"

fast_path_only = pytest.mark.skipif(
    settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql",
    reason="the fast path serves PostgreSQL only (SQLite: Django answers everything)",
)


def on_both_paths(test):
    """`test(path, ...)` on Django alone and on the fast path in front of it (tests/api/
    test_fastpath.py's `run`), with committed rows: the fast path's own connections see
    nothing else."""
    marks = [
        pytest.mark.django_db(transaction=True),
        fast_path_only,
        pytest.mark.parametrize("path", ["django", "fast"]),
    ]
    for mark in reversed(marks):
        test = mark(test)
    return test


@dataclass
class Answer:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    chunks_read: int

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


async def post(
    app,
    path: str,
    *,
    headers: list[tuple[bytes, bytes]],
    chunks: list[bytes],
    content_type: bytes = JSON,
    content_length: int | None = None,
) -> Answer:
    """POST `chunks` (one ASGI message each) to `path`; `headers` without a content type or
    length (the Caller's own are replaced)."""
    headers = [(k, v) for k, v in headers if k not in (b"content-type", b"content-length")]
    headers.append((b"content-type", content_type))
    if content_length is not None:
        headers.append((b"content-length", str(content_length).encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
    }
    read = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal read
        if read < len(chunks):
            read += 1
            more = read < len(chunks)
            return {"type": "http.request", "body": chunks[read - 1], "more_body": more}
        await asyncio.Event().wait()  # the client stays connected until the answer

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    body = b"".join(m.get("body", b"") for m in sent[1:])
    return Answer(sent[0]["status"], sent[0]["headers"], body, read)
