"""The loop on a tiny model, run in this process: gates, rollback, concurrency of triggers.

(tests/e2e runs the same jobs in a real Celery worker.)
"""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from feedback.models import Comparison, Completion
from feedback.services import assignment_next, label_submit, membership_set
from tests.factories import LOOP_ANSWERS, TINY_TRAINING
from training import jobs, services
from training.leaderboard import Game, fit, leaderboard
from training.models import LoopIteration, PolicyVersion, TrainingRun


def run_iteration(project, django_capture_on_commit_callbacks) -> LoopIteration:
    with django_capture_on_commit_callbacks(execute=False):
        iteration = services.iteration_start(project=project, trigger="manual")
    jobs.iteration_run(iteration=iteration)
    iteration.refresh_from_db()
    return iteration


def test_iteration_promotes_and_generates_versus_comparisons(
    loop_project, django_capture_on_commit_callbacks
):
    iteration = run_iteration(loop_project, django_capture_on_commit_callbacks)

    assert iteration.status == "done", iteration.error
    assert iteration.evaluation["gates"]["passed"] is True
    assert iteration.evaluation["incumbent_version"] == 0
    assert "human_gate" not in iteration.evaluation  # no human gate: nobody is waited for
    assert [r.kind for r in iteration.runs.order_by("id")] == [
        "reward",
        "ppo",
        "evaluate",
        "generate",
        "generate",
    ]
    v1 = PolicyVersion.objects.get(project=loop_project, status="active")
    assert (v1.number, v1.parent.number) == (1, 0)
    # Eval prompts: v1 against v0; train prompts: two answers of v1.
    versus = Comparison.objects.filter(
        project=loop_project,
        completion_a__policy_version=v1,
        completion_b__policy_version__number=0,
    )
    assert versus.count() >= 1
    assert set(versus.values_list("prompt__split", flat=True)) == {"eval"}
    assert Comparison.objects.filter(
        project=loop_project, completion_a__policy_version=v1, completion_b__policy_version=v1
    ).exists()


def test_bad_candidate_is_stopped_by_the_gates(loop_project, django_capture_on_commit_callbacks):
    # A candidate pushed far from the base (no KL penalty, a large step) against a strict KL gate.
    loop_project.training_config = {
        **TINY_TRAINING,
        "ppo": {**TINY_TRAINING["ppo"], "kl_coef": 0.0, "learning_rate": 0.05},
    }
    loop_project.gate_max_kl = 1e-6
    loop_project.save()

    iteration = run_iteration(loop_project, django_capture_on_commit_callbacks)

    assert iteration.status == "rejected"
    assert "mean KL to the base" in iteration.error
    failed = [g["name"] for g in iteration.evaluation["gates"]["gates"] if not g["passed"]]
    assert failed[0] == "mean KL to the base"
    assert iteration.policy.status == "rejected"
    assert list(
        PolicyVersion.objects.filter(project=loop_project, status="active").values_list(
            "number", flat=True
        )
    ) == [0]
    assert not TrainingRun.objects.filter(iteration=iteration, kind="generate").exists()


def test_candidate_waits_for_approval_when_asked(loop_project, django_capture_on_commit_callbacks):
    loop_project.auto_promote = False
    loop_project.save()

    iteration = run_iteration(loop_project, django_capture_on_commit_callbacks)

    assert iteration.status == "awaiting_approval"
    assert iteration.policy.status == "candidate"
    assert services.iteration_start(project=loop_project, trigger="manual") is None
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        services.iteration_approve(iteration=iteration)
    assert len(callbacks) == 2  # the event, and the task that carries on
    jobs.iteration_run(iteration=iteration)
    iteration.refresh_from_db()
    assert iteration.status == "done"
    assert iteration.policy.status == "active"


def test_rollback_makes_generation_use_the_older_version(
    loop_project, django_capture_on_commit_callbacks
):
    run_iteration(loop_project, django_capture_on_commit_callbacks)
    v0 = PolicyVersion.objects.get(project=loop_project, number=0)

    services.policy_rollback(policy=v0)
    run = services.run_create(project=loop_project, kind="generate", config={})
    jobs.generation_run(run=run)

    run.refresh_from_db()
    statuses = dict(
        PolicyVersion.objects.filter(project=loop_project).values_list("number", "status")
    )
    assert statuses == {0: "active", 1: "rolled_back"}
    assert (run.status, run.config["policy"], run.config["adapter"]) == ("succeeded", 0, None)
    last = run.metrics.order_by("-step", "-id").first().values
    assert last["answers_done"] == last["answers_total"] == 2 * run.summary["prompts"]
    latest = Completion.objects.order_by("-id")[:2]
    assert {c.policy_version.number for c in latest} == {0}


def test_rollback_to_a_version_never_active_is_refused(loop_project):
    candidate = PolicyVersion.objects.create(
        project=loop_project, number=5, status="rejected", adapter_path="x"
    )

    with pytest.raises(Exception, match="only a version that was active before"):
        services.policy_rollback(policy=candidate)

    assert PolicyVersion.objects.get(project=loop_project, status="active").number == 0


def test_cancelled_iteration_runs_nothing(loop_project, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        iteration = services.iteration_start(project=loop_project, trigger="manual")

    services.iteration_cancel(iteration=iteration)
    jobs.iteration_run(iteration=iteration)

    iteration.refresh_from_db()
    assert iteration.status == "cancelled"
    assert not TrainingRun.objects.filter(iteration=iteration).exists()
    assert services.iteration_start(project=loop_project, trigger="manual") is not None


def test_a_cancelled_run_does_not_start(loop_project):
    run = services.run_create(project=loop_project, kind="generate", config={})
    services.run_cancel(run=run)

    with pytest.raises(jobs.RunCancelled):
        jobs.generation_run(run=run)

    run.refresh_from_db()
    assert run.status == "cancelled"
    assert (
        not Completion.objects.filter(policy_version__project=loop_project)
        .exclude(text__in=[a for pair in LOOP_ANSWERS for a in pair])
        .exists()
    )


@pytest.mark.django_db(transaction=True)
def test_two_triggers_at_once_start_one_iteration(project):
    barrier = threading.Barrier(2)
    results = []

    def trigger(kind: str) -> None:
        try:
            barrier.wait()
            results.append(services.iteration_start(project=project, trigger=kind))
        finally:
            connection.close()

    threads = [threading.Thread(target=trigger, args=(k,)) for k in ("manual", "labels")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert sorted(r is None for r in results) == [False, True]
    assert LoopIteration.objects.filter(project=project).count() == 1


def test_bradley_terry_orders_versions_by_human_wins():
    games = [Game(1, 0, 1.0)] * 8 + [Game(1, 0, 0.0)] * 2 + [Game(2, 1, 0.5)] * 4

    theta = fit(games, [0, 1, 2])

    assert theta[1] > theta[0]
    assert theta[1] == pytest.approx(theta[2], abs=0.25)
    assert theta.sum() == pytest.approx(0.0, abs=1e-9)


def test_leaderboard_from_versus_labels(
    loop_project, annotator, make_user, django_capture_on_commit_callbacks
):
    run_iteration(loop_project, django_capture_on_commit_callbacks)
    judges = [make_user(f"judge{i}") for i in range(3)]
    for judge in judges:
        membership_set(project=loop_project, user=judge, role="annotator")
        while (assignment := assignment_next(project=loop_project, user=judge)) is not None:
            comparison = assignment.comparison
            new_is_a = comparison.completion_a.policy_version.number == 1
            label_submit(user=judge, assignment_id=assignment.pk, choice="a" if new_is_a else "b")

    rows = {r.version: r for r in leaderboard(project=loop_project, bootstrap=50)}

    assert rows[1].rating > rows[0].rating
    assert rows[1].low <= rows[1].rating <= rows[1].high
    assert rows[1].games == rows[0].games > 0
