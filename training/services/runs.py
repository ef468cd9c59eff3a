"""Training runs: a job row from queued to its outcome, its metrics, log and heartbeat reaping."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q, QuerySet
from django.db.models.functions import Coalesce
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
from training.services.iterations import IterationMoved, iteration_advance, iteration_cancel

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
    """Mark failed every running job whose worker stopped beating (killed, machine lost), and
    every run of an iteration still queued that long: an iteration's step creates its run
    and starts it at once, so such a run lost its worker before it started."""
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)

    def reason(run: TrainingRun) -> str:
        if run.status == TrainingRun.Status.QUEUED:
            return (
                "Its iteration's worker was lost before the run started "
                f"(queued at {run.queued_at:%Y-%m-%d %H:%M:%S} UTC)."
            )
        return (
            f"The worker {run.worker} stopped sending heartbeats "
            f"(last at {run.heartbeat_at:%Y-%m-%d %H:%M:%S} UTC): it was lost."
        )

    return runs_lose(
        runs=TrainingRun.objects.filter(
            Q(status=TrainingRun.Status.RUNNING, heartbeat_at__lt=cutoff)
            | Q(status=TrainingRun.Status.QUEUED, iteration__isnull=False, queued_at__lt=cutoff)
        ),
        reason=reason,
    )


def runs_lose(
    *, runs: QuerySet[TrainingRun], reason: Callable[[TrainingRun], str]
) -> list[TrainingRun]:
    """Mark failed each of these runs: their worker is gone. A run ends where its worker was
    last heard of (its last heartbeat), not when the loss was noticed, so its elapsed time
    is the time it really ran.

    Its iteration fails too, so the loop is free again; nothing it half-made was registered
    (an artifact only gets its row once complete), and the active policy never changed.
    Each update is a compare-and-set on `runs`' own filter: a run that beat its heart or
    ended meanwhile is left alone.
    """
    lost = []
    for run in runs.select_related("iteration"):
        with transaction.atomic():
            updated = runs.filter(pk=run.pk).update(
                status=TrainingRun.Status.FAILED,
                error=reason(run),
                finished_at=Coalesce("heartbeat_at", "started_at", "queued_at"),
            )
            if not updated:
                continue
            run.refresh_from_db()
            _run_event(run)
            if run.iteration_id and run.iteration.is_running:
                with contextlib.suppress(IterationMoved):  # cancelled meanwhile: it stays so
                    iteration_advance(
                        iteration=run.iteration,
                        status=LoopIteration.Status.FAILED,
                        expected=run.iteration.status,
                        error=f"{run.kind} run {run.pk} lost its worker.",
                    )
        lost.append(run)
    return lost


def _run_event(run: TrainingRun) -> None:
    event_publish(
        project_id=run.project_id,
        event="run_status",
        data={"run_id": run.pk, "kind": run.kind, "status": run.status, "error": run.error},
        staff_only=True,  # annotators see no runs (the API answers them 403)
    )
