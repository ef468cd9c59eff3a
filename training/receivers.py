"""What the loop does when the feedback app tells it something (feedback/signals.py).

Connected once in TrainingConfig.ready(). Receivers take plain ids, load rows and call one
service or queue one task, like tasks do.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import transaction

from feedback.models import Project
from training import services
from training.health import fresh_labels_of_newest
from training.selectors import labels_since_last_iteration, loop_waiting_for
from training.tasks import human_gate_check_task, reward_health_score_task


def policy_base_on_project_created(*, project: Project, **kwargs: Any) -> None:
    """Every project starts with version 0: the base model with no adapter, active."""
    services.policy_create_base(project=project)


def loop_waiting_on_ask(*, project: Project, **kwargs: Any) -> str:
    """What an annotator with an empty queue reads that the loop is waiting for."""
    return loop_waiting_for(project=project).message


def iteration_trigger_on_label(*, project_id: int, trigger_new_labels: bool, **kwargs: Any) -> None:
    """Start an iteration once the project's label trigger is met (none while one runs)."""
    if not trigger_new_labels:
        return
    project = Project.objects.get(pk=project_id)
    if not project.trigger_new_labels:
        return
    if labels_since_last_iteration(project=project) >= project.trigger_new_labels:
        services.iteration_start(project=project, trigger="labels")


def human_gate_check_on_label(*, project_id: int, human_gate: bool, **kwargs: Any) -> None:
    """A label may decide the human gate of an iteration waiting for humans: check on a
    worker once the label is committed (a bootstrap is no work for the annotator's request).
    Robust: a broker that is down costs the annotator nothing; the beat checks again."""
    if not human_gate:
        return
    transaction.on_commit(lambda: human_gate_check_task.delay(project_id), robust=True)


def reward_health_score_on_label(*, project_id: int, **kwargs: Any) -> None:
    """Every HONE_HEALTH_EVERY_LABELS decisive labels since the newest reward model was
    trained, queue their scoring on a GPU worker once the label is committed (the request
    only counts; the beat scores the rest, and the labels of projects that do not listen)."""
    every = settings.HONE_HEALTH_EVERY_LABELS
    if every < 1:
        return
    fresh = fresh_labels_of_newest(project_id=project_id)
    if fresh and fresh % every == 0:
        transaction.on_commit(lambda: reward_health_score_task.delay(project_id), robust=True)
