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


@pytest.fixture
def superuser(django_user_model, client):
    user = django_user_model.objects.create_superuser("root", password="pw")
    client.force_login(user)
    return user


def test_schedule_edits_in_the_celery_beat_admin(project, superuser, client):
    """The django-celery-beat pages write the schedule rows directly: a disable from the list,
    an edit of the shared crontab row, a delete; each is one audited change of the project."""
    from django_celery_beat.models import CrontabSchedule, PeriodicTask

    services.loop_schedule_set(project=project, cron="0 3 * * *")
    task = PeriodicTask.objects.get(name="hone-loop-demo")

    response = client.post(
        "/admin/django_celery_beat/periodictask/",
        {"action": "disable_tasks", "_selected_action": [task.pk]},
    )
    assert response.status_code == 302
    crontab = CrontabSchedule.objects.get(pk=task.crontab_id)
    response = client.post(
        f"/admin/django_celery_beat/crontabschedule/{crontab.pk}/change/",
        {
            "minute": "30",
            "hour": "4",
            "day_of_month": "*",
            "month_of_year": "*",
            "day_of_week": "*",
            "timezone": "UTC",
            "periodictask_set-TOTAL_FORMS": "0",
            "periodictask_set-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302
    response = client.post(
        f"/admin/django_celery_beat/periodictask/{task.pk}/delete/", {"post": "yes"}
    )
    assert response.status_code == 302

    admin_edits = [e for e in events("loop.schedule") if e[0] == "root"]
    state = {"task": "training.tasks.iteration_start_task", "args": task.args}
    assert [(e[1], e[2], e[3], e[4]) for e in admin_edits] == [
        (
            "feedback.project",
            project.pk,
            {"schedule": "0 3 * * *", "enabled": True, **state},
            {"schedule": "0 3 * * *", "enabled": False, **state},
        ),
        (
            "feedback.project",
            project.pk,
            {"schedule": "0 3 * * *", "enabled": False, **state},
            {"schedule": "30 4 * * *", "enabled": False, **state},
        ),
        (
            "feedback.project",
            project.pk,
            {"schedule": "30 4 * * *", "enabled": False, **state},
            None,
        ),
    ]


def test_a_refused_admin_schedule_edit_records_nothing(project, superuser, client):
    from django_celery_beat.models import PeriodicTask

    services.loop_schedule_set(project=project, cron="0 3 * * *")
    task = PeriodicTask.objects.get(name="hone-loop-demo")
    response = client.post(
        f"/admin/django_celery_beat/crontabschedule/{task.crontab_id}/change/",
        {"minute": "99", "hour": "4", "day_of_month": "*", "month_of_year": "*"},
    )
    assert response.status_code == 200  # the form again, with its errors
    assert [e for e in events("loop.schedule") if e[0] == "root"] == []


def test_an_optimizer_change_by_api(project, admin_member, token_client):
    token_client(admin_member).patch(API, {"optimizer": "dpo"}, format="json")
    token_client(admin_member).patch(API, {"optimizer": "dpo"}, format="json")  # unchanged
    token_client(admin_member).patch(API, {"optimizer": "sgd"}, format="json")  # refused

    assert events("project.training_config") == [
        ("boss", "feedback.project", project.pk, {"optimizer": "ppo"}, {"optimizer": "dpo"})
    ]


def test_deleting_a_token_in_the_admin(superuser, admin_member, client):
    from rest_framework.authtoken.models import Token

    from feedback.services import api_token_create

    token = api_token_create(user=admin_member)
    response = client.post(
        f"/admin/authtoken/tokenproxy/{admin_member.pk}/delete/", {"post": "yes"}
    )
    assert response.status_code == 302
    assert not Token.objects.filter(user=admin_member).exists()
    [(actor, target_type, target_id, before, after)] = events("token.delete")
    assert (actor, target_type, target_id, after) == ("root", "auth.user", admin_member.pk, None)
    assert before["user"] == admin_member.pk and before["token_created"]  # never the key
    assert token.key not in str(before)
