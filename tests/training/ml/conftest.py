"""Shared fixtures for the training/ml tests: one tiny model and one reward model per session.

No database: these tests run with or without pytest-django (`-p no:django`).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from training.ml.loading import LoraSettings, attach_lora, load_causal_lm
from training.ml.reward import RewardTrainConfig, train_reward
from training.ml.tiny import build_tiny_model

# One thread: on a shared 2-core machine, two OpenMP threads competing with another busy
# process make small matmuls ~1000x slower (measured: 10 ms vs 5 us per tiny linear).
torch.set_num_threads(1)

GOOD_WORDS = ["yes", "good", "clear", "correct", "helpful", "thank"]
BAD_WORDS = ["no", "bad", "wrong", "vague", "lazy", "dog"]
TOPICS = ["cat", "dog", "bird", "fish", "sea", "sky", "tea", "rice", "apple", "bread"]
REWARD_MAX_LENGTH = 48
LONG_PROMPTS = 3  # pairs whose prompt alone exceeds REWARD_MAX_LENGTH


def write_preferences(path: Path, *, pairs: int, seed: int, long_prompts: int = 0) -> Path:
    """A learnable preference set: chosen answers use GOOD_WORDS, rejected ones BAD_WORDS.

    Lengths are drawn independently, so the chosen answer is the shorter one about half the
    time and length alone predicts nothing. Every third prompt is in chat format.
    """
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as f:
        for i in range(pairs):
            prompt: object = f"Question {i}: tell me about the {rng.choice(TOPICS)}."
            if i < long_prompts:
                prompt = f"Question {i}: " + " ".join(rng.choice(TOPICS) for _ in range(60))
            chosen: object = " ".join(rng.choice(GOOD_WORDS) for _ in range(rng.randint(2, 8)))
            rejected: object = " ".join(rng.choice(BAD_WORDS) for _ in range(rng.randint(2, 8)))
            if i % 3 == 0:
                prompt = [{"role": "user", "content": prompt}]
                chosen = [{"role": "assistant", "content": chosen}]
                rejected = [{"role": "assistant", "content": rejected}]
            f.write(json.dumps({"prompt": prompt, "chosen": chosen, "rejected": rejected}) + "\n")
    return path


def write_demonstrations(path: Path, count: int, *, seed: int = 0) -> Path:
    """A planted pattern: the answer names the prompt's topic in a fixed sentence. Half the
    lines in the messages format, half as prompt/completion."""
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        topic = rng.choice(TOPICS)
        question, answer = f"Question {i}: tell me about the {topic}.", f"The {topic} is good."
        if i % 2:
            rows.append(
                {
                    "messages": [
                        {"role": "user", "content": question},
                        {"role": "assistant", "content": answer},
                    ]
                }
            )
        else:
            rows.append({"prompt": question, "completion": answer})
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def write_prompts(path: Path, prompts: list[object]) -> Path:
    path.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in prompts), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture(scope="session")
def preference_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "preferences.jsonl"
    return write_preferences(path, pairs=48, seed=0, long_prompts=LONG_PROMPTS)


@pytest.fixture(scope="session")
def reward_config(tiny_model: str) -> RewardTrainConfig:
    return RewardTrainConfig(
        base_model=tiny_model,
        lora_r=8,
        lora_alpha=16,
        learning_rate=5e-3,
        epochs=3,
        batch_size=12,
        max_length=REWARD_MAX_LENGTH,
        eval_fraction=0.25,
        logging_steps=1,
        seed=0,
    )


@pytest.fixture(scope="session")
def trained_reward(
    tmp_path_factory: pytest.TempPathFactory,
    reward_config: RewardTrainConfig,
    preference_file: Path,
) -> tuple[Path, dict, list[dict]]:
    """(reward folder, train_reward's result, the metrics it streamed)."""
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("reward") / "rm"
    metrics: list[dict] = []
    result = train_reward(reward_config, preference_file, out, on_metrics=metrics.append)
    return out, result, metrics


@pytest.fixture(scope="session")
def policy_adapters(tmp_path_factory: pytest.TempPathFactory, tiny_model: str) -> dict[str, Path]:
    """LoRA policy adapters: "zero" (fresh, B = 0, so exactly the base) and "perturbed"."""
    root = tmp_path_factory.mktemp("policies")
    model, _ = load_causal_lm(tiny_model)
    torch.manual_seed(0)
    peft_model = attach_lora(model, LoraSettings(r=4, alpha=8))
    peft_model.save_pretrained(root / "zero")
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.5)
    peft_model.save_pretrained(root / "perturbed")
    return {"zero": root / "zero", "perturbed": root / "perturbed"}
