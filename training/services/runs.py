"""Training runs: a job row from queued to its outcome, its metrics, log and heartbeat reaping."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from feedback.events import event_publish
from feedback.models import (
    Project,
)
from training.models import (
    LoopIteration,
    RunMetric,
    TrainingRun,
)
from training.services.iterations import iteration_advance, iteration_cancel

LOG_TAIL_CHARS = 20_000


# --- Training runs -----------------------------------------------------------------------


def run_create(
    *,
    project: Project,
    kind: str,
    config: dict[str, Any],
    iteration: LoopIteration | None = None,
) -> TrainingRun:
    return TrainingRun.objects.create(
        project=project, iteration=iteration, kind=kind, config=config
    )


def run_start(*, run: TrainingRun, worker: str) -> TrainingRun:
    now = timezone.now()
    run.status = TrainingRun.Status.RUNNING
    run.worker = worker
    run.started_at = run.started_at or now
    run.heartbeat_at = now
    run.error = ""
    run.save(update_fields=["status", "worker", "started_at", "heartbeat_at", "error"])
    _run_event(run)
    return run


def run_record_metrics(*, run: TrainingRun, values: dict[str, Any]) -> RunMetric:
    """Store one logging step, beat the heart, and stream the numbers to browsers."""
    step = int(values.get("step", 0))
    clean = {k: v for k, v in values.items() if isinstance(v, (int, float, str, bool))}
    with transaction.atomic():
        metric = RunMetric.objects.create(run=run, step=step, values=clean)
        TrainingRun.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now())
        event_publish(
            project_id=run.project_id,
            event="run_progress",
            data={"run_id": run.pk, "kind": run.kind, "step": step, "values": clean},
            staff_only=True,
        )
    return metric


def run_log(*, run: TrainingRun, line: str) -> None:
    run.log_tail = (run.log_tail + line.rstrip("\n") + "\n")[-LOG_TAIL_CHARS:]
    run.heartbeat_at = timezone.now()
    run.save(update_fields=["log_tail", "heartbeat_at"])


def run_succeed(*, run: TrainingRun, summary: dict[str, Any]) -> TrainingRun:
    run.status = TrainingRun.Status.SUCCEEDED
    run.summary = summary
    run.finished_at = timezone.now()
    with transaction.atomic():
        run.save(update_fields=["status", "summary", "finished_at"])
        _run_event(run)
    return run


def run_fail(*, run: TrainingRun, error: str) -> TrainingRun:
    run.status = TrainingRun.Status.FAILED
    run.error = error
    run.finished_at = timezone.now()
    with transaction.atomic():
        run.save(update_fields=["status", "error", "finished_at"])
        _run_event(run)
    return run


def run_cancel(*, run: TrainingRun, actor: AbstractBaseUser | None = None) -> TrainingRun:
    """Ask a queued or running job to stop; a queued one stops before it starts. A run of an
    iteration cancels the iteration (audited)."""
    if run.status not in (TrainingRun.Status.QUEUED, TrainingRun.Status.RUNNING):
        raise ValidationError({"run": f"Run {run.pk} is {run.status}: nothing to cancel."})
    run.cancel_requested = True
    run.save(update_fields=["cancel_requested"])
    if run.iteration_id and run.iteration.is_running:
        iteration_cancel(iteration=run.iteration, actor=actor)
    return run


def run_mark_cancelled(*, run: TrainingRun) -> TrainingRun:
    run.status = TrainingRun.Status.CANCELLED
    run.finished_at = timezone.now()
    with transaction.atomic():
        run.save(update_fields=["status", "finished_at"])
        _run_event(run)
    return run


def runs_reap_stale(*, older_than_seconds: float) -> list[TrainingRun]:
    """Mark failed every running job whose worker stopped beating (killed, machine lost).

    Its iteration fails too, so the loop is free again; nothing it half-made was registered
    (an artifact only gets its row once complete), and the active policy never changed.
    """
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    reaped = []
    for run in TrainingRun.objects.filter(
        status=TrainingRun.Status.RUNNING, heartbeat_at__lt=cutoff
    ).select_related("iteration"):
        with transaction.atomic():
            updated = TrainingRun.objects.filter(
                pk=run.pk, status=TrainingRun.Status.RUNNING, heartbeat_at__lt=cutoff
            ).update(
                status=TrainingRun.Status.FAILED,
                error=f"The worker {run.worker} stopped sending heartbeats "
                f"(last at {run.heartbeat_at:%Y-%m-%d %H:%M:%S} UTC): it was lost.",
                finished_at=timezone.now(),
            )
            if not updated:
                continue
            run.refresh_from_db()
            _run_event(run)
            if run.iteration_id and run.iteration.is_running:
                iteration_advance(
                    iteration=run.iteration,
                    status=LoopIteration.Status.FAILED,
                    error=f"{run.kind} run {run.pk} lost its worker.",
                )
        reaped.append(run)
    return reaped


def _run_event(run: TrainingRun) -> None:
    event_publish(
        project_id=run.project_id,
        event="run_status",
        data={"run_id": run.pk, "kind": run.kind, "status": run.status, "error": run.error},
        staff_only=True,  # annotators see no runs (the API answers them 403)
    )
