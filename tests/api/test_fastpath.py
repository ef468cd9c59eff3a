"""The fast path of the labeling API (api/fastpath.py) against Django's, case by case.

Each case runs through the ASGI app production serves on PostgreSQL (LabelingFastPath in
front of Django) and through Django alone, with a real session (or token) and CSRF token,
and must give the same status, body and effect; `served` says which of the two answered.
"""

from __future__ import annotations

import json
import secrets

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings
from django.core.asgi import get_asgi_application
from django.test import Client
from rest_framework.authtoken.models import Token

from api import fastpath
from feedback.models import Assignment, LabelAudit, PreferenceLabel
from feedback.services import membership_set
from tests import asgi
from tests.factories import leases_expire, make_comparisons
from training.models import LoopIteration

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql",
        reason="the fast path serves PostgreSQL only (SQLite: Django answers everything)",
    ),
]

PATHS = ["django", "fast"]
NEXT = "/api/projects/demo/comparisons/next/"


def label_url(assignment_id: int) -> str:
    return f"/api/assignments/{assignment_id}/label/"


class Caller:
    """One annotator's HTTP calls through an ASGI app, as a browser (session cookie and CSRF
    token) or a script (API token) makes them."""

    def __init__(self, app, *, user=None, token: bool = False, csrf: bool = True) -> None:
        self.app = app
        self.headers = [(b"host", b"127.0.0.1"), (b"content-type", b"application/json")]
        if user is not None and token:
            key = Token.objects.get_or_create(user=user)[0].key
            self.headers.append((b"authorization", f"Token {key}".encode()))
        elif user is not None:
            client = Client()
            client.force_login(user)
            session = client.cookies[settings.SESSION_COOKIE_NAME].value
            secret = secrets.token_hex(16)
            cookie = f"{settings.SESSION_COOKIE_NAME}={session}; csrftoken={secret}"
            self.headers.append((b"cookie", cookie.encode()))
            if csrf:
                self.headers.append((b"x-csrftoken", secret.encode()))

    async def post(self, path: str, payload=None) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        body = b"" if payload is None else json.dumps(payload).encode()
        answer = await asgi.post(
            self.app, path, headers=self.headers, chunks=[body], content_length=len(body)
        )
        return answer.status, answer.headers, answer.body


def run(path: str, scenario):
    """Run `scenario(app)` (a coroutine function) through Django alone or the fast path in
    front of it; returns what it returns and what the fast path served."""
    django_app = get_asgi_application()
    app = fastpath.LabelingFastPath(django_app) if path == "fast" else django_app

    async def main():
        try:
            return await scenario(app)
        finally:
            if path == "fast":
                await app.aclose()

    result = async_to_sync(main)()
    return result, dict(getattr(app, "served", {}))


def as_json(body: bytes):
    return json.loads(body) if body else None


@pytest.mark.parametrize("path", PATHS)
def test_next_then_submit_then_nothing_left(path, project, annotator):
    (comparison,) = make_comparisons(project, [("first answer", "second answer")])
    caller = Caller(None, user=annotator)

    async def scenario(app):
        caller.app = app
        item = await caller.post(NEXT)
        again = await caller.post(NEXT)  # the current lease, not a second one
        lease = as_json(item[2])
        submit = {"choice": "b", "strength": 1, "time_spent_ms": 900}
        label = await caller.post(label_url(lease["assignment_id"]), submit)
        after = await caller.post(NEXT)
        return item, again, label, after

    (item, again, label, after), served = run(path, scenario)

    lease = Assignment.objects.get()
    stored = PreferenceLabel.objects.get()
    assert (item[0], again[0], label[0], after[0]) == (200, 200, 201, 204)
    assert (
        as_json(item[2])
        == as_json(again[2])
        == {
            "assignment_id": lease.pk,
            "comparison_id": comparison.pk,
            "expires_at": lease.expires_at.isoformat(),
            "a_shown_left": lease.a_shown_left,
            "prompt": [{"role": "user", "content": "Say hello."}],
            "completion_a": "first answer",
            "completion_b": "second answer",
        }
    )
    assert as_json(label[2]) == {
        "label_id": stored.pk,
        "comparison_id": comparison.pk,
        "choice": "b",
        "strength": 1,
        "a_shown_left": lease.a_shown_left,
    }
    assert (stored.annotator, stored.assignment, stored.time_spent_ms) == (annotator, lease, 900)
    assert lease.status == Assignment.Status.SUBMITTED
    assert list(LabelAudit.objects.values_list("label_id", "action", "before", "after")) == [
        (
            stored.pk,
            "created",
            None,
            {"choice": "b", "strength": 1, "rationale": "", "review_status": "unreviewed"},
        )
    ]
    assert served == ({} if path == "django" else {"next": 3, "label": 1})


def test_the_fast_path_answers_with_the_headers_django_gives(project, annotator, make_user):
    project.labels_per_comparison = 2
    project.save()
    make_comparisons(project, [("x", "y")])
    other = make_user("other")
    membership_set(project=project, user=other, role="annotator")

    def scenario_for(user):
        caller = Caller(None, user=user)

        async def scenario(app):
            caller.app = app
            item = await caller.post(NEXT)
            label = await caller.post(label_url(as_json(item[2])["assignment_id"]), {"choice": "a"})
            return item, label, await caller.post(NEXT)

        return scenario

    django, _ = run("django", scenario_for(annotator))
    fast, served = run("fast", scenario_for(other))

    assert served == {"next": 2, "label": 1}
    assert [answer[0] for answer in fast] == [200, 201, 204]
    for (status, headers, _), (fast_status, fast_headers, _) in zip(django, fast, strict=True):
        assert fast_status == status
        assert [h for h in fast_headers if h[0] != b"Content-Length"] == [
            h for h in headers if h[0] != b"Content-Length"
        ]


ERROR_CASES = {
    "missing field": (
        {},
        400,
        {"errors": [{"field": "choice", "message": "This field is required."}]},
    ),
    "unknown choice": (
        {"choice": "maybe"},
        400,
        {
            "errors": [
                {
                    "field": "choice",
                    "message": "Unknown choice 'maybe'; use one of ['a', 'b', 'tie', 'both_bad'].",
                }
            ]
        },
    ),
    "bad strength": (
        {"choice": "a", "strength": 7},
        400,
        {"errors": [{"field": "strength", "message": "Strength must be one of [1, 2, 3]."}]},
    ),
    "negative time": (
        {"choice": "a", "time_spent_ms": -1},
        400,
        {
            "errors": [
                {
                    "field": "time_spent_ms",
                    "message": "Ensure this value is greater than or equal to 0.",
                }
            ]
        },
    ),
}


@pytest.mark.parametrize("case", ERROR_CASES)
@pytest.mark.parametrize("path", PATHS)
def test_bad_input_names_the_field_and_stores_nothing(path, case, project, annotator):
    make_comparisons(project, [("x", "y")])
    caller = Caller(None, user=annotator)
    payload, status, body = ERROR_CASES[case]

    async def scenario(app):
        caller.app = app
        item = as_json((await caller.post(NEXT))[2])
        return await caller.post(label_url(item["assignment_id"]), payload)

    (answer_status, _, answer), served = run(path, scenario)

    lease = Assignment.objects.get()
    assert (answer_status, as_json(answer)) == (status, body)
    assert PreferenceLabel.objects.count() == 0
    assert lease.status == Assignment.Status.ACTIVE
    assert served == ({} if path == "django" else {"next": 1, "django": 1})


@pytest.mark.parametrize("path", PATHS)
def test_someone_elses_assignment_is_refused(path, project, annotator, make_user):
    make_comparisons(project, [("x", "y")])
    intruder = make_user("intruder")
    membership_set(project=project, user=intruder, role="annotator")
    owner, other = Caller(None, user=annotator), Caller(None, user=intruder)

    async def scenario(app):
        owner.app = other.app = app
        item = as_json((await owner.post(NEXT))[2])
        return await other.post(label_url(item["assignment_id"]), {"choice": "a"})

    (status, _, body), served = run(path, scenario)

    assert (status, as_json(body)) == (
        400,
        {"errors": [{"field": "assignment", "message": "This comparison is not assigned to you."}]},
    )
    assert PreferenceLabel.objects.count() == 0
    assert served == ({} if path == "django" else {"next": 1, "django": 1})


@pytest.mark.parametrize("path", PATHS)
def test_a_double_submit_returns_the_stored_label(path, project, annotator):
    make_comparisons(project, [("x", "y")])
    caller = Caller(None, user=annotator)

    async def scenario(app):
        caller.app = app
        item = as_json((await caller.post(NEXT))[2])
        first = await caller.post(label_url(item["assignment_id"]), {"choice": "a"})
        second = await caller.post(label_url(item["assignment_id"]), {"choice": "b"})
        return first, second

    (first, second), served = run(path, scenario)

    label = PreferenceLabel.objects.get()
    assert (first[0], second[0]) == (201, 201)
    assert as_json(first[2]) == as_json(second[2])
    assert (as_json(second[2])["label_id"], label.choice) == (label.pk, "a")
    assert served == ({} if path == "django" else {"next": 1, "label": 1, "django": 1})


@pytest.mark.parametrize("path", PATHS)
def test_an_expired_lease_still_takes_its_label(path, project, annotator):
    make_comparisons(project, [("x", "y")])
    caller = Caller(None, user=annotator)
    leased = {}

    async def scenario(app):
        caller.app = app
        item = as_json((await caller.post(NEXT))[2])
        leased.update(item)
        return item

    run(path, scenario)
    leases_expire()

    async def submit(app):
        caller.app = app
        return await caller.post(label_url(leased["assignment_id"]), {"choice": "tie"})

    (status, _, body), served = run(path, submit)

    assert (status, as_json(body)["choice"]) == (201, "tie")
    assert PreferenceLabel.objects.get().comparison.label_count == 1
    assert served == ({} if path == "django" else {"label": 1})


@pytest.mark.parametrize("path", PATHS)
def test_a_closed_comparison_takes_no_late_label(path, project, annotator, make_user):
    project.labels_per_comparison = 1
    project.save()
    make_comparisons(project, [("x", "y")])
    other = make_user("other")
    membership_set(project=project, user=other, role="annotator")
    late, early = Caller(None, user=annotator), Caller(None, user=other)
    leased = {}

    async def first_lease(app):
        late.app = app
        leased.update(as_json((await late.post(NEXT))[2]))

    run(path, first_lease)
    leases_expire()

    async def scenario(app):
        late.app = early.app = app
        item = as_json((await early.post(NEXT))[2])
        await early.post(label_url(item["assignment_id"]), {"choice": "a"})
        return await late.post(label_url(leased["assignment_id"]), {"choice": "b"})

    (status, _, body), served = run(path, scenario)

    assert (status, as_json(body)) == (
        400,
        {"errors": [{"field": "assignment", "message": "This comparison no longer takes labels."}]},
    )
    assert list(PreferenceLabel.objects.values_list("choice", flat=True)) == ["a"]
    assert served == ({} if path == "django" else {"next": 1, "label": 1, "django": 1})


@pytest.mark.parametrize("path", PATHS)
def test_both_bad_without_a_rationale_is_refused_where_the_project_asks_for_one(
    path, project, annotator
):
    project.rationale_required_for_both_bad = True
    project.save()
    (comparison,) = make_comparisons(project, [("x", "y")])
    caller = Caller(None, user=annotator)

    async def scenario(app):
        caller.app = app
        item = as_json((await caller.post(NEXT))[2])
        refused = await caller.post(label_url(item["assignment_id"]), {"choice": "both_bad"})
        payload = {"choice": "both_bad", "rationale": "  Both are wrong.  "}
        return refused, await caller.post(label_url(item["assignment_id"]), payload)

    (refused, taken), served = run(path, scenario)

    comparison.refresh_from_db()
    assert (refused[0], as_json(refused[2])) == (
        400,
        {
            "errors": [
                {
                    "field": "rationale",
                    "message": 'This project asks for a rationale with "both bad".',
                }
            ]
        },
    )
    assert taken[0] == 201
    assert PreferenceLabel.objects.get().rationale == "Both are wrong."
    assert comparison.label_count == 1  # the refused one rolled back its count
    assert served == ({} if path == "django" else {"next": 1, "django": 1, "label": 1})


@pytest.mark.parametrize("path", PATHS)
def test_who_may_ask(path, project, annotator, make_user):
    make_comparisons(project, [("x", "y")])
    stranger = make_user("stranger")
    callers = {
        "anonymous": Caller(None),
        "stranger": Caller(None, user=stranger),
        "no csrf token": Caller(None, user=annotator, csrf=False),
        "token": Caller(None, user=annotator, token=True),
    }

    async def scenario(app):
        answers = {}
        for name, caller in callers.items():
            caller.app = app
            status, _, body = await caller.post(NEXT)
            answers[name] = (status, as_json(body)["errors"] if status >= 400 else None)
        return answers

    answers, served = run(path, scenario)

    assert answers == {
        "anonymous": (
            403,
            [{"field": "detail", "message": "Authentication credentials were not provided."}],
        ),
        "stranger": (404, [{"field": "detail", "message": "No such project."}]),
        "no csrf token": (
            403,
            [{"field": "detail", "message": "CSRF Failed: CSRF token missing."}],
        ),
        "token": (200, None),
    }
    assert served == ({} if path == "django" else {"django": 3, "next": 1})


@pytest.mark.parametrize("path", PATHS)
def test_a_browser_asking_for_html_gets_what_django_renders(path, project, annotator):
    make_comparisons(project, [("x", "y")])
    caller = Caller(None, user=annotator)
    caller.headers.append((b"accept", b"text/html"))

    async def scenario(app):
        caller.app = app
        return await caller.post(NEXT)

    (status, headers, body), served = run(path, scenario)

    assert (status, dict(headers)[b"Content-Type"]) == (200, b"text/html; charset=utf-8")
    assert b"<html" in body
    assert served == ({} if path == "django" else {"django": 1})


def test_a_logout_or_password_change_ends_the_fast_path_after_the_cache_time(
    project, annotator, make_user, monkeypatch
):
    make_comparisons(project, [("x", "y"), ("z", "w")])
    other = make_user("other")
    membership_set(project=project, user=other, role="annotator")
    logged_out, changed = Caller(None, user=annotator), Caller(None, user=other)

    async def ask(app):
        logged_out.app = changed.app = app
        return (await logged_out.post(NEXT))[0], (await changed.post(NEXT))[0]

    def scenario(app):
        async def steps():
            before = await ask(app)
            await _django_call(lambda: _logout_and_change_password(annotator, other))
            cached = await ask(app)
            monkeypatch.setattr(fastpath, "AUTH_CACHE_SECONDS", 0.0)
            app._users = fastpath._TTLCache()  # as if the cache time had passed
            return before, cached, await ask(app)

        return steps()

    (before, cached, after), served = run("fast", scenario)

    assert before == cached == (200, 200)
    assert after == (403, 403)
    assert served == {"next": 4, "django": 2}


async def _django_call(function):
    from asgiref.sync import sync_to_async

    return await sync_to_async(function)()


def _logout_and_change_password(logged_out, changed) -> None:
    from django.contrib.sessions.models import Session

    for session in Session.objects.all():
        if session.get_decoded().get("_auth_user_id") == str(logged_out.pk):
            session.delete()
    changed.set_password("a new password")
    changed.save()


@pytest.mark.parametrize("path", PATHS)
def test_a_label_can_start_an_iteration(path, project, annotator):
    project.trigger_new_labels = 1
    project.save()
    make_comparisons(project, [("x", "y")])
    caller = Caller(None, user=annotator)

    async def scenario(app):
        caller.app = app
        item = as_json((await caller.post(NEXT))[2])
        return await caller.post(label_url(item["assignment_id"]), {"choice": "a"})

    (status, _, _), served = run(path, scenario)

    assert status == 201
    assert list(LoopIteration.objects.values_list("trigger", flat=True)) == ["labels"]
    assert served == ({} if path == "django" else {"next": 1, "label": 1})


@pytest.mark.parametrize("path", PATHS)
def test_a_label_in_a_project_with_a_human_gate_asks_for_a_check(
    path, project, annotator, monkeypatch
):
    from training import tasks

    project.gate_human_min_win_rate = 0.5
    project.save()
    make_comparisons(project, [("x", "y")])
    queued: list[int] = []
    monkeypatch.setattr(tasks.human_gate_check_task, "delay", queued.append)
    caller = Caller(None, user=annotator)

    async def scenario(app):
        caller.app = app
        item = as_json((await caller.post(NEXT))[2])
        return await caller.post(label_url(item["assignment_id"]), {"choice": "a"})

    (status, _, _), served = run(path, scenario)

    assert (status, queued) == (201, [project.pk])
    assert served == ({} if path == "django" else {"next": 1, "label": 1})


def test_the_fast_path_is_on_for_postgresql_and_can_be_turned_off(settings):
    on = fastpath.enabled()
    settings.HONE_LABELING_FASTPATH = False

    assert (on, fastpath.enabled()) == (True, False)
