"""Celery tasks: take ids, load rows, call a job or a service.

Generation and training go to the `gpu` queue; bookkeeping to `default` (see the routes in
config/settings/base.py).
"""

from __future__ import annotations

import logging
import os

from celery import shared_task

from feedback.models import ArenaBattle, Project
from training import jobs, services
from training.models import LoopIteration, RewardModelVersion, TrainingRun
from training.services.arena import GENERATION_TIME_LIMIT

logger = logging.getLogger(__name__)

# A whole iteration on a big model can take hours; the limits stop a hung job for good.
ITERATION_TIME_LIMIT = 12 * 3600
# A running job whose heart has not beaten for this long lost its worker.
STALE_AFTER_SECONDS = float(os.environ.get("HONE_RUN_STALE_SECONDS", "180"))
# A queued generation run whose message the broker no longer holds after this long is sent
# again (the wait lets a message just committed reach the broker first).
RESEND_AFTER_SECONDS = float(os.environ.get("HONE_RUN_RESEND_SECONDS", "120"))


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
def human_gate_check_task(project_id: int | None = None) -> None:
    """Let the labels decide the human gate of the iteration(s) waiting for humans: of one
    project (after one of its labels), or of every project (the beat, which also sees what a
    label does not: reviews, undone labels, arena votes, a rollback). A candidate that passes
    goes on to promotion on a GPU worker."""
    waiting = LoopIteration.objects.select_related("project", "policy__parent").filter(
        status=LoopIteration.Status.AWAITING_HUMANS
    )
    if project_id is not None:
        waiting = waiting.filter(project_id=project_id)
    for iteration in waiting:
        if services.iteration_human_gate_check(iteration=iteration) == (
            LoopIteration.Status.PROMOTING
        ):
            loop_iteration_task.delay(iteration.pk)


@shared_task
def runs_reap_stale_task() -> None:
    services.runs_reap_stale(older_than_seconds=STALE_AFTER_SECONDS)


@shared_task
def runs_resend_lost_task() -> None:
    """For the beat: a queued run whose message was lost (broker restarted or failed over) is
    sent again, never left waiting for ever."""
    services.runs_resend_lost(older_than_seconds=RESEND_AFTER_SECONDS)


@shared_task(acks_late=True, time_limit=int(GENERATION_TIME_LIMIT.total_seconds()))
def arena_generate_task(battle_id: int) -> None:
    battle = (
        ArenaBattle.objects.select_related("project", "prompt", "policy_a", "policy_b")
        .filter(pk=battle_id)
        .first()
    )
    if battle is None or battle.status != ArenaBattle.Status.GENERATING:
        return
    try:
        jobs.arena_generate(battle=battle)
    except Exception:
        # Recorded on the battle (the annotator is told and starts a new one); logged here
        # for the operator.
        logger.exception("Arena battle %s failed", battle_id)


@shared_task(acks_late=True, time_limit=2 * 3600)
def reward_health_score_task(project_id: int | None = None) -> None:
    """Score the labels that arrived after each watched reward model was trained (one
    project's after its labels, every project's from the beat; docs/judgement.md). Idempotent:
    a label scored once is not scored again."""
    projects = Project.objects.filter(
        pk__in=RewardModelVersion.objects.values("project_id").distinct()
    )
    if project_id is not None:
        projects = projects.filter(pk=project_id)
    for project in projects:
        jobs.reward_health_score(project=project)
