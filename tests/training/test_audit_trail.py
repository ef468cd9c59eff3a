"""Every change to the loop is audited, from the page, the API or the loop itself: who (None:
the system), what, on which row, before and after."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from feedback.models import AuditEvent
from feedback.services import assignment_next, label_submit
from tests.factories import make_comparisons
from tests.training.test_views import GATES
from training import services
from training.models import LoopIteration, PolicyVersion

API = "/api/projects/demo/"


def events(action: str) -> list[tuple]:
    return [
        (e.actor.username if e.actor else None, e.target_type, e.target_id, e.before, e.after)
        for e in AuditEvent.objects.filter(action=action).select_related("actor").order_by("id")
    ]


@pytest.fixture
def boss(admin_member, client):
    client.force_login(admin_member)
    return client


@pytest.fixture
def candidate(project):
    base = PolicyVersion.objects.get(project=project, number=0)
    return PolicyVersion.objects.create(
        project=project, number=1, parent=base, status=PolicyVersion.Status.CANDIDATE
    )


@pytest.fixture
def waiting(project, candidate):
    return LoopIteration.objects.create(
        project=project,
        number=1,
        trigger="manual",
        status=LoopIteration.Status.AWAITING_APPROVAL,
        policy=candidate,
    )


def test_a_promotion_and_a_rollback_name_who_and_the_versions(candidate, boss):
    base = PolicyVersion.objects.get(number=0)

    promoted = boss.post(API + "policies/1/promote/")
    rolled_back = boss.post("/p/demo/policies/0/rollback/")

    assert (promoted.status_code, rolled_back.status_code) == (200, 302)
    assert events("policy.promote") == [
        (
            "boss",
            "training.policyversion",
            candidate.pk,
            {"active": 0, "status": "candidate"},
            {"active": 1, "replaced_status": "retired"},
        )
    ]
    assert events("policy.rollback") == [
        (
            "boss",
            "training.policyversion",
            base.pk,
            {"active": 1, "status": "retired"},
            {"active": 0, "replaced_status": "rolled_back"},
        )
    ]


def test_the_loops_own_promotion_is_the_systems(candidate):
    services.policy_promote(policy=candidate)
    services.policy_promote(policy=candidate)  # already active: nothing changes

    assert [e[0] for e in events("policy.promote")] == [None]


def test_starting_and_cancelling_an_iteration(project, boss):
    boss.post(API + "iterations/")
    iteration = LoopIteration.objects.get()

    response = boss.post(API + "iterations/1/cancel/")

    assert response.status_code == 200
    assert events("iteration.start") == [
        (
            "boss",
            "training.loopiteration",
            iteration.pk,
            None,
            {"status": "collecting", "trigger": "manual", "policy": None},
        )
    ]
    assert events("iteration.cancel") == [
        (
            "boss",
            "training.loopiteration",
            iteration.pk,
            {"status": "collecting"},
            {"status": "cancelled", "policy": None},
        )
    ]


def test_approving_a_candidate(waiting, boss):
    response = boss.post("/p/demo/iterations/1/approve/")

    assert response.status_code == 302
    assert events("iteration.approve") == [
        (
            "boss",
            "training.loopiteration",
            waiting.pk,
            {"status": "awaiting_approval"},
            {"status": "promoting", "policy": 1},
        )
    ]


def test_rejecting_a_candidate_by_an_admin_and_by_the_gates(waiting, boss, project, candidate):
    boss.post(API + "iterations/1/reject/")
    second = LoopIteration.objects.create(
        project=project, number=2, trigger="labels", status=LoopIteration.Status.EVALUATING
    )
    services.iteration_reject(iteration=second, reason="Gates not passed: kl.")

    assert events("iteration.reject") == [
        (
            "boss",
            "training.loopiteration",
            waiting.pk,
            {"status": "awaiting_approval"},
            {"status": "rejected", "reason": "Rejected by an admin.", "policy": 1},
        ),
        (
            None,
            "training.loopiteration",
            second.pk,
            {"status": "evaluating"},
            {"status": "rejected", "reason": "Gates not passed: kl.", "policy": None},
        ),
    ]


def test_a_gate_change_records_the_settings_that_changed(project, boss):
    boss.post("/p/demo/gates/", GATES)
    boss.post("/p/demo/gates/", GATES)  # the same values again: no change, no event

    assert events("project.gates") == [
        (
            "boss",
            "feedback.project",
            project.pk,
            {
                "gate_min_win_rate": 0.5,
                "gate_max_kl": 20.0,
                "gate_human_min_win_rate": None,
                "gate_human_labels": 30,
            },
            {
                "gate_min_win_rate": 0.55,
                "gate_max_kl": 12.0,
                "gate_human_min_win_rate": 0.6,
                "gate_human_labels": 40,
            },
        )
    ]


def test_a_refused_gate_change_records_nothing(project, boss):
    boss.post("/p/demo/gates/", {**GATES, "gate_max_kl": "-1"})

    assert events("project.gates") == []


def test_setting_and_removing_the_schedule(project, boss):
    boss.post("/p/demo/schedule/", {"cron": "0 3 * * *"})
    boss.post("/p/demo/schedule/", {"cron": "0 3 * * *"})  # unchanged
    boss.post("/p/demo/schedule/", {"cron": "not a cron"})  # refused
    boss.post("/p/demo/schedule/", {"cron": ""})

    assert [(e[0], e[3], e[4]) for e in events("loop.schedule")] == [
        ("boss", {"cron": ""}, {"cron": "0 3 * * *"}),
        ("boss", {"cron": "0 3 * * *"}, {"cron": ""}),
    ]


@pytest.fixture
def labelled(project, annotator):
    make_comparisons(project, [("x", "y")])
    assignment = assignment_next(project=project, user=annotator)
    label_submit(user=annotator, assignment_id=assignment.pk, choice="b")
    return project


def test_exports_by_api_download_and_command(labelled, admin_member, tmp_path, token_client):
    api = token_client(admin_member)
    api.get(API + "exports/preferences/")
    api.get(API + "exports/votes/", {"file_format": "csv"})
    snapshot = services.snapshot_create(project=labelled, name="s")
    api.get(API + f"snapshots/{snapshot.pk}/download/")
    call_command("export_preferences", "--project", "demo", "--out", str(tmp_path / "p.jsonl"))

    assert events("data.export") == [
        (
            "boss",
            "feedback.project",
            labelled.pk,
            None,
            {"what": "preferences", "format": "jsonl", "rows": 1, "style": "auto"},
        ),
        (
            "boss",
            "feedback.project",
            labelled.pk,
            None,
            {"what": "votes", "format": "csv", "rows": 1},
        ),
        (
            "boss",
            "training.datasetsnapshot",
            snapshot.pk,
            None,
            {"what": "snapshot", "format": "jsonl", "rows": 1},
        ),
        (
            None,
            "feedback.project",
            labelled.pk,
            None,
            {"what": "preferences", "format": "jsonl", "rows": 1, "style": "auto"},
        ),
    ]
