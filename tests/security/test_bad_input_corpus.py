"""A corpus of bad input against every write endpoint: the API's (api/urls.py: every route
that takes POST; none takes PUT, PATCH or DELETE) and the labeling pages' (feedback/urls.py),
the labeling API on both of its paths (Django alone and the fast path in front of it).

Each endpoint gets the cases that apply to what it reads: its URL's slug and id, the text and
number fields of its body (JSON, form or uploaded file), the body's size. Every answer must be
a 4xx with a message, nothing may be stored (every table's row count, the leases' and labels'
states), and afterwards the endpoint's valid input must still succeed, which shows the cases
reached the fields they aim at. The labeling API's two paths must also answer alike.
"""

from __future__ import annotations

import copy
import html
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.apps import apps
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from rest_framework.test import APIClient

from feedback.models import Assignment, Comparison, Demonstration, PreferenceLabel, Prompt
from feedback.services import assignment_next, demonstration_write, label_submit, membership_set
from tests.api.test_fastpath import Caller, run
from tests.asgi import fast_path_only, post
from tests.factories import make_comparisons

LABEL_STUDIO = Path(__file__).parent.parent / "fixtures" / "label_studio_pairwise.json"
DEEP = "[" * 100_000 + "]" * 100_000  # past Python's recursion limit
_DEEP = "@@deep@@"  # where DEEP goes in a payload (json.dumps could not write it)

# name: (the kind of field it goes into, the value, whether only JSON can carry it)
VALUES: dict[str, tuple[str, Any, bool]] = {
    "control characters": ("text", "bell\x07 nul\x00 escape\x1b[31m", False),
    "10 MB text": ("text", "x" * (10 * 2**20), False),
    "lone surrogate": ("text", "\ud800", True),
    "object for text": ("text", {"a": 1}, True),
    "deep nesting": ("text", _DEEP, True),
    "10**30": ("number", 10**30, False),
    "-1": ("number", -1, False),
    "NaN": ("number", math.nan, False),
    "Infinity": ("number", math.inf, False),
    "text for number": ("number", "three", False),
    "list for number": ("number", [3], True),
}
SLUGS = {"../": "../demo", "..%2f": "..%2fdemo", "unknown": "nope", "10 kB": "d" * 10_000}
IDS = {"10**30": str(10**30), "-1": "-1", "2**63": str(2**63)}


@dataclass(frozen=True)
class Endpoint:
    url: str  # {slug} and, where it has one, {id}
    role: str
    encoding: str  # "json", "form", "jsonl file", "label studio file" or "none"
    valid: Callable[[dict[str, int]], Any] | None = None  # input that succeeds
    text: tuple[str, ...] = ()  # dotted paths into the valid input
    number: tuple[str, ...] = ()
    id: str = ""  # which id of the scene fills {id}
    limit: str = ""  # the body limit it has: "labeling" (64 KiB), "upload", "file"


def _label_studio(scene: dict[str, int]) -> list:
    return json.loads(LABEL_STUDIO.read_text())


P = "/api/projects/{slug}/"
API = {
    "prompts": Endpoint(
        P + "prompts/",
        "admin",
        "json",
        valid=lambda s: {"prompts": [{"prompt": "A prompt nobody sent before."}]},
        text=("prompts.0.prompt",),
        number=("prompts.0.split",),
        limit="upload",
    ),
    "prompts import": Endpoint(
        P + "prompts/import/",
        "admin",
        "jsonl file",
        valid=lambda s: {"prompt": "A prompt from a file."},
        text=("prompt",),
        number=("split",),
        limit="file",
    ),
    "labels import": Endpoint(
        P + "labels/import/",
        "admin",
        "label studio file",
        valid=_label_studio,
        text=("0.data.prompt",),
        number=("0.annotations.0.lead_time",),
        limit="file",
    ),
    "snapshots": Endpoint(P + "snapshots/", "admin", "none"),
    "runs": Endpoint(
        P + "runs/",
        "admin",
        "json",
        valid=lambda s: {"kind": "generate"},
        text=("kind",),
        number=("kind",),
        limit="upload",
    ),
    "run cancel": Endpoint(P + "runs/{id}/cancel/", "admin", "none", id="run"),
    "iterations": Endpoint(P + "iterations/", "admin", "none"),
    "iteration action": Endpoint(P + "iterations/{id}/cancel/", "admin", "none", id="run"),
    "policy promote": Endpoint(P + "policies/{id}/promote/", "admin", "none", id="policy"),
    "policy rollback": Endpoint(P + "policies/{id}/rollback/", "admin", "none", id="policy"),
    "demonstrations": Endpoint(
        P + "demonstrations/",
        "annotator",
        "json",
        valid=lambda s: {"prompt_id": s["train_prompt"], "text": "Written for it."},
        text=("text",),
        number=("prompt_id", "time_spent_ms"),
        limit="upload",
    ),
    "demonstrations import": Endpoint(
        P + "demonstrations/import/",
        "admin",
        "jsonl file",
        valid=lambda s: {"prompt": "A prompt from a file.", "completion": "Its answer."},
        text=("prompt", "completion"),
        number=("split",),
        limit="file",
    ),
    "demonstration review": Endpoint(
        P + "demonstrations/{id}/review/",
        "reviewer",
        "json",
        valid=lambda s: {"text": "A better answer."},
        text=("text",),
        id="demonstration",
        limit="upload",
    ),
    "label edit": Endpoint(
        "/api/assignments/{id}/edit/",
        "annotator",
        "json",
        valid=lambda s: {"choice": "a", "edit_side": "a", "edit_text": "An edited answer."},
        text=("edit_text", "edit_side", "rationale", "choice"),
        number=("strength", "time_spent_ms"),
        id="assignment",
        limit="upload",
    ),
}
LABELING_API = {
    "next": Endpoint(P + "comparisons/next/", "annotator", "none", limit="labeling"),
    "label": Endpoint(
        "/api/assignments/{id}/label/",
        "annotator",
        "json",
        valid=lambda s: {"choice": "a"},
        text=("rationale", "choice"),
        number=("strength", "time_spent_ms"),
        id="assignment",
        limit="labeling",
    ),
}
_LABEL_FORM = {
    "valid": lambda s: {"assignment_id": s["assignment"], "choice": "a", "rationale": "Fine."},
    "text": ("rationale", "choice"),
    "number": ("strength", "assignment_id"),
    "limit": "upload",
}
_EDIT_FORM = {
    "valid": lambda s: {"assignment_id": s["assignment"], "choice": "a", "edit_side": "b",
                        "edit_text": "An edited answer."},
    "text": ("edit_text", "edit_side", "choice"),
    "number": ("strength", "assignment_id"),
    "limit": "upload",
}  # fmt: skip
_WRITE_FORM = {
    "valid": lambda s: {"prompt_id": s["train_prompt"], "text": "Written on the page."},
    "text": ("text",),
    "number": ("prompt_id",),
    "limit": "upload",
}
PAGES = {
    "label page": Endpoint("/p/{slug}/label/", "annotator", "form", **_LABEL_FORM),
    "label submit": Endpoint("/p/{slug}/label/submit/", "annotator", "form", **_LABEL_FORM),
    "label page edit": Endpoint("/p/{slug}/label/", "annotator", "form", **_EDIT_FORM),
    "label submit edit": Endpoint("/p/{slug}/label/submit/", "annotator", "form", **_EDIT_FORM),
    "write page": Endpoint("/p/{slug}/write/", "annotator", "form", **_WRITE_FORM),
    "write submit": Endpoint("/p/{slug}/write/submit/", "annotator", "form", **_WRITE_FORM),
    "review demonstration": Endpoint(
        "/p/{slug}/review/demonstrations/{id}/",
        "reviewer",
        "form",
        valid=lambda s: {"action": "correct", "text": "A better answer."},
        text=("text", "action"),
        id="demonstration",
        limit="upload",
    ),
    "skip": Endpoint(
        "/p/{slug}/label/skip/",
        "annotator",
        "form",
        valid=lambda s: {"assignment_id": s["assignment"], "reason": "unclear", "note": "Vague."},
        text=("note",),
        number=("assignment_id",),
        limit="upload",
    ),
    "flag": Endpoint(
        "/p/{slug}/label/flag/",
        "annotator",
        "form",
        valid=lambda s: {"assignment_id": s["assignment"], "reason": "broken", "note": "Cut."},
        text=("note", "reason"),
        number=("assignment_id",),
        limit="upload",
    ),
    "undo": Endpoint("/p/{slug}/label/undo/", "annotator", "none"),
    "review": Endpoint(
        "/p/{slug}/review/comparisons/{id}/",
        "reviewer",
        "form",
        valid=lambda s: {"action": "review_label", "label_id": s["label"], "decision": "accepted"},
        text=("decision", "action"),
        number=("label_id",),
        id="reviewed",
        limit="upload",
    ),
}


# --- The corpus -------------------------------------------------------------------------------


def _put(payload: Any, path: str, value: Any) -> Any:
    payload = copy.deepcopy(payload)
    *keys, last = [int(k) if k.isdigit() else k for k in path.split(".")]
    target = payload
    for key in keys:
        target = target[key]
    target[last] = value
    return payload


def _limit(endpoint: Endpoint) -> int:
    name = {
        "labeling": "HONE_LABELING_MAX_BODY_BYTES",
        "upload": "DATA_UPLOAD_MAX_MEMORY_SIZE",
        "file": "HONE_IMPORT_MAX_BYTES",
    }[endpoint.limit]
    return getattr(settings, name)


def corpus(endpoint: Endpoint, scene: dict[str, int]) -> dict[str, tuple[str, Any]]:
    """Case name: (URL, input), every case that applies to the endpoint."""
    ids = {"slug": "demo", "id": scene.get(endpoint.id, "")}
    url = endpoint.url.format(**ids)
    valid = endpoint.valid(scene) if endpoint.valid else None
    cases = {}
    if "{slug}" in endpoint.url:
        cases |= {
            f"slug {name}": (endpoint.url.format(**{**ids, "slug": s}), valid)
            for name, s in SLUGS.items()
        }
    if endpoint.id:
        cases |= {
            f"id {n}": (endpoint.url.format(**{**ids, "id": i}), valid) for n, i in IDS.items()
        }
    for name, (kind, value, json_only) in VALUES.items():
        if json_only and endpoint.encoding == "form":
            continue
        for path in endpoint.text if kind == "text" else endpoint.number:
            cases[f"{name} in {path}"] = (url, _put(valid, path, value))
    if endpoint.limit:
        cases["oversized body"] = (url, Oversized(valid, _limit(endpoint)))
    return cases


@dataclass(frozen=True)
class Oversized:
    valid: Any
    limit: int


def _json(payload: Any) -> bytes:
    return json.dumps(payload).replace(f'"{_DEEP}"', DEEP).encode()


def encoded(endpoint: Endpoint, payload: Any) -> dict[str, Any]:
    """`payload` as the client sends it: a body and its content type, or form fields."""
    if isinstance(payload, Oversized):
        padding = "x" * (payload.limit + 1)
        if endpoint.encoding in ("jsonl file", "label studio file"):
            data = _json(payload.valid) + b" " * (payload.limit + 1)
            return {"data": {"file": SimpleUploadedFile("big.json", data)}}
        if endpoint.encoding == "none":
            return {"data": padding.encode(), "content_type": "application/json"}
        payload = {**payload.valid, "padding": padding}
    if endpoint.encoding == "json":
        return {"data": _json(payload), "content_type": "application/json"}
    if endpoint.encoding == "form":
        return {"data": {key: str(value) for key, value in payload.items()}}
    if endpoint.encoding == "jsonl file":
        return {"data": {"file": SimpleUploadedFile("corpus.jsonl", _json(payload) + b"\n")}}
    if endpoint.encoding == "label studio file":
        return {"data": {"file": SimpleUploadedFile("corpus.json", _json(payload))}}
    return {}


def message_of(content_type: str, body: bytes) -> str:
    """What the answer says is wrong: the API's first error, the page's error notice."""
    text = body.decode(errors="replace")
    if content_type.startswith("application/json"):
        return (json.loads(text).get("errors") or [{"message": ""}])[0]["message"]
    if content_type.startswith("text/plain"):
        return text.strip()
    found = re.search(
        r'class="flash error"[^>]*>(.*?)</div>|<li class="error">(.*?)</li>|<h1>(.*?)</h1>',
        text,
        re.S,
    )
    inner = next((group for group in found.groups() if group), "") if found else ""
    return html.unescape(re.sub(r"<[^>]+>", " ", inner)).strip()


def what_is_stored() -> dict[str, Any]:
    """Every table's row count, and the states a refused request might still change."""
    models = [
        *apps.get_app_config("feedback").get_models(),
        *apps.get_app_config("training").get_models(),
        *apps.get_app_config("auth").get_models(),
    ]
    return {
        **{m._meta.label: m.objects.count() for m in models},
        "assignments": sorted(Assignment.objects.values_list("id", "status", "skip_reason")),
        "labels": sorted(PreferenceLabel.objects.values_list("id", "review_status", "rationale")),
        "comparisons": sorted(Comparison.objects.values_list("id", "final_choice", "status")),
        "demonstrations": sorted(
            Demonstration.objects.values_list("id", "review_status", "text", "withdrawn_at")
        ),
    }


def not_4xx_with_a_message(answers: dict[str, tuple[int, str]]) -> dict[str, tuple[int, str]]:
    return {
        case: (status, message[:120])
        for case, (status, message) in answers.items()
        if not (400 <= status < 500 and message)
    }


@pytest.fixture(autouse=True)
def labeling_limit(settings):
    settings.HONE_LABELING_MAX_BODY_BYTES = 64 * 1024  # the default, whatever the environment


# --- The scene --------------------------------------------------------------------------------


@pytest.fixture
def scene(project, annotator, make_user) -> dict[str, Any]:
    """An annotator holding a lease, a reviewer, an admin, another annotator's label, and a
    demonstration they wrote."""
    project.demonstrations_per_prompt = 2
    project.save(update_fields=["demonstrations_per_prompt"])
    reviewed, _ = make_comparisons(project, [("x", "y"), ("z", "w")])
    other = make_user("other")
    membership_set(project=project, user=other, role="annotator")
    other_lease = assignment_next(project=project, user=other)
    label = label_submit(user=other, assignment_id=other_lease.pk, choice="b")
    users = {"annotator": annotator, "reviewer": make_user("rev"), "admin": make_user("boss")}
    membership_set(project=project, user=users["reviewer"], role="reviewer")
    membership_set(project=project, user=users["admin"], role="admin")
    train = Prompt.objects.filter(project=project, split="train").order_by("id")
    written = demonstration_write(user=other, project=project, prompt_id=train[0].pk, text="Hi.")
    return {
        "users": users,
        "train_prompt": train[1].pk,
        "demonstration": written.pk,
        "assignment": assignment_next(project=project, user=annotator).pk,
        "label": label.pk,
        "reviewed": label.comparison_id,
        "run": 1,
        "policy": 0,
    }


@pytest.mark.parametrize("name", [*API, *PAGES])
def test_every_bad_input_gets_a_4xx_with_a_message_and_stores_nothing(name, scene):
    endpoint = {**API, **PAGES}[name]
    client = APIClient() if name in API else Client()
    client.force_login(scene["users"][endpoint.role])
    before = what_is_stored()

    answers = {}
    for case, (url, payload) in corpus(endpoint, scene).items():
        response = client.post(url, **encoded(endpoint, payload))
        answers[case] = (
            response.status_code,
            message_of(response.get("Content-Type", ""), response.content),
        )

    assert not_4xx_with_a_message(answers) == {}
    assert what_is_stored() == before
    if endpoint.valid:
        valid = client.post(
            endpoint.url.format(slug="demo", id=scene.get(endpoint.id)),
            **encoded(endpoint, endpoint.valid(scene)),
        )
        assert valid.status_code < 400, valid.content[:300]


@pytest.mark.django_db(transaction=True)
@fast_path_only
def test_the_labeling_api_answers_the_corpus_alike_on_both_paths(scene):
    caller = Caller(None, user=scene["users"]["annotator"])

    def scenario_of(endpoint: Endpoint) -> Callable:
        async def scenario(app):
            answers = {}
            for case, (url, payload) in corpus(endpoint, scene).items():
                request = encoded(endpoint, payload)
                body = request.get("data", b"")
                answer = await post(
                    app, url, headers=caller.headers, chunks=[body], content_length=len(body)
                )
                answers[case] = (answer.status, answer.body)
            return answers, await sync_to_async(what_is_stored)()

        return scenario

    before = what_is_stored()
    answers = {}
    for path in ("django", "fast"):
        for name, endpoint in LABELING_API.items():
            (found, stored), _ = run(path, scenario_of(endpoint))
            answers[path, name] = found
            assert stored == before, (path, name)

    for name in LABELING_API:
        assert answers["fast", name] == answers["django", name]
        messages = {
            case: (status, message_of("application/json", body) if body[:1] == b"{" else "")
            for case, (status, body) in answers["fast", name].items()
        }
        assert not_4xx_with_a_message(messages) == {}, name
    valid = {"choice": "a"}
    (status, _, _), served = run("fast", lambda app: _submit(app, caller, scene, valid))
    assert (status, served) == (201, {"label": 1})


async def _submit(app, caller: Caller, scene: dict[str, Any], payload: dict) -> tuple:
    caller.app = app
    return await caller.post(f"/api/assignments/{scene['assignment']}/label/", payload)
