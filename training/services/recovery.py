"""The loop after a fault: new comparisons when it goes on with the same active policy, and
what a worker that starts (or the beat) picks up of the work that died with another.

A run's row is the source of truth and its message only carries its id, so each of these
reads the rows, asks the broker what it still holds (training/broker.py), and sends again
only what nobody will deliver. The tasks are idempotent: a message that turns up after all
finds its run or its iteration moved on and does nothing.
"""

from __future__ import annotations

import logging
import os
import socket
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from feedback.models import Project
from training.broker import broker_messages_held
from training.models import LoopIteration, TrainingRun
from training.selectors import (
    comparisons_wanted,
    generation_pending,
    policy_active,
    versus_generated,
)
from training.services.runs import run_log, runs_lose, runs_reap_stale

logger = logging.getLogger(__name__)

# An iteration in one of these goes on by a worker's hand; in the others it waits for people.
ITERATION_WORKER_STATUSES = tuple(
    s for s in LoopIteration.ACTIVE_STATUSES if s != LoopIteration.Status.AWAITING_APPROVAL
)


def comparisons_replenish(*, project: Project, reason: str) -> TrainingRun | None:
    """Queue a generation run of the active policy when its annotators are running out: fewer
    open comparisons of it than comparisons_per_iteration (selectors.comparisons_wanted).

    Nothing is queued while a generation run is queued or running, or while an iteration
    runs (it ends with new comparisons, or passes here again). Called when an iteration ends
    without a promotion and when a worker starts. Returns the run queued, or None.
    """
    from training.jobs.generation import generation_queue

    if LoopIteration.objects.filter(
        project=project, status__in=LoopIteration.ACTIVE_STATUSES
    ).exists():
        return None
    if generation_pending(project=project) is not None:
        return None
    wanted = comparisons_wanted(project=project)
    if not wanted:
        return None
    with transaction.atomic():
        run = generation_queue(project=project)
        run_log(
            run=run,
            line=f"Queued by the loop ({reason}): v{policy_active(project=project).number} "
            f"is {wanted} open comparison{'s' if wanted != 1 else ''} short.",
        )
    return run


def runs_lose_gone_workers(*, host: str) -> list[TrainingRun]:
    """Fail at once the runs marked running by a process of this host that no longer exists
    (the demo stopped with Ctrl-C, a worker killed), instead of waiting for the reaper."""
    gone = [
        run.pk
        for run in TrainingRun.objects.filter(
            status=TrainingRun.Status.RUNNING, worker__startswith=f"{host}:"
        )
        if not _process_alive(run.worker)
    ]
    return runs_lose(
        runs=TrainingRun.objects.filter(pk__in=gone, status=TrainingRun.Status.RUNNING),
        reason=lambda run: (
            f"The worker {run.worker} is gone: its process no longer exists "
            f"(found by a worker starting on {host}; last heartbeat at "
            f"{run.heartbeat_at:%Y-%m-%d %H:%M:%S} UTC)."
        ),
    )


def _process_alive(worker: str) -> bool:
    """Whether the process of a worker name (`host:pid`, training.jobs.runner.WORKER_NAME) on
    this host still exists. A pid the starting worker now holds is not its old owner."""
    try:
        pid = int(worker.rsplit(":", 1)[1])
    except (IndexError, ValueError):
        return True  # not a name Hone writes: leave it to the reaper
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process has it
    return True


def runs_resend_lost(*, older_than_seconds: float) -> list[TrainingRun]:
    """Send again each generation run queued longer than this whose message the broker no
    longer holds (a Redis that keeps nothing on disk restarted; a failover). Nothing is sent
    when the broker cannot be read (the in-process broker of a shell)."""
    from training.tasks import generate_comparisons_task

    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    queued = list(
        TrainingRun.objects.filter(
            kind=TrainingRun.Kind.GENERATE,
            status=TrainingRun.Status.QUEUED,
            iteration__isnull=True,
            queued_at__lt=cutoff,
        ).order_by("id")
    )
    held = broker_messages_held() if queued else None
    if held is None:
        return []
    resent = []
    for run in queued:
        if (generate_comparisons_task.name, (run.pk,)) in held:
            continue
        run_log(run=run, line="Sent to the workers again: the broker had lost its message.")
        generate_comparisons_task.delay(run.pk)
        resent.append(run)
    return resent


def iterations_resume_lost() -> list[LoopIteration]:
    """Queue again each running iteration whose step message the broker lost: it waits for
    a worker, none of its runs is queued or running, and the broker holds no message for it.
    Its steps are compare-and-set on its status (training/jobs/iteration.py), so it goes on
    from where the last step left it."""
    from training.tasks import loop_iteration_task

    candidates = [
        iteration
        for iteration in LoopIteration.objects.filter(status__in=ITERATION_WORKER_STATUSES)
        .select_related("policy__parent")
        .order_by("id")
        if not iteration.runs.filter(
            status__in=[TrainingRun.Status.QUEUED, TrainingRun.Status.RUNNING]
        ).exists()
        and not _waits_for_people(iteration)
    ]
    held = broker_messages_held() if candidates else None
    if held is None:
        return []
    resumed = []
    for iteration in candidates:
        if (loop_iteration_task.name, (iteration.pk,)) not in held:
            loop_iteration_task.delay(iteration.pk)
            resumed.append(iteration)
    return resumed


def _waits_for_people(iteration: LoopIteration) -> bool:
    """The human gate's comparisons are out: labels (or the beat) move it on, not a worker."""
    return iteration.status == LoopIteration.Status.AWAITING_HUMANS and versus_generated(
        iteration=iteration, policy=iteration.policy, versus=iteration.policy.parent
    )


def loop_recover_at_worker_start(*, stale_after_seconds: float) -> dict[str, list[int]]:
    """What a worker does as it starts: fail the runs whose worker is gone (a dead process of
    this host, or silent longer than `stale_after_seconds`), send again the queued runs and
    iterations whose message was lost, and queue new comparisons where the active policy
    runs short. Returns the ids it touched, by what it did."""
    report = {
        "runs_failed": [
            run.pk
            for run in runs_lose_gone_workers(host=socket.gethostname())
            + runs_reap_stale(older_than_seconds=stale_after_seconds)
        ],
        "runs_resent": [run.pk for run in runs_resend_lost(older_than_seconds=0)],
        "iterations_resumed": [it.pk for it in iterations_resume_lost()],
        "generation_queued": [
            run.pk
            for project in Project.objects.order_by("id")
            if (run := comparisons_replenish(project=project, reason="a worker started"))
        ],
    }
    logger.info("Worker start: %s", report)
    return report
