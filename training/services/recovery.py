"""The loop after a fault: new comparisons when it goes on with the same active policy."""

from __future__ import annotations

from django.db import transaction

from feedback.models import Project
from training.models import LoopIteration, TrainingRun
from training.selectors import comparisons_wanted, generation_pending, policy_active
from training.services.runs import run_log


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
