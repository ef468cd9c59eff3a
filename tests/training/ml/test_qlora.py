"""QLoRA (`load_in_4bit`): every stage refuses it on a machine without a CUDA GPU and
bitsandbytes, with one clear message, before any model is loaded. The 4-bit path itself
needs a GPU: bench/gpu_check.sh runs it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from training.ml.dpo import DPOTrainConfig, train_dpo
from training.ml.loading import LOAD_IN_4BIT_NEEDS, load_causal_lm, load_sequence_classifier
from training.ml.ppo import PPOConfig, train_ppo
from training.ml.reward import RewardTrainConfig, train_reward
from training.ml.sft import SFTTrainConfig, train_sft

pytestmark = pytest.mark.skipif(
    torch.cuda.is_available() and importlib.util.find_spec("bitsandbytes") is not None,
    reason="this machine can load in 4 bits",
)

STAGES = {
    "reward": (RewardTrainConfig, train_reward),
    "sft": (SFTTrainConfig, train_sft),
    "dpo": (DPOTrainConfig, train_dpo),
    "ppo": (PPOConfig, train_ppo),
}


@pytest.mark.parametrize("stage", list(STAGES))
def test_every_stage_refuses_4bit_without_a_gpu_before_loading(stage: str, tmp_path: Path) -> None:
    config_class, train = STAGES[stage]
    # neither the base model nor the data exists: the 4-bit check comes before both
    config = config_class(base_model=str(tmp_path / "no-model"), load_in_4bit=True)

    with pytest.raises(ValueError) as error:
        train(config, tmp_path / "no-data.jsonl", tmp_path / "out")

    assert str(error.value).startswith(LOAD_IN_4BIT_NEEDS)
    assert LOAD_IN_4BIT_NEEDS == (
        "load_in_4bit needs a CUDA GPU and bitsandbytes: pip install -r requirements-gpu.txt"
    )
    assert not (tmp_path / "out").exists()


def test_the_loaders_refuse_4bit_without_a_gpu(tiny_model: str) -> None:
    for load in (load_causal_lm, load_sequence_classifier):
        with pytest.raises(ValueError, match="load_in_4bit needs a CUDA GPU"):
            load(tiny_model, load_in_4bit=True)
