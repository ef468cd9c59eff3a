"""Fixtures of the loop's tests."""

from __future__ import annotations

import pytest

from feedback.services import assignment_next, label_submit
from tests.factories import LOOP_ANSWERS, TINY_TRAINING, make_comparisons


@pytest.fixture
def loop_project(project, annotator, tiny_model_dir):
    """The project on the tiny model, with six comparisons, each labelled by the annotator."""
    project.base_model = tiny_model_dir
    project.max_new_tokens = 12
    project.comparisons_per_iteration = 3
    project.training_config = TINY_TRAINING
    project.gate_min_win_rate = 0.0  # a tiny random model's win rate is a coin toss
    project.save()
    make_comparisons(project, LOOP_ANSWERS)
    for _ in LOOP_ANSWERS:
        assignment = assignment_next(project=project, user=annotator)
        label_submit(user=annotator, assignment_id=assignment.pk, choice="a")
    return project
