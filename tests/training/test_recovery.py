"""The loop goes on after a fault: an iteration that ends without a promotion brings new
comparisons of the active policy, and runs whose worker is gone end where it was last heard.

In this process; tests/e2e/test_recovery.py kills real workers.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from config.celery import app as celery_app
from tests.factories import TINY_TRAINING, make_comparisons
from training import jobs, services
from training.models import LoopIteration, TrainingRun
from training.selectors import comparisons_open

QUEUED_BY_CANCEL = "Queued by the loop (iteration 1 cancelled): v0 is 3 open comparisons short.\n"


@pytest.fixture
def tasks_run_here():
    """A task runs where it is sent, as a worker would run it: nothing waits in a queue."""
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = False


def generation_runs(project):
    return TrainingRun.objects.filter(project=project, kind="generate")


def open_of_version(project, number: int) -> int:
    return (
        comparisons_open(project=project)
        .filter(completion_a__policy_version__number=number)
        .count()
    )


def test_a_rejected_iteration_is_followed_by_new_comparisons(
    loop_project, django_capture_on_commit_callbacks, tasks_run_here
):
    # As in test_loop.py: a candidate pushed far from the base, against a strict KL gate.
    loop_project.training_config = {
        **TINY_TRAINING,
        "ppo": {**TINY_TRAINING["ppo"], "kl_coef": 0.0, "learning_rate": 0.05},
    }
    loop_project.gate_max_kl = 1e-6
    loop_project.trigger_new_labels = 6
    loop_project.save()
    assert open_of_version(loop_project, 0) == 0  # every comparison is labelled
    with django_capture_on_commit_callbacks(execute=False):
        iteration = services.iteration_start(project=loop_project, trigger="labels")

    # Only the worker's part: nobody presses a button afterwards.
    with django_capture_on_commit_callbacks(execute=True):
        jobs.iteration_run(iteration=iteration)

    iteration.refresh_from_db()
    run = generation_runs(loop_project).get()
    assert iteration.status == "rejected"
    assert (run.iteration, run.status, run.config["policy"]) == (None, "succeeded", 0)
    assert run.log_tail.startswith(
        "Queued by the loop (iteration 1 rejected): v0 is 3 open comparisons short.\n"
    )
    assert open_of_version(loop_project, 0) == run.summary["comparisons"] >= 1
    waiting = services_waiting(loop_project)
    assert waiting == ("labels", "6 more labels before the next iteration")


def services_waiting(project) -> tuple[str, str]:
    from training.selectors import loop_waiting_for

    waiting = loop_waiting_for(project=project)
    return waiting.code, waiting.message


def test_a_cancelled_or_failed_iteration_queues_one_generation_run(
    project, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False):
        first = services.iteration_start(project=project, trigger="manual")
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        services.iteration_cancel(iteration=first)

    run = generation_runs(project).get()
    assert (run.status, run.iteration, run.log_tail) == ("queued", None, QUEUED_BY_CANCEL)
    assert len(callbacks) == 3  # the iteration's event, the generation, and its message

    with django_capture_on_commit_callbacks(execute=False):
        second = services.iteration_start(project=project, trigger="manual")
    with django_capture_on_commit_callbacks(execute=True):
        jobs.iteration_run(iteration=second)  # no labels: the collect step fails

    second.refresh_from_db()
    assert second.status == "failed"
    assert list(generation_runs(project).values_list("pk", "status")) == [(run.pk, "queued")]


def test_no_generation_while_the_active_policy_has_enough_open_comparisons(
    project, django_capture_on_commit_callbacks
):
    make_comparisons(project, [("a", "b"), ("c", "d"), ("e", "f")])  # 3 train prompts: enough
    with django_capture_on_commit_callbacks(execute=False):
        iteration = services.iteration_start(project=project, trigger="manual")

    with django_capture_on_commit_callbacks(execute=True):
        services.iteration_cancel(iteration=iteration)

    assert not generation_runs(project).exists()
    assert open_of_version(project, 0) == 3


def test_a_promotion_does_not_queue_generation_of_its_own(
    project, django_capture_on_commit_callbacks
):
    iteration = LoopIteration.objects.create(
        project=project, number=1, trigger="manual", status="generating"
    )

    with django_capture_on_commit_callbacks(execute=True):
        services.iteration_advance(iteration=iteration, status="done", expected="generating")

    assert not generation_runs(project).exists()


def test_generation_queue_keeps_one_run_waiting(project, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        first = jobs.generation_queue(project=project)
        second = jobs.generation_queue(project=project)

    assert first.pk == second.pk
    assert len(callbacks) == 1
    assert generation_runs(project).count() == 1


@pytest.mark.django_db(transaction=True)
def test_two_callers_at_once_queue_one_generation_run(project):
    barrier = threading.Barrier(2)
    runs = []

    def queue() -> None:
        try:
            barrier.wait()
            runs.append(jobs.generation_queue(project=project).pk)
        finally:
            connection.close()

    threads = [threading.Thread(target=queue) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(runs) == 2
    assert runs[0] == runs[1]
    assert list(generation_runs(project).values_list("pk", flat=True)) == [runs[0]]


def running_run(project, *, worker: str, started_ago: float, beat_ago: float, **fields):
    now = timezone.now()
    return TrainingRun.objects.create(
        project=project,
        kind=fields.pop("kind", "generate"),
        status="running",
        worker=worker,
        started_at=now - timedelta(seconds=started_ago),
        heartbeat_at=now - timedelta(seconds=beat_ago),
        **fields,
    )


def test_a_reaped_run_ends_at_its_last_heartbeat(project):
    run = running_run(project, worker="gpu-1:4242", started_ago=5000, beat_ago=4940)

    reaped = services.runs_reap_stale(older_than_seconds=180)

    beat = run.heartbeat_at
    run.refresh_from_db()
    assert [r.pk for r in reaped] == [run.pk]
    assert (run.status, run.finished_at, run.duration_seconds) == ("failed", beat, 60.0)
    assert run.error == (
        f"The worker gpu-1:4242 stopped sending heartbeats (last at {beat:%Y-%m-%d %H:%M:%S} "
        "UTC): it was lost."
    )


def test_a_run_of_an_iteration_left_queued_is_reaped_with_its_iteration(project):
    iteration = LoopIteration.objects.create(
        project=project, number=1, trigger="manual", status="reward"
    )
    run = TrainingRun.objects.create(project=project, kind="reward", iteration=iteration)
    queued_at = timezone.now() - timedelta(seconds=600)
    TrainingRun.objects.filter(pk=run.pk).update(queued_at=queued_at)
    fresh = TrainingRun.objects.create(project=project, kind="generate")  # not an iteration's

    reaped = services.runs_reap_stale(older_than_seconds=180)

    run.refresh_from_db()
    iteration.refresh_from_db()
    fresh.refresh_from_db()
    assert [r.pk for r in reaped] == [run.pk]
    assert (run.status, run.finished_at) == ("failed", queued_at)
    assert run.error.startswith("Its iteration's worker was lost before the run started")
    assert (iteration.status, iteration.error) == (
        "failed",
        f"reward run {run.pk} lost its worker.",
    )
    assert fresh.status == "queued"


def test_runs_of_a_dead_process_of_this_host_fail_at_once(project):
    host = socket.gethostname()
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], check=True,
                           capture_output=True, text=True)  # fmt: skip
    dead_pid = int(ended.stdout)
    dead = running_run(project, worker=f"{host}:{dead_pid}", started_ago=70, beat_ago=10)
    alive = running_run(project, worker=f"{host}:{os.getppid()}", started_ago=70, beat_ago=10)
    elsewhere = running_run(project, worker=f"gpu-9:{dead_pid}", started_ago=70, beat_ago=10)

    lost = services.runs_lose_gone_workers(host=host)

    beat = dead.heartbeat_at
    for run in (dead, alive, elsewhere):
        run.refresh_from_db()
    assert [r.pk for r in lost] == [dead.pk]
    assert (dead.status, dead.finished_at, dead.duration_seconds) == ("failed", beat, 60.0)
    assert dead.error.startswith(f"The worker {host}:{dead_pid} is gone")
    assert (alive.status, elsewhere.status) == ("running", "running")
