"""Fixtures of the loop's tests: a project on the tiny model with labels to train on, a trained
reward model. Django is imported inside them (tests/training/ml runs without it)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_reward_dir(tmp_path_factory, tiny_model_dir) -> Path:
    """A reward adapter of the tiny model, trained for a few steps on "good" over "bad"
    answers: a real model to score with (what it prefers is not what these tests check)."""
    from training.ml.reward import RewardTrainConfig, train_reward

    root = tmp_path_factory.mktemp("tiny-reward")
    data = root / "pairs.jsonl"
    rows = [
        {"prompt": f"Question {i}?", "chosen": "good and clear", "rejected": "bad"}
        for i in range(8)
    ]
    data.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    config = RewardTrainConfig(
        base_model=tiny_model_dir,
        lora_r=4,
        lora_alpha=8,
        epochs=1,
        batch_size=4,
        max_length=64,
        eval_fraction=0.25,
        logging_steps=1,
    )
    train_reward(config, data, root / "rm")
    return root / "rm"


@pytest.fixture
def loop_project(project, annotator, tiny_model_dir):
    """The project on the tiny model with TINY_TRAINING, six labelled comparisons on train
    prompts, and gates that a tiny random model can pass."""
    from feedback.services import assignment_next, label_submit
    from tests.factories import LOOP_ANSWERS, TINY_TRAINING, make_comparisons

    project.base_model = tiny_model_dir
    project.max_new_tokens = 12
    project.comparisons_per_iteration = 3
    project.training_config = TINY_TRAINING
    project.gate_min_win_rate = 0.0  # a tiny random model's win rate is a coin toss
    project.gate_judge_min_win_rate = None  # the judge gate has tests of its own (test_judge.py)
    project.save()
    make_comparisons(project, LOOP_ANSWERS)
    for _ in LOOP_ANSWERS:
        assignment = assignment_next(project=project, user=annotator)
        label_submit(user=annotator, assignment_id=assignment.pk, choice="a")
    return project
