"""Fixtures of the loop's tests that need a trained reward model."""

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
