"""Data-parallel training: a job of 2 processes trains as 1 process does.

Each stage runs twice on the same data and global batch: here, in this process, and as a job
of 2 CPU processes (`training.ml.job` under accelerate's launcher, DDP over gloo, as on 2
GPUs). The per-step losses, the held-out report and the saved adapter (the reward model's
score head included) must agree to TOLERANCE (weights: WEIGHT_TOLERANCE); only float
summation order differs (measured differences: 1e-8 to 5e-7, weights up to 2e-5). A 2-process launch costs 10-20 s here, so the tests are few.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from tests.training.ml.conftest import write_demonstrations, write_preferences
from training.ml.job import JobSpec, launch_command, stage_config, stage_run

TOLERANCE = 1e-5  # max abs difference of any loss or held-out figure
# Adapter weights: Adam divides each step by the root of its squared gradients, so where a
# gradient is near zero a 1e-7 difference in summation order moves a weight by up to ~2e-5
# after 10 steps at 5e-3 (seen in the packed reward loop). A data-parallel bug (unsynced
# gradients, a process's half of the batch) moves weights by the size of the update, ~1e-2.
WEIGHT_TOLERANCE = 5e-5
ROOT = Path(__file__).resolve().parents[3]

# 20 pairs or demonstrations, one prompt each: 4 held out, 16 to train (batches of 4 all full)
SHARED = {"lora_r": 4, "lora_alpha": 8, "learning_rate": 5e-3, "eval_fraction": 0.2, "seed": 0}
RUNS = {
    # packed reward pairs under a token budget of 2 x max_length: batches of 1 to 3 pairs, so
    # a process's share of a batch is sometimes empty
    "reward-packed": ("reward", {"max_length": 48, "max_batch_tokens": 96, "batch_size": 4}),
    "reward-trl": ("reward", {"max_length": 48, "max_batch_tokens": None, "batch_size": 4}),
    "dpo": ("dpo", {"max_length": 64, "batch_size": 4}),
    # dropout off: its draws differ between 1 and 2 processes; SFT's loss is per answer token
    # over the accumulated batches of all processes, so accumulation is exercised here
    "sft": (
        "sft",
        {
            "max_length": 64,
            "batch_size": 2,
            "gradient_accumulation_steps": 2,
            "lora_dropout": 0.0,
        },
    ),
}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("distributed")
    return {
        "pairs": write_preferences(root / "pairs.jsonl", pairs=20, seed=0),
        "demonstrations": write_demonstrations(root / "demonstrations.jsonl", 20),
    }


def launch(spec: JobSpec, path: Path, processes: int) -> tuple[int, list[dict[str, Any]], str]:
    """Run the job as a worker does; (exit status, events, stderr)."""
    spec.write(path)
    completed = subprocess.run(
        launch_command(path, num_processes=processes),
        cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    events = [json.loads(line) for line in Path(spec.events).read_text().splitlines()]
    return completed.returncode, events, completed.stderr


def adapter(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(folder / "adapter_model.safetensors")


def max_difference(a: dict[str, Any], b: dict[str, Any]) -> float:
    """Largest difference between the numbers two dicts share (equal keys asserted)."""
    assert a.keys() == b.keys()
    numbers = [k for k, v in a.items() if isinstance(v, float) and not isinstance(v, bool)]
    return max((abs(a[k] - b[k]) for k in numbers), default=0.0)


@pytest.mark.parametrize("run", list(RUNS))
def test_two_processes_train_as_one(
    run: str, tiny_model: str, data: dict[str, Path], tmp_path: Path
) -> None:
    stage, values = RUNS[run]
    config = {"base_model": tiny_model, **SHARED, "logging_steps": 1, **values}
    source = data["demonstrations" if stage == "sft" else "pairs"]

    # one process, here
    one_metrics: list[dict[str, Any]] = []
    one = stage_run(
        stage,
        stage_config(stage, config),
        str(source),
        str(tmp_path / "one"),
        on_metrics=one_metrics.append,
    )

    # two processes, launched
    spec = JobSpec(stage, config, str(source), str(tmp_path / "two"), str(tmp_path / "two.jsonl"))
    status, events, stderr = launch(spec, tmp_path / "spec.json", processes=2)

    assert status == 0, stderr[-3000:]
    results = [e["result"] for e in events if "result" in e]
    two_metrics = [e["metrics"] for e in events if "metrics" in e]
    assert len(results) == 1  # rank 0 alone writes events
    two = results[0]
    # the same steps, each reported once, with the same loss
    assert two["steps"] == one["steps"]
    one_losses = [(m["step"], m["loss"]) for m in one_metrics if "loss" in m]
    two_losses = [(m["step"], m["loss"]) for m in two_metrics if "loss" in m]
    assert (
        [s for s, _ in two_losses] == [s for s, _ in one_losses] == list(range(1, one["steps"] + 1))
    )
    loss_difference = max(abs(a - b) for (_, a), (_, b) in zip(one_losses, two_losses, strict=True))
    assert loss_difference < TOLERANCE
    # the same held-out report (every held-out item, not one process's share) and result
    for key in ("seconds", "out_dir"):
        one.pop(key), two.pop(key)
    assert max_difference(one, two) < TOLERANCE
    assert {k: v for k, v in one.items() if not isinstance(v, float)} == {
        k: v for k, v in two.items() if not isinstance(v, float)
    }
    # the same adapter (and score head): one folder, written once
    one_weights, two_weights = adapter(tmp_path / "one"), adapter(tmp_path / "two")
    assert one_weights.keys() == two_weights.keys()
    if stage == "reward":
        assert any("score" in name for name in two_weights)
    weight_difference = max(
        (one_weights[k] - two_weights[k]).abs().max().item() for k in one_weights
    )
    # the figures of docs/benchmarks.md, "Data-parallel training" (pytest -s)
    print(
        f"{run}: {one['steps']} steps, max difference loss {loss_difference:.1e}, "
        f"weights {weight_difference:.1e}"
    )
    assert weight_difference < WEIGHT_TOLERANCE
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one", "spec.json", "two", "two.jsonl"]


def test_bad_input_ends_a_job_of_two_processes_with_status_2(
    tiny_model: str, data: dict[str, Path], tmp_path: Path
) -> None:
    """A global batch that 2 processes cannot share is bad input, as a bad data file is."""
    config = {"base_model": tiny_model, "batch_size": 3, "max_batch_tokens": None}
    spec = JobSpec("reward", config, str(data["pairs"]), str(tmp_path / "rm"), str(tmp_path / "ev"))

    status, events, stderr = launch(spec, tmp_path / "spec.json", processes=2)

    assert status == 2, stderr[-3000:]
    assert events and all(set(e) == {"error"} for e in events)  # one line per process at most
    assert "batch_size is the global batch" in events[0]["error"]
    assert "multiple of 2, got 3" in events[0]["error"]
    assert not (tmp_path / "rm").exists()


@pytest.mark.parametrize(
    ("config", "data_file", "message"),
    [
        ({"batch_size": "4"}, "pairs", "RewardTrainConfig.batch_size must be int, got '4'"),
        ({"max_lenght": 48}, "pairs", "unknown RewardTrainConfig field(s): max_lenght"),
        ({}, "missing.jsonl", "missing.jsonl"),
    ],
)
def test_a_bad_spec_or_data_file_ends_a_job_with_status_2(
    config: dict[str, Any],
    data_file: str,
    message: str,
    tiny_model: str,
    data: dict[str, Path],
    tmp_path: Path,
) -> None:
    source = data.get(data_file, tmp_path / data_file)
    spec = JobSpec(
        "reward",
        {"base_model": tiny_model, **config},
        str(source),
        str(tmp_path / "rm"),
        str(tmp_path / "ev"),
    )

    status, events, stderr = launch(spec, tmp_path / "spec.json", processes=1)

    assert status == 2
    assert len(events) == 1 and message in events[0]["error"]
    assert message in stderr
