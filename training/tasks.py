"""Celery tasks: take ids, load rows, call a job or a service.

Generation and training go to the `gpu` queue; bookkeeping to `default` (see the routes in
config/settings/base.py).
"""

from __future__ import annotations

import os

from celery import shared_task

from feedback.models import Project
from training import jobs, services
from training.models import LoopIteration, TrainingRun

# A whole iteration on a big model can take hours; the limits stop a hung job for good.
ITERATION_TIME_LIMIT = 12 * 3600
# A running job whose heart has not beaten for this long lost its worker.
STALE_AFTER_SECONDS = float(os.environ.get("HONE_RUN_STALE_SECONDS", "180"))


@shared_task(acks_late=True, time_limit=ITERATION_TIME_LIMIT)
def loop_iteration_task(iteration_id: int) -> None:
    iteration = LoopIteration.objects.select_related("project").filter(pk=iteration_id).first()
    if iteration is None:
        return
    jobs.iteration_run(iteration=iteration)


@shared_task(acks_late=True, time_limit=3 * 3600)
def generate_comparisons_task(run_id: int) -> None:
    run = TrainingRun.objects.select_related("project").filter(pk=run_id).first()
    if run is None or run.status != TrainingRun.Status.QUEUED:
        return  # already handled: a redelivered message does nothing twice
    try:
        jobs.generation_run(run=run)
    except Exception:
        return  # recorded on the run by the job; nothing to retry blindly


@shared_task
def iteration_start_task(project_id: int, trigger: str = "schedule") -> None:
    """For schedules (django-celery-beat): start an iteration unless one is running."""
    project = Project.objects.filter(pk=project_id).first()
    if project is None:
        return
    services.iteration_start(project=project, trigger=trigger)


@shared_task
def runs_reap_stale_task() -> None:
    services.runs_reap_stale(older_than_seconds=STALE_AFTER_SECONDS)
