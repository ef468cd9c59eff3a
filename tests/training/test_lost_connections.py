"""Hours of training outlive database connections: a restart of PostgreSQL or a dropped
network path ends them, and the worker learns it at its next query. What the worker then
writes (a run's failure, a heartbeat) must still reach the database (PostgreSQL only: the
tests end a backend the way a restart does)."""

from __future__ import annotations

import time

import pytest
from django.db import connection

from tests.factories import backends_end, one_label_to_train_on
from training import jobs, services
from training.models import LoopIteration, TrainingRun
from training.tasks import loop_iteration_task

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="ends a PostgreSQL backend"),
]


def test_a_connection_lost_during_training_still_records_the_failure(
    project, annotator, tiny_model_dir, monkeypatch
):
    import training.ml.reward

    one_label_to_train_on(project, annotator, tiny_model_dir)
    monkeypatch.setattr(loop_iteration_task, "delay", lambda *args: None)  # run here instead
    iteration = services.iteration_start(project=project, trigger="manual")

    def training_while_the_database_restarts(*args, **kwargs):
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            backends_end(cursor.fetchone()[0])
        raise RuntimeError("CUDA out of memory (simulated)")

    monkeypatch.setattr(training.ml.reward, "train_reward", training_while_the_database_restarts)

    jobs.iteration_run(iteration=iteration)

    iteration.refresh_from_db()
    run = TrainingRun.objects.get(iteration=iteration)
    assert iteration.status == LoopIteration.Status.FAILED
    assert (run.kind, run.status) == ("reward", "failed")
    assert "RuntimeError: CUDA out of memory (simulated)" in run.error


class _Heartbeat(jobs.Heartbeat):
    """The job's heartbeat, noting the PostgreSQL backend its thread talks to."""

    def run(self) -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            self.backend_pid = cursor.fetchone()[0]
        super().run()


def test_the_heartbeat_comes_back_after_its_connection_is_lost(project, monkeypatch):
    monkeypatch.setattr(jobs.runner, "HEARTBEAT_SECONDS", 0.05)
    run = services.run_create(project=project, kind=TrainingRun.Kind.REWARD, config={})
    heartbeat = _Heartbeat(run.pk)
    heartbeat.start()
    try:
        beats = _heartbeat_wait(run, after=None)
        backends_end(heartbeat.backend_pid)
        lost = time.time()

        later = _heartbeat_wait(run, after=lost)
    finally:
        heartbeat.stopped.set()
        heartbeat.join()

    assert later > beats


def _heartbeat_wait(run: TrainingRun, *, after: float | None, seconds: float = 30.0):
    """The run's heartbeat once it is set (and later than `after`), or fails after `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        beat = TrainingRun.objects.values_list("heartbeat_at", flat=True).get(pk=run.pk)
        if beat is not None and (after is None or beat.timestamp() > after):
            return beat
        time.sleep(0.05)
    pytest.fail(f"no heartbeat {'after the connection was lost ' if after else ''}in {seconds} s")
