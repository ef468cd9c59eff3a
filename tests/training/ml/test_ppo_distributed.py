"""PPO across processes: sampling that does not depend on the split, old log-probs from
sampling, and 2 processes (`training.ml.job`, gloo on CPUs) training as 1. No database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from training.ml.job import JobSpec, launch_command
from training.ml.ppo import (
    PPOConfig,
    _left_pad,
    build_policy_and_value,
    row_generator,
    sample_answers,
    token_logprobs,
)

ROOT = Path(__file__).resolve().parents[3]
PROMPT_LENGTHS = [5, 9, 3, 12, 7, 4, 10, 6]  # 8 prompts of different lengths: left padding
TIMING = {"elapsed_seconds", "eps"}


def perturbed_model(tiny_model: str, **config):
    """The tiny model's policy and value, adapter and head moved away from zero."""
    model, tokenizer = build_policy_and_value(PPOConfig(base_model=tiny_model, **config))
    torch.manual_seed(3)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name or name == "value_head.weight":
                param.normal_(0, 0.3)
    return model, tokenizer


def prompts(pad_id: int) -> list[list[int]]:
    ids = torch.Generator().manual_seed(5)
    rows = [torch.randint(10, 500, (n,), generator=ids).tolist() for n in PROMPT_LENGTHS]
    assert all(pad_id not in row for row in rows)
    return rows


def sample_rows(model, rows: list[list[int]], index: list[int], *, seed: int, pad_id: int):
    """Sample prompts `index` of `rows` (left-padded to their own longest), row generators by
    their index: as one process of a split would."""
    queries, mask = _left_pad([rows[i] for i in index], pad_id, "cpu")
    generators = [row_generator(seed, 1, i) for i in index]
    stop_ids = torch.tensor([0])  # a token the random prompts never hold; rarely sampled
    tokens, logprobs, values = sample_answers(
        model,
        queries,
        mask,
        generators,
        max_new_tokens=12,
        temperature=0.8,
        stop_ids=stop_ids,
        pad_id=pad_id,
    )
    return queries, mask, tokens, logprobs, values


def test_sampling_gives_the_same_answers_whatever_the_split(tiny_model: str) -> None:
    model, tokenizer = perturbed_model(tiny_model)
    pad_id = tokenizer.pad_token_id
    rows = prompts(pad_id)
    _, _, tokens, logprobs, values = sample_rows(model, rows, list(range(8)), seed=0, pad_id=pad_id)
    for share in ([0, 2, 4, 6], [1, 3, 5, 7], [5]):
        _, _, t, lp, v = sample_rows(model, rows, share, seed=0, pad_id=pad_id)
        # Other batch mates, other padding: the same tokens; log-probs and values agree up to
        # float32 rounding (other matrix shapes).
        assert torch.equal(t, tokens[share, : t.shape[1]])
        assert torch.allclose(lp, logprobs[share, : t.shape[1]], atol=1e-5)
        assert torch.allclose(v, values[share, : t.shape[1]], atol=1e-5)
    again = sample_rows(model, rows, list(range(8)), seed=0, pad_id=pad_id)[2]
    other = sample_rows(model, rows, list(range(8)), seed=1, pad_id=pad_id)[2]
    assert torch.equal(again, tokens)  # same seed, same answers
    assert not torch.equal(other, tokens)  # another seed, other answers
    assert len({tuple(r) for r in tokens.tolist()}) == 8


@pytest.mark.parametrize("value_model", ["shared", "separate"])
def test_logprobs_from_sampling_equal_a_full_forward(tiny_model: str, value_model: str) -> None:
    model, tokenizer = perturbed_model(tiny_model, value_model=value_model)
    pad_id = tokenizer.pad_token_id
    queries, mask, tokens, logprobs, values = sample_rows(
        model, prompts(pad_id), list(range(8)), seed=0, pad_id=pad_id
    )
    assert (values is None) == (value_model == "separate")
    ids = torch.cat([queries, tokens], 1)
    attention_mask = torch.cat([mask, torch.ones_like(tokens)], 1)
    with torch.no_grad():
        logits, full_values = model(ids, attention_mask, queries.shape[1])
        full = token_logprobs(logits / 0.8, tokens)
    # float32: the cached, token-by-token forward of sampling and one forward over the whole
    # answer agree to 1e-5 (measured: about 1e-6).
    assert (full - logprobs).abs().max() < 1e-5
    if values is not None:
        assert (full_values - values).abs().max() < 1e-5


# ---- 2 processes with 4 answers each train as 1 process with 8 ----


def run_job(spec: JobSpec, root: Path, num_processes: int) -> list[dict]:
    spec_path = root / f"spec-{num_processes}.json"
    spec.write(spec_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        launch_command(spec_path, num_processes=num_processes, python=sys.executable),
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    events = [json.loads(line) for line in Path(spec.events).read_text().splitlines()]
    assert "result" in events[-1], events[-1]
    return [e["metrics"] for e in events if "metrics" in e]


@pytest.mark.parametrize("value_model", ["shared", "separate"])
def test_two_processes_train_as_one(
    tiny_model: str, trained_reward, prompts_file_8: Path, tmp_path: Path, value_model: str
) -> None:
    reward_dir = trained_reward[0]
    runs = {}
    for processes in (1, 2):
        rows = 8 // processes
        config = dict(
            base_model=tiny_model,
            reward_model=str(reward_dir),
            total_episodes=16,  # 2 updates of 8 answers
            rollout_batch_size=rows,
            num_mini_batches=1,
            gradient_accumulation_steps=rows,  # 1-row micro-batches: the same loss grouping
            num_ppo_epochs=2,
            response_length=6,
            learning_rate=1e-3,
            temperature=1.0,
            seed=0,
            value_model=value_model,
        )
        out = tmp_path / f"out-{processes}"
        spec = JobSpec(
            "ppo", config, str(prompts_file_8), str(out), str(tmp_path / f"ev-{processes}")
        )
        metrics = run_job(spec, tmp_path, processes)
        runs[processes] = (metrics, load_file(out / "adapter_model.safetensors"))

    (one, weights_one), (two, weights_two) = runs[1], runs[2]
    print(json.dumps(one), json.dumps(two))
    assert [m["episode"] for m in one] == [m["episode"] for m in two] == [8, 16]
    for a, b in zip(one, two, strict=True):
        assert set(a) == set(b)
        for name in set(a) - TIMING:
            # the same answers and scores; losses, KL and values up to float32 rounding (other
            # batch shapes in sampling and scoring, a gradient all-reduce): 1e-4 relative
            assert b[name] == pytest.approx(a[name], rel=1e-4, abs=1e-6), name
    assert weights_one.keys() == weights_two.keys()
    worst = max((weights_one[k] - weights_two[k]).abs().max().item() for k in weights_one)
    moved = max((weights_one[k]).abs().max().item() for k in weights_one if "lora_B" in k)
    print("max weight difference", worst, "largest lora_B", moved)
    assert moved > 1e-3  # it trained (lora_B starts at 0)
    assert worst < 1e-5


@pytest.fixture
def prompts_file_8(tmp_path: Path) -> Path:
    from tests.training.ml.conftest import write_prompts

    return write_prompts(
        tmp_path / "prompts.jsonl",
        [
            f"Question {i}: tell me about the {w}."
            for i, w in enumerate(["cat", "dog", "sea", "sky"])
        ]
        + ["Why?", [{"role": "user", "content": "Hello there, how are you today?"}], "A", "Bye"],
    )
