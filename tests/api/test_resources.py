"""The API's behaviour, resource by resource, with exact values."""

from __future__ import annotations

import io
import json
import zipfile
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.cache import cache
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient
from rest_framework.throttling import SimpleRateThrottle

from feedback.models import Comparison, Completion, PreferenceLabel, Project, Prompt
from feedback.services import assignment_next, label_submit
from tests.factories import make_comparisons
from training.models import DatasetSnapshot, LoopIteration, PolicyVersion, TrainingRun
from training.services import artifact_path, run_create

LABEL_STUDIO = Path(__file__).parent.parent / "fixtures" / "label_studio_pairwise.json"
API = "/api/projects/demo/"


def vote(project, user, choice="a"):
    assignment = assignment_next(project=project, user=user)
    return label_submit(user=user, assignment_id=assignment.pk, choice=choice)


@pytest.fixture
def admin(admin_member, token_client):
    return token_client(admin_member)


# --- Authentication, docs, error bodies --------------------------------------------------


def test_token_from_the_management_command_authenticates(admin_member, capsys):
    call_command("drf_create_token", admin_member.username)
    key = Token.objects.get(user=admin_member).key
    client = APIClient()

    anonymous = client.get("/api/projects/")
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    response = client.get("/api/projects/")

    assert key in capsys.readouterr().out
    assert anonymous.status_code == 403
    assert response.status_code == 200
    assert response.json()["results"][0]["slug"] == "demo"
    assert response.json()["results"][0]["role"] == "admin"


def test_a_wrong_token_is_refused(project):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")

    response = client.get("/api/projects/")

    assert response.status_code == 403
    assert response.json() == {"errors": [{"field": "detail", "message": "Invalid token."}]}


def test_docs_and_schema_are_served_without_a_cdn(client):
    docs = client.get("/api/docs/")
    redoc = client.get("/api/redoc/")
    schema = client.get("/api/schema/?format=json")

    html = docs.content.decode() + redoc.content.decode()
    assert (docs.status_code, redoc.status_code, schema.status_code) == (200, 200, 200)
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in html
    assert "/static/drf_spectacular_sidecar/redoc/bundles/redoc.standalone.js" in html
    assert "cdn." not in html and "unpkg" not in html
    assert schema.json()["info"]["title"] == "Hone API"
    assert "/api/projects/{slug}/exports/preferences/" in schema.json()["paths"]


def test_error_bodies_have_one_shape_for_404_405_and_400(admin):
    unknown = admin.get("/api/nothing-here/")
    method = admin.delete(API)
    bad_filter = admin.get(API + "labels/?status=maybe")

    assert unknown.status_code == 404
    assert unknown.json() == {"errors": [{"field": "detail", "message": "No such API endpoint."}]}
    assert method.status_code == 405
    assert method.json() == {
        "errors": [{"field": "detail", "message": 'Method "DELETE" not allowed.'}]
    }
    assert bad_filter.status_code == 400
    assert bad_filter.json() == {
        "errors": [{"field": "status", "message": '"maybe" is not a valid choice.'}]
    }


def test_too_many_requests_gets_the_same_error_shape(admin, monkeypatch):
    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", {"user": "2/min", "anon": "2/min"})
    cache.clear()

    codes = [admin.get(API).status_code for _ in range(3)]
    response = admin.get(API)
    cache.clear()

    assert codes == [200, 200, 429]
    assert response.json()["errors"][0]["field"] == "detail"
    assert response.json()["errors"][0]["message"].startswith("Request was throttled.")


# --- The project ------------------------------------------------------------------------------


def test_an_admin_sets_how_iterations_train(admin):
    both = admin.patch(API, {"optimizer": "dpo", "restart_from": "base"}, format="json")
    one = admin.patch(API, {"restart_from": "active"}, format="json")

    assert (both.status_code, one.status_code) == (200, 200)
    assert (both.json()["optimizer"], both.json()["restart_from"]) == ("dpo", "base")
    assert (one.json()["optimizer"], one.json()["restart_from"], one.json()["role"]) == (
        "dpo",
        "active",
        "admin",
    )
    assert admin.get(API).json()["optimizer"] == "dpo"


def test_an_admin_turns_reward_length_control_on(admin):
    response = admin.patch(API, {"reward_length_control": True}, format="json")

    stored = Project.objects.get(slug="demo")
    assert response.status_code == 200
    assert (response.json()["reward_length_control"], response.json()["optimizer"]) == (
        True,
        "ppo",
    )
    assert (stored.reward_length_control, stored.optimizer) == (True, "ppo")


def test_length_control_is_refused_where_the_reward_stage_runs_trls_loop(admin):
    Project.objects.filter(slug="demo").update(
        training_config={"reward": {"max_batch_tokens": None}}
    )

    response = admin.patch(API, {"optimizer": "dpo", "reward_length_control": True}, format="json")

    stored = Project.objects.get(slug="demo")
    assert response.status_code == 400
    assert response.json() == {
        "errors": [
            {
                "field": "reward_length_control",
                "message": "Length control needs Hone's packed reward loop, but "
                "training_config.reward.max_batch_tokens is null (TRL's RewardTrainer, which has "
                "no per-pair weights): remove that override or turn length control off.",
            }
        ]
    }
    assert (stored.optimizer, stored.reward_length_control) == ("ppo", False)


def test_an_admin_turns_the_sft_stage_on_and_off(admin):
    on = admin.patch(API, {"sft_min_demonstrations": 20}, format="json")
    stored = Project.objects.get(slug="demo").sft_min_demonstrations
    off = admin.patch(API, {"sft_min_demonstrations": None}, format="json")

    assert (on.status_code, off.status_code) == (200, 200)
    assert (on.json()["sft_min_demonstrations"], on.json()["optimizer"]) == (20, "ppo")
    assert (stored, off.json()["sft_min_demonstrations"]) == (20, None)
    assert Project.objects.get(slug="demo").sft_min_demonstrations is None


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"optimizer": "sgd"}, {"field": "optimizer", "message": '"sgd" is not a valid choice.'}),
        (
            {"optimizer": "dpo", "gate_min_win_rate": 0.9},
            {
                "field": "non_field_errors",
                "message": "Only optimizer, restart_from, reward_length_control and "
                "sft_min_demonstrations can be changed here, not: gate_min_win_rate.",
            },
        ),
        (
            {},
            {
                "field": "non_field_errors",
                "message": "Nothing to change: send optimizer, restart_from, "
                "reward_length_control or sft_min_demonstrations.",
            },
        ),
        (
            {"reward_length_control": "maybe"},
            {"field": "reward_length_control", "message": "Must be a valid boolean."},
        ),
        (
            {"sft_min_demonstrations": 0},
            {
                "field": "sft_min_demonstrations",
                "message": "The SFT stage needs at least 1 new accepted demonstration; send null "
                "for no SFT stage.",
            },
        ),
        (
            {"sft_min_demonstrations": "many"},
            {"field": "sft_min_demonstrations", "message": "A valid integer is required."},
        ),
    ],
)
def test_a_bad_training_setting_is_refused_and_nothing_changes(admin, body, error):
    response = admin.patch(API, body, format="json")

    stored = Project.objects.get(slug="demo")
    assert response.status_code == 400
    assert response.json() == {"errors": [error]}
    assert (
        stored.optimizer,
        stored.restart_from,
        stored.sft_min_demonstrations,
        stored.gate_min_win_rate,
    ) == ("ppo", "active", None, 0.5)


# --- Prompts ------------------------------------------------------------------------------


def test_prompts_paginate_and_filter(admin):
    first = admin.get(API + "prompts/?page_size=2").json()
    evals = admin.get(API + "prompts/?split=eval").json()
    past_the_end = admin.get(API + "prompts/?page=9")

    assert first["count"] == 4
    assert [p["text"] for p in first["results"]] == ["Say hello.", "Name a colour."]
    assert first["next"].endswith("/api/projects/demo/prompts/?page=2&page_size=2")
    assert [p["text"] for p in evals["results"]] == ["Count to three."]
    assert past_the_end.status_code == 404
    assert past_the_end.json()["errors"][0]["field"] == "detail"


def test_add_prompts_as_json_all_or_nothing(admin):
    before = Prompt.objects.count()

    bad = admin.post(
        API + "prompts/",
        {"prompts": [{"prompt": "ok"}, {"prompt": ""}, "text"]},
        format="json",
    )
    good = admin.post(
        API + "prompts/",
        {"prompts": [{"prompt": "ok"}, {"prompt": "Say hello."}], "duplicates": "skip"},
        format="json",
    )

    assert bad.status_code == 400
    assert bad.json() == {
        "errors": [
            {"line": 2, "field": "prompt", "message": "Empty."},
            {"line": 3, "field": "record", "message": "Expected an object with a 'prompt' field."},
        ]
    }
    assert good.status_code == 201
    assert good.json()["created"] == 1
    assert good.json()["skipped_duplicates"] == [{"line": 2, "duplicate_of": "project"}]
    assert Prompt.objects.count() == before + 1


def test_upload_a_prompt_file(admin):
    upload = SimpleUploadedFile("p.csv", b"prompt,split\nFrom CSV,eval\n")

    response = admin.post(API + "prompts/import/", {"file": upload}, format="multipart")

    assert response.status_code == 201
    prompt = Prompt.objects.get(pk=response.json()["prompt_ids"][0])
    assert (prompt.text, prompt.split, prompt.source) == ("From CSV", "eval", "p.csv")


def test_upload_over_the_size_limit_is_refused(admin, settings):
    settings.HONE_IMPORT_MAX_BYTES = 10
    before = Prompt.objects.count()
    upload = SimpleUploadedFile("p.jsonl", b'{"prompt": "too long for the limit"}\n')

    response = admin.post(API + "prompts/import/", {"file": upload}, format="multipart")

    assert response.status_code == 400
    assert response.json() == {
        "errors": [
            {"line": 0, "field": "file", "message": "The file has 37 bytes; the limit is 10."}
        ]
    }
    assert Prompt.objects.count() == before


# --- Comparisons and labels ----------------------------------------------------------------


def test_next_and_submit_keep_their_urls_with_a_token(project, annotator, token_client):
    make_comparisons(project, [("first", "second")])
    client = token_client(annotator)

    item = client.post(API + "comparisons/next/").json()
    submitted = client.post(
        f"/api/assignments/{item['assignment_id']}/label/", {"choice": "a"}, format="json"
    )

    assert (item["completion_a"], item["completion_b"]) == ("first", "second")
    assert submitted.status_code == 201
    assert PreferenceLabel.objects.get().choice == "a"


def test_comparisons_list_with_label_counts(project, annotator, admin):
    make_comparisons(project, [("x", "y"), ("z", "w")])
    vote(project, annotator)

    rows = admin.get(API + "comparisons/?status=complete").json()["results"]

    assert [(r["status"], r["label_count"], r["completion_a"]["text"]) for r in rows] == [
        ("complete", 1, "x")
    ]
    assert rows[0]["prompt"]["messages"] == [{"role": "user", "content": "Say hello."}]


def test_labels_filter_by_annotator_status_and_date(project, annotator, reviewer, admin):
    make_comparisons(project, [("x", "y"), ("z", "w")])
    mine = vote(project, annotator, "a")
    theirs = vote(project, reviewer, "b")
    PreferenceLabel.objects.filter(pk=theirs.pk).update(
        review_status="accepted", created_at=timezone.now() - timedelta(days=3)
    )
    yesterday = (timezone.now() - timedelta(days=1)).isoformat()

    def ids(query: str) -> list[int]:
        return [r["id"] for r in admin.get(API + "labels/", query).json()["results"]]

    assert ids({"annotator": "ann"}) == [mine.pk]
    assert ids({"status": "accepted"}) == [theirs.pk]
    assert ids({"created_after": yesterday}) == [mine.pk]
    assert ids({"created_before": yesterday}) == [theirs.pk]
    assert ids({"choice": "b"}) == [theirs.pk]


def test_import_label_studio_through_the_api(admin):
    upload = SimpleUploadedFile("ls.json", LABEL_STUDIO.read_bytes())

    response = admin.post(API + "labels/import/", {"file": upload}, format="multipart")

    assert response.status_code == 201
    assert {k: response.json()[k] for k in ("comparisons", "labels", "prompts_created")} == {
        "comparisons": 2,
        "labels": 3,
        "prompts_created": 2,
    }
    assert Completion.objects.filter(sampling__imported="label-studio").count() == 4


# --- Datasets ---------------------------------------------------------------------------------


def test_snapshot_create_and_download(project, annotator, admin):
    make_comparisons(project, [("x", "y")])
    vote(project, annotator, "b")

    created = admin.post(API + "snapshots/")
    download = admin.get(API + f"snapshots/{created.json()['id']}/download/")

    snapshot = DatasetSnapshot.objects.get()
    assert created.status_code == 201
    assert created.json()["pair_count"] == 1
    assert download["Content-Type"] == "application/x-ndjson"
    assert b"".join(download.streaming_content) == artifact_path(snapshot.path).read_bytes()


def test_snapshot_without_preferences_is_a_conflict(admin):
    response = admin.post(API + "snapshots/")

    assert response.status_code == 409
    assert DatasetSnapshot.objects.count() == 0


def test_exports_through_the_api(project, annotator, admin):
    make_comparisons(project, [("x", "yy")])
    vote(project, annotator, "b")

    jsonl = admin.get(API + "exports/preferences/")
    hf = admin.get(API + "exports/preferences/?file_format=hf")
    votes = admin.get(API + "exports/votes/?file_format=csv")

    assert jsonl["Content-Type"] == "application/x-ndjson"
    row = json.loads(jsonl.content)
    assert (row["prompt"], row["chosen"], row["rejected"], row["margin"]) == (
        "Say hello.",
        "yy",
        "x",
        2.0,
    )
    names = zipfile.ZipFile(io.BytesIO(hf.content)).namelist()
    assert "preferences/dataset_info.json" in names
    assert votes.content.decode().splitlines()[0].startswith("label_id,comparison_id,")
    assert "ann" not in votes.content.decode().split("\n", 1)[1].split(",")


# --- Runs, iterations, policies, leaderboard ------------------------------------------------


def test_queue_and_cancel_a_generation_run(admin):
    queued = admin.post(API + "runs/", {"kind": "generate"}, format="json")
    run_id = queued.json()["id"]

    cancelled = admin.post(API + f"runs/{run_id}/cancel/")
    TrainingRun.objects.filter(pk=run_id).update(status="succeeded")
    finished = admin.post(API + f"runs/{run_id}/cancel/")

    assert (queued.status_code, queued.json()["status"]) == (202, "queued")
    assert cancelled.status_code == 200
    assert (cancelled.json()["status"], cancelled.json()["cancel_requested"]) == ("queued", True)
    assert finished.status_code == 409
    assert finished.json() == {
        "errors": [{"field": "run", "message": f"Run {run_id} is succeeded: nothing to cancel."}]
    }


def test_run_metrics_and_filters(project, admin):
    from training.services import run_record_metrics

    run = run_create(project=project, kind="reward", config={})
    run_create(project=project, kind="generate", config={})
    run_record_metrics(run=run, values={"step": 1, "loss": 0.7})
    run_record_metrics(run=run, values={"step": 2, "loss": 0.5})

    metrics = admin.get(API + f"runs/{run.pk}/metrics/").json()["results"]
    rewards = admin.get(API + "runs/?kind=reward").json()["results"]

    assert [(m["step"], m["values"]["loss"]) for m in metrics] == [(1, 0.7), (2, 0.5)]
    assert [r["id"] for r in rewards] == [run.pk]


def test_start_an_iteration_once(admin):
    first = admin.post(API + "iterations/")
    second = admin.post(API + "iterations/")

    assert (first.status_code, first.json()["number"], first.json()["status"]) == (
        202,
        1,
        "collecting",
    )
    assert second.status_code == 409
    assert LoopIteration.objects.count() == 1


@pytest.fixture
def v1(project):
    return PolicyVersion.objects.create(
        project=project,
        number=1,
        parent=PolicyVersion.objects.get(project=project, number=0),
        adapter_path="projects/1/policies/iteration-1",
        status=PolicyVersion.Status.CANDIDATE,
    )


def _statuses(project) -> list[tuple[int, str]]:
    return list(
        PolicyVersion.objects.filter(project=project)
        .order_by("number")
        .values_list("number", "status")
    )


def test_promote_then_roll_back(project, v1, admin):
    promoted = admin.post(API + "policies/1/promote/")
    after_promote = _statuses(project)
    rolled = admin.post(API + "policies/0/rollback/")
    after_rollback = _statuses(project)
    again = admin.post(API + "policies/0/rollback/")

    assert (promoted.status_code, promoted.json()["status"]) == (200, "active")
    assert after_promote == [(0, "retired"), (1, "active")]
    assert (rolled.status_code, rolled.json()["number"], rolled.json()["status"]) == (
        200,
        0,
        "active",
    )
    assert after_rollback == [(0, "active"), (1, "rolled_back")]
    assert again.status_code == 409
    assert again.json() == {"errors": [{"field": "policy", "message": "v0 is already active."}]}
    assert _statuses(project) == after_rollback


def test_cancel_a_running_iteration(project, admin):
    started = admin.post(API + "iterations/")

    cancelled = admin.post(API + "iterations/1/cancel/")
    again = admin.post(API + "iterations/1/cancel/")
    unknown = admin.post(API + "iterations/1/explode/")

    assert started.status_code == 202
    assert (cancelled.status_code, cancelled.json()["status"]) == (200, "cancelled")
    assert again.status_code == 409
    assert again.json() == {
        "errors": [{"field": "iteration", "message": "Iteration 1 is not running."}]
    }
    assert unknown.status_code == 404
    assert LoopIteration.objects.get().status == "cancelled"


def test_a_version_still_training_cannot_be_promoted(project, v1, admin):
    v1.status = PolicyVersion.Status.TRAINING
    v1.save()

    response = admin.post(API + "policies/1/promote/")

    assert response.status_code == 409
    assert _statuses(project) == [(0, "active"), (1, "training")]


def test_leaderboard_rates_versions_from_human_votes(project, v1, annotator, reviewer, admin):
    prompt = Prompt.objects.filter(project=project).first()
    v0 = PolicyVersion.objects.get(project=project, number=0)
    old = Completion.objects.create(prompt=prompt, policy_version=v0, text="old answer")
    new = Completion.objects.create(prompt=prompt, policy_version=v1, text="new answer")
    Comparison.objects.create(
        project=project,
        prompt=prompt,
        completion_a=old,
        completion_b=new,
        kind="arena",
        required_labels=2,
    )
    make_comparisons(project, [("same", "version")])  # v0 vs v0: not counted
    vote(project, annotator, "b")
    vote(project, reviewer, "tie")
    vote(project, annotator, "a")

    board = admin.get(API + "leaderboard/").json()

    assert board["method"] == "bradley_terry"
    assert [(r["version"], r["status"], r["games"]) for r in board["versions"]] == [
        (1, "candidate", 2),
        (0, "active", 2),
    ]
    best, other = board["versions"]
    assert best["low"] <= best["rating"] <= best["high"]
    assert best["rating"] > 1000 > other["rating"]


# --- The data page ----------------------------------------------------------------------------


def test_data_page_by_role(client, project, admin_member, reviewer, annotator):
    pages = {}
    for user in (admin_member, reviewer, annotator):
        client.force_login(user)
        pages[user.username] = client.get("/p/demo/data/")

    assert pages["boss"].status_code == 200
    assert b'data-url="/api/projects/demo/prompts/import/"' in pages["boss"].content
    assert pages["rev"].status_code == 200
    assert b"prompts/import/" not in pages["rev"].content
    assert b"/api/projects/demo/exports/preferences/" in pages["rev"].content
    assert pages["ann"].status_code == 404


def test_tokens_are_managed_in_the_admin(client, make_user):
    staff = make_user("root", is_staff=True, is_superuser=True)
    client.force_login(staff)

    response = client.get("/admin/authtoken/tokenproxy/")

    assert response.status_code == 200


def test_json_prompts_over_the_record_limit_are_refused(admin, settings):
    settings.HONE_IMPORT_MAX_RECORDS = 2
    before = Prompt.objects.count()

    response = admin.post(
        API + "prompts/", {"prompts": [{"prompt": str(i)} for i in range(3)]}, format="json"
    )

    assert response.status_code == 400
    assert response.json() == {
        "errors": [{"line": 0, "field": "file", "message": "3 records; the limit is 2."}]
    }
    assert Prompt.objects.count() == before


def test_reviewer_cannot_cancel_an_iteration(project, admin, reviewer, token_client):
    admin.post(API + "iterations/")

    response = token_client(reviewer).post(API + "iterations/1/cancel/")

    assert response.status_code == 403
    assert LoopIteration.objects.get().status == "collecting"


def test_the_schema_generates_without_a_warning(tmp_path):
    call_command(
        "spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yaml")
    )

    assert (
        "/api/projects/{slug}/iterations/{number}/{action}/"
        in (tmp_path / "schema.yaml").read_text()
    )


def test_sft_versions_and_the_policy_versions_of_their_line(project, reviewer, admin):
    from tests.factories import sft_line_registered

    sft, v1 = sft_line_registered(project, reviewer, ["Hello!", "Hi there."])

    versions = admin.get(API + "sft-versions/").json()["results"]
    policy = admin.get(API + f"policies/{v1.number}/").json()

    snapshot = sft.snapshot
    assert versions == [
        {
            "number": 1,
            "adapter_path": sft.adapter_path,
            "snapshot": {
                "id": snapshot.pk,
                "sha256": snapshot.sha256,
                "demonstration_count": 2,
                "demonstration_ids": snapshot.demonstration_ids,
                "counts": snapshot.counts,
                "created_at": snapshot.created_at.isoformat().replace("+00:00", "Z"),
            },
            "training_run": sft.training_run_id,
            "heldout_loss": 2.5,
            "metrics": {"heldout_loss_before": 3.0, "heldout_loss": 2.5},
            "policies": [1],
            "created_at": sft.created_at.isoformat().replace("+00:00", "Z"),
        }
    ]
    assert (policy["number"], policy["parent"], policy["sft"]) == (1, 0, 1)
    assert admin.get(API + "policies/0/").json()["sft"] is None
