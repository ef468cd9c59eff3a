"""Celery tasks: take ids, load rows, call a job. Routed to the `gpu` queue (settings)."""

from __future__ import annotations

import logging

from celery import shared_task

from training import jobs
from training.models import LoopIteration, TrainingRun

logger = logging.getLogger(__name__)

# A whole iteration on a big model can take hours; the limits stop a hung job for good.
ITERATION_TIME_LIMIT = 12 * 3600


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


@shared_task(acks_late=True, time_limit=15 * 60)
def arena_generate_task(battle_id: int) -> None:
    from feedback.models import ArenaBattle
    from training.arena import arena_generate

    battle = (
        ArenaBattle.objects.select_related("project", "prompt", "policy_a", "policy_b")
        .filter(pk=battle_id)
        .first()
    )
    if battle is None or battle.status != ArenaBattle.Status.GENERATING:
        return
    try:
        arena_generate(battle=battle)
    except Exception:
        # Recorded on the battle (the annotator is told and starts a new one); logged here
        # for the operator.
        logger.exception("Arena battle %s failed", battle_id)
