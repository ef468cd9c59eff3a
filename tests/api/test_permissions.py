"""Every resource, every role: who gets in, who gets 403, who gets 404, and that a refused
request changes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from feedback.models import (
    Assignment,
    Comparison,
    Demonstration,
    PreferenceLabel,
    Project,
    Prompt,
)
from feedback.services import assignment_next, demonstration_write, label_submit
from tests.factories import make_comparisons
from training.models import DatasetSnapshot, LoopIteration, PolicyVersion, RunMetric, TrainingRun
from training.services import run_create, snapshot_create

LABEL_STUDIO = Path(__file__).parent.parent / "fixtures" / "label_studio_pairwise.json"
ROLES = ("annotator", "reviewer", "admin", "outsider", "anonymous")
ALL = ("annotator", "reviewer", "admin")
STAFF = ("reviewer", "admin")
ADMIN = ("admin",)

# (method, path under /api/projects/demo/, body, roles allowed, status when allowed)
ENDPOINTS = [
    ("get", "", None, ALL, 200),
    ("patch", "", {"optimizer": "dpo"}, ADMIN, 200),
    ("get", "prompts/", None, ALL, 200),
    ("post", "prompts/", {"prompts": [{"prompt": "A new one"}]}, ADMIN, 201),
    ("post", "prompts/import/", "prompt_file", ADMIN, 201),
    ("get", "prompts/{prompt}/", None, ALL, 200),
    ("get", "comparisons/", None, STAFF, 200),
    ("get", "comparisons/{comparison}/", None, STAFF, 200),
    ("post", "comparisons/next/", None, ALL, 200),
    ("get", "labels/", None, ALL, 200),
    ("get", "labels/{label}/", None, ALL, 200),
    ("post", "labels/import/", "label_file", ADMIN, 201),
    ("get", "snapshots/", None, STAFF, 200),
    ("post", "snapshots/", None, ADMIN, 201),
    ("get", "snapshots/{snapshot}/", None, STAFF, 200),
    ("get", "snapshots/{snapshot}/download/", None, STAFF, 200),
    ("get", "exports/preferences/", None, STAFF, 200),
    ("get", "exports/votes/", None, STAFF, 200),
    ("get", "runs/", None, STAFF, 200),
    ("post", "runs/", {"kind": "generate"}, ADMIN, 202),
    ("get", "runs/{run}/", None, STAFF, 200),
    ("get", "runs/{run}/metrics/", None, STAFF, 200),
    ("post", "runs/{run}/cancel/", None, ADMIN, 200),
    ("get", "iterations/", None, STAFF, 200),
    ("post", "iterations/", None, ADMIN, 202),
    ("get", "policies/", None, STAFF, 200),
    ("get", "policies/1/", None, STAFF, 200),
    ("post", "policies/1/promote/", None, ADMIN, 200),
    ("post", "policies/0/rollback/", None, ADMIN, 409),  # allowed in, refused: v0 is active
    ("get", "leaderboard/", None, STAFF, 200),
    ("get", "reward-models/", None, STAFF, 200),
    ("get", "demonstrations/", None, ALL, 200),
    ("post", "demonstrations/", "demonstration", ALL, 201),
    ("get", "demonstrations/next-prompt/", None, ALL, 200),
    ("get", "demonstrations/{demonstration}/", None, ALL, 200),  # the annotator's own
    ("post", "demonstrations/{demonstration}/review/", {"decision": "accepted"}, STAFF, 200),
    ("post", "demonstrations/import/", "demonstration_file", ADMIN, 201),
    ("get", "exports/demonstrations/", None, STAFF, 200),
]


@pytest.fixture
def world(project, users, settings):
    """A project with a little of everything, and the ids to address it."""
    project.demonstrations_per_prompt = 3
    project.save(update_fields=["demonstrations_per_prompt"])
    make_comparisons(project, [("one", "two"), ("three", "four"), ("five", "six"), ("7", "8")])
    assignment = assignment_next(project=project, user=users["annotator"])
    label = label_submit(user=users["annotator"], assignment_id=assignment.pk, choice="a")
    snapshot = snapshot_create(project=project, name="fixture")
    run = run_create(project=project, kind=TrainingRun.Kind.GENERATE, config={})
    RunMetric.objects.create(run=run, step=1, values={"prompts_done": 1})
    PolicyVersion.objects.create(
        project=project,
        number=1,
        parent=PolicyVersion.objects.get(project=project, number=0),
        adapter_path="projects/x/policies/1",
        status=PolicyVersion.Status.CANDIDATE,
    )
    train = Prompt.objects.filter(project=project, split="train").order_by("id")
    demonstration = demonstration_write(
        user=users["annotator"], project=project, prompt_id=train[0].pk, text="Written."
    )
    return {
        "demonstration": demonstration.pk,
        "train_prompt": train[1].pk,
        "prompt": Prompt.objects.filter(project=project).first().pk,
        "comparison": label.comparison_id,
        "label": label.pk,
        "snapshot": snapshot.pk,
        "run": run.pk,
    }


def _state() -> dict:
    return {
        "prompts": Prompt.objects.count(),
        "comparisons": Comparison.objects.count(),
        "assignments": Assignment.objects.count(),
        "labels": PreferenceLabel.objects.count(),
        "snapshots": DatasetSnapshot.objects.count(),
        "runs": list(
            TrainingRun.objects.values_list("pk", "status", "cancel_requested").order_by("pk")
        ),
        "iterations": LoopIteration.objects.count(),
        "policies": list(PolicyVersion.objects.values_list("pk", "status").order_by("pk")),
        "training": list(Project.objects.values_list("optimizer", "restart_from").order_by("pk")),
        "demonstrations": list(
            Demonstration.objects.values_list("pk", "review_status", "text").order_by("pk")
        ),
    }


def _call(client, method, path, body, world):
    url = "/api/projects/demo/" + path.format(**world)
    if body == "prompt_file":
        upload = SimpleUploadedFile("p.jsonl", b'{"prompt": "From a file"}\n')
        return client.post(url, {"file": upload}, format="multipart")
    if body == "demonstration":
        return client.post(
            url, {"prompt_id": world["train_prompt"], "text": "Mine."}, format="json"
        )
    if body == "demonstration_file":
        upload = SimpleUploadedFile("d.jsonl", b'{"prompt": "Q", "completion": "A"}\n')
        return client.post(url, {"file": upload}, format="multipart")
    if body == "label_file":
        upload = SimpleUploadedFile("ls.json", LABEL_STUDIO.read_bytes())
        return client.post(url, {"file": upload}, format="multipart")
    return getattr(client, method)(url, body, format="json")


def _cases(allowed: bool):
    return [
        pytest.param(role, method, path, body, code, id=f"{role}-{method}-{path or 'project'}")
        for method, path, body, roles, code in ENDPOINTS
        for role in ROLES
        if (role in roles) == allowed
    ]


@pytest.mark.parametrize("role,method,path,body,code", _cases(allowed=True))
def test_role_allowed(role, method, path, body, code, users, world, token_client):
    response = _call(token_client(users[role]), method, path, body, world)

    assert response.status_code == code, response.content[:500]


@pytest.mark.parametrize("role,method,path,body,code", _cases(allowed=False))
def test_role_refused_changes_nothing(role, method, path, body, code, users, world, token_client):
    expected = {"outsider": 404, "anonymous": 403}.get(role, 403)
    before = _state()

    response = _call(token_client(users[role]), method, path, body, world)

    assert response.status_code == expected
    assert response.json()["errors"][0]["field"] == "detail"
    assert _state() == before


def test_outsider_404_says_nothing_about_the_project(users, world, token_client):
    client = token_client(users["outsider"])

    existing = client.get("/api/projects/demo/labels/")
    missing = client.get("/api/projects/no-such-project/labels/")

    assert existing.status_code == missing.status_code == 404
    assert existing.json() == missing.json()


def test_annotator_sees_only_their_own_labels(project, users, world, token_client):
    other = users["reviewer"]
    assignment = assignment_next(project=project, user=other)
    theirs = label_submit(user=other, assignment_id=assignment.pk, choice="b")
    client = token_client(users["annotator"])

    listed = client.get("/api/projects/demo/labels/").json()
    detail = client.get(f"/api/projects/demo/labels/{theirs.pk}/")

    assert [row["id"] for row in listed["results"]] == [world["label"]]
    assert detail.status_code == 404


def test_forbidden_body_names_the_role(users, world, token_client):
    response = token_client(users["annotator"]).get("/api/projects/demo/runs/")

    assert response.status_code == 403
    assert response.json() == {
        "errors": [
            {
                "field": "detail",
                "message": "Your role in this project (annotator) cannot do this; "
                "it needs reviewer or admin.",
            }
        ]
    }
