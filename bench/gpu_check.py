"""GPU check: does training/ml run on this GPU, how fast, in how much memory. One GPU, minutes.

    bench/gpu_check.sh                      # this, then the 2-process DDP test
    .venv/bin/python bench/gpu_check.py --base var/models/smollm2-135m-instruct [--parts a,b]

Parts, in order, each in this process on the first GPU, each printed as one JSON line:

- generate: `sample_with_model` on the demo prompts, 16 at a time, 64 new tokens, bf16;
- reward: `train_reward` in bf16 (packed pairs, the default) on made-up pairs of the demo
  prompts (a plain answer preferred to a padded, shouting one), its reward model kept for ppo;
- ppo: `train_ppo` on the demo prompts with that reward model;
- qlora-reward, qlora-sft, qlora-dpo, qlora-ppo: the same stages, a few steps, with
  `load_in_4bit` (needs bitsandbytes: pip install -r requirements-gpu.txt).

Each reports seconds, tokens per second, the peak GPU memory (`torch.cuda.max_memory_allocated`,
reset before each part) and MFU, the model FLOPs done per second over the card's dense bf16
peak. Model FLOPs count the weights of the linear layers (N, the LM head included where there
is one), not attention scores: 2N per generated token (prefill not counted), 4N per trained
token with LoRA (forward 2N, gradients of the activations 2N, none for the frozen weights),
and for PPO an estimate per episode of (2 + 6 + 8 x ppo epochs) N per token (generation,
reference, value and reward passes, then policy and value trained each epoch). The peak comes
from PEAK_BF16_TFLOPS by the card's name, or HONE_GPU_PEAK_TFLOPS. A part that fails prints
its error and the script goes on; the exit status is 1 when any failed.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# Dense bf16 tensor-core peaks in TFLOPs (datasheets, without sparsity), matched on the words
# of torch.cuda.get_device_name ("NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-80GB"), the most
# words first. Another card: HONE_GPU_PEAK_TFLOPS.
PEAK_BF16_TFLOPS = {
    "H100 PCIe": 756.0,
    "H100": 989.0,  # SXM
    "H200": 989.0,
    "GH200": 989.0,
    "A100": 312.0,
    "L40S": 362.0,
    "L4": 121.0,
    "A10": 125.0,
}
PEAK_ENV = "HONE_GPU_PEAK_TFLOPS"
PARTS = ["generate", "reward", "ppo", "qlora-reward", "qlora-sft", "qlora-dpo", "qlora-ppo"]
PAIRS = 256  # made-up preference pairs for the reward parts
PPO_EPOCHS = 4


def peak_tflops(device_name: str) -> float | None:
    """The card's dense bf16 peak: HONE_GPU_PEAK_TFLOPS, else the table by name, else None."""
    if os.environ.get(PEAK_ENV):
        return float(os.environ[PEAK_ENV])
    words = set(device_name.replace("-", " ").split())
    for name in sorted(PEAK_BF16_TFLOPS, key=lambda n: len(n.split()), reverse=True):
        if set(name.split()) <= words:
            return PEAK_BF16_TFLOPS[name]
    return None


def linear_weights(model: Any) -> int:
    """N: the weights of the model's linear layers (what a token's matmuls multiply by)."""
    import torch

    return sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))


def base_linear_weights(base: str, *, classifier: bool) -> int:
    """N of the base model as a causal LM or as a 1-label classifier, built without weights."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification

    config = AutoConfig.from_pretrained(base, num_labels=1)
    auto = AutoModelForSequenceClassification if classifier else AutoModelForCausalLM
    with torch.device("meta"):
        return linear_weights(auto.from_config(config))


def mfu(flops: float, seconds: float, peak: float | None) -> float | None:
    return None if peak is None or seconds <= 0 else round(flops / seconds / (peak * 1e12), 5)


def demo_prompts() -> list[Any]:
    path = ROOT / "training" / "fixtures" / "demo_prompts.jsonl"
    return [json.loads(line)["prompt"] for line in path.read_text().splitlines() if line.strip()]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


WORDS = [
    "water",
    "light",
    "sound",
    "tree",
    "river",
    "stone",
    "bread",
    "clock",
    "paper",
    "glass",
    "road",
    "cloud",
    "garden",
    "window",
    "music",
    "answer",
    "reason",
    "season",
    "number",
    "letter",
    "market",
    "island",
    "family",
    "morning",
    "evening",
]


def write_pairs(path: Path, count: int, seed: int = 0) -> Path:
    """Pairs on the demo prompts: a plain answer of 20-120 words preferred to one of 60-240
    words that shouts (the taste is learnable; the lengths give varied batches)."""
    rng = random.Random(seed)
    prompts = demo_prompts()
    rows = []
    for i in range(count):
        plain = " ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 120))) + "."
        loud = " ".join(rng.choice(WORDS).upper() for _ in range(rng.randint(60, 240))) + "!!!"
        rows.append({"prompt": prompts[i % len(prompts)], "chosen": plain, "rejected": loud})
    return write_jsonl(path, rows)


def write_prompts(path: Path) -> Path:
    return write_jsonl(path, [{"prompt": p} for p in demo_prompts()])


def write_demonstrations(path: Path) -> Path:
    rng = random.Random(1)
    rows = [
        {"prompt": p, "completion": " ".join(rng.choice(WORDS) for _ in range(40)) + "."}
        for p in demo_prompts()
    ]
    return write_jsonl(path, rows)


class Context:
    """What the parts share: the base model, the work folder, the GPU's peak."""

    def __init__(self, base: str, work: Path, peak: float | None) -> None:
        self.base = base
        self.work = work
        self.peak = peak
        self.pairs = write_pairs(work / "pairs.jsonl", PAIRS)
        self.prompts = write_prompts(work / "prompts.jsonl")
        self.demonstrations = write_demonstrations(work / "demonstrations.jsonl")
        self.reward_model: Path | None = None


# ---- parts: each returns its figures ----


def part_generate(ctx: Context) -> dict[str, Any]:
    import torch

    from training.ml.generate import sample_with_model
    from training.ml.loading import load_causal_lm

    model, tokenizer = load_causal_lm(ctx.base)  # bf16 on a GPU that has it
    prompts = demo_prompts()[:16]
    sample_with_model(model, tokenizer, prompts[:2], max_new_tokens=8, batch_size=2)  # warm-up
    torch.cuda.synchronize()
    start = time.perf_counter()
    samples = sample_with_model(
        model, tokenizer, prompts, max_new_tokens=64, temperature=0.8, batch_size=16, seed=0
    )
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    tokens = sum(s.token_count + (s.finish_reason == "stop") for s in samples)
    n = linear_weights(model)
    return {
        "dtype": str(next(model.parameters()).dtype),
        "batch": len(prompts),
        "tokens": tokens,
        "seconds": round(seconds, 2),
        "tokens_per_second": round(tokens / seconds, 1),
        "linear_weights": n,
        "mfu": mfu(2 * n * tokens, seconds, ctx.peak),
    }


def _reward(ctx: Context, out: Path, **overrides: Any) -> dict[str, Any]:
    from training.ml.reward import RewardTrainConfig, train_reward

    config = RewardTrainConfig(
        base_model=ctx.base,
        batch_size=16,
        max_batch_tokens=16384,
        max_length=512,
        epochs=1.0,
        logging_steps=1,
        bf16=True,
        **overrides,
    )
    metrics: list[dict[str, Any]] = []
    result = train_reward(config, ctx.pairs, out, on_metrics=metrics.append)
    runtime = next(m["train_runtime"] for m in metrics if "train_runtime" in m)
    tokens = max(m.get("num_tokens", 0) for m in metrics)
    n = base_linear_weights(ctx.base, classifier=True)
    return {
        "bf16": config.bf16,
        "steps": result["steps"],
        "train_seconds": runtime,
        "tokens": tokens,
        "tokens_per_second": round(tokens / runtime, 1),
        "heldout_accuracy": result["heldout_accuracy"],
        "train_loss": result["train_loss"],
        "linear_weights": n,
        "mfu": mfu(4 * n * tokens, runtime, ctx.peak),
    }


def part_reward(ctx: Context) -> dict[str, Any]:
    out = ctx.work / "rm"
    figures = _reward(ctx, out)
    ctx.reward_model = out
    return figures


def _ppo(ctx: Context, out: Path, **overrides: Any) -> dict[str, Any]:
    from training.ml.loading import encode_prompt, load_tokenizer
    from training.ml.ppo import PPOConfig, train_ppo

    if ctx.reward_model is None:
        raise RuntimeError("ppo needs the reward part's model: run the reward part first")
    values = dict(total_episodes=128, rollout_batch_size=16, response_length=64)
    config = PPOConfig(
        base_model=ctx.base,
        reward_model=str(ctx.reward_model),
        num_ppo_epochs=PPO_EPOCHS,
        **{**values, **overrides},
    )
    metrics: list[dict[str, Any]] = []
    summary = train_ppo(config, ctx.prompts, out, on_metrics=metrics.append)
    generated = sum(
        m.get("val/response_length", config.response_length) * config.rollout_batch_size
        for m in metrics
    )
    tokenizer = load_tokenizer(ctx.base)
    prompt_tokens = sum(len(encode_prompt(tokenizer, p)) for p in demo_prompts()) / len(
        demo_prompts()
    )
    episodes = summary["episodes"]
    per_episode = prompt_tokens + generated / max(episodes, 1)
    n = base_linear_weights(ctx.base, classifier=False)
    flops = (2 + 6 + 8 * PPO_EPOCHS) * n * per_episode * episodes
    return {
        "episodes": episodes,
        "seconds": summary["seconds"],
        "episodes_per_second": round(episodes / summary["seconds"], 2),
        "generated_tokens_per_second": round(generated / summary["seconds"], 1),
        "score_before": summary.get("score_before"),
        "score_after": summary.get("score_after"),
        "linear_weights": n,
        "mfu_estimate": mfu(flops, summary["seconds"], ctx.peak),
    }


def part_ppo(ctx: Context) -> dict[str, Any]:
    return _ppo(ctx, ctx.work / "ppo")


def part_qlora_reward(ctx: Context) -> dict[str, Any]:
    return _reward(ctx, ctx.work / "rm-4bit", load_in_4bit=True)


def part_qlora_sft(ctx: Context) -> dict[str, Any]:
    from training.ml.sft import SFTTrainConfig, train_sft

    config = SFTTrainConfig(base_model=ctx.base, load_in_4bit=True, batch_size=8, logging_steps=1)
    result = train_sft(config, ctx.demonstrations, ctx.work / "sft-4bit")
    return {k: result[k] for k in ("steps", "seconds", "train_loss", "heldout_loss")}


def part_qlora_dpo(ctx: Context) -> dict[str, Any]:
    from training.ml.dpo import DPOTrainConfig, train_dpo

    config = DPOTrainConfig(
        base_model=ctx.base, load_in_4bit=True, batch_size=8, max_length=512, logging_steps=1
    )
    pairs = write_pairs(ctx.work / "dpo-pairs.jsonl", 64, seed=2)
    result = train_dpo(config, pairs, ctx.work / "dpo-4bit")
    return {k: result[k] for k in ("steps", "seconds", "train_loss", "heldout_accuracy")}


def part_qlora_ppo(ctx: Context) -> dict[str, Any]:
    return _ppo(ctx, ctx.work / "ppo-4bit", load_in_4bit=True, total_episodes=32)


PART_FUNCTIONS: dict[str, Callable[[Context], dict[str, Any]]] = {
    "generate": part_generate,
    "reward": part_reward,
    "ppo": part_ppo,
    "qlora-reward": part_qlora_reward,
    "qlora-sft": part_qlora_sft,
    "qlora-dpo": part_qlora_dpo,
    "qlora-ppo": part_qlora_ppo,
}


def run_part(name: str, ctx: Context) -> dict[str, Any]:
    """One part: its figures with the peak GPU memory, or its error."""
    import torch

    gc.collect()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    try:
        figures = PART_FUNCTIONS[name](ctx)
        status = "ok"
    except Exception as error:  # noqa: BLE001 - a failing part is a finding; the others go on
        traceback.print_exc()
        figures, status = {"error": f"{type(error).__name__}: {error}"}, "failed"
    return {
        "part": name,
        "status": status,
        "wall_seconds": round(time.perf_counter() - start, 1),
        "peak_gpu_memory_mb": round(torch.cuda.max_memory_allocated() / 2**20),
        **figures,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default=str(ROOT / "var" / "models" / "smollm2-135m-instruct"))
    parser.add_argument("--parts", default=",".join(PARTS), help=f"among {','.join(PARTS)}")
    args = parser.parse_args(argv)
    parts = [p for p in args.parts.split(",") if p]
    unknown = [p for p in parts if p not in PART_FUNCTIONS]
    if unknown:
        parser.error(f"unknown part(s) {', '.join(unknown)}; known: {', '.join(PARTS)}")

    import torch

    if not torch.cuda.is_available():
        print(
            "gpu_check: no CUDA GPU visible to torch (torch.cuda.is_available() is False; "
            f"torch {torch.__version__}, CUDA build: {torch.version.cuda}). This check needs "
            "one GPU and the CUDA build of torch.",
            file=sys.stderr,
        )
        return 2
    if not (Path(args.base) / "config.json").is_file():
        print(f"gpu_check: no base model at {args.base} (make base-model)", file=sys.stderr)
        return 2
    name = torch.cuda.get_device_name(0)
    peak = peak_tflops(name)
    print(
        json.dumps(
            {
                "gpu": name,
                "memory_gb": round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1),
                "peak_bf16_tflops": peak,
                "peak_from": PEAK_ENV if os.environ.get(PEAK_ENV) else "table",
                "bf16": torch.cuda.is_bf16_supported(),
                "torch": torch.__version__,
                "cuda": torch.version.cuda,
            }
        ),
        flush=True,
    )
    if peak is None:
        print(f"gpu_check: {name} is not in the table: set {PEAK_ENV} for MFU", file=sys.stderr)

    with tempfile.TemporaryDirectory(prefix="hone-gpu-check-") as work:
        ctx = Context(args.base, Path(work), peak)
        results = []
        for part in parts:
            results.append(run_part(part, ctx))
            print(json.dumps(results[-1]), flush=True)
    failed = [r["part"] for r in results if r["status"] != "ok"]
    print(f"gpu_check: {len(results) - len(failed)} parts ok, failed: {failed or 'none'}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
