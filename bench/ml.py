"""Benchmarks of training/ml on a real model (SmolLM2-135M-Instruct): `make bench-ml`.

    .venv/bin/python bench/ml.py --base var/models/smollm2-135m-instruct            # everything
    .venv/bin/python bench/ml.py --base ... --parts generate,reward-long-hone        # some parts
    .venv/bin/python bench/ml.py --report                                            # tables only
    .venv/bin/python bench/ml.py --parts ppo-hone,ppo-trl --together --threads 1     # side by side
    .venv/bin/python bench/ml.py --parts demo-reward-hone,demo-reward-trl --seed 1

Each part runs in a child process of its own, so that its peak memory (RSS high-water mark,
`ru_maxrss`) is its own, with `--threads` torch threads (2 by default); it writes
`var/bench/results/<part>[-seed<n>].json` with the load average before and after. `--together`
starts the parts at the same time instead of one after the other: on a shared machine both then
see the same load (with 2 cores, give each 1 thread). Parts, in order:

- generate: tokens per second of `training.ml.generate.sample_with_model` at batch 1, 4, 8, 16.
- long-data: a synthetic set of long dialogues (up to 512 tokens per pair side), made locally.
- reward-long-trl: reward training with TRL's RewardTrainer defaults (8 pairs per step, random
  order, padded batches, activation checkpointing off); a few steps only (it is slow and big).
- reward-long-hone-b<budget>[-ckpt]: Hone's reward training (packed pairs, length-sorted batches
  under a token budget) on the same set, a whole epoch; -ckpt with activation checkpointing.
- long-reward-trl / long-reward-hone: both batchings trained on the long set with a held-out
  split (whole dialogues, 25%), LONG_EPOCHS epochs: held-out accuracy, time and memory.
- demo-data: the demo prompts answered by the model, pairs judged by feedback.preferences
  ("concise": shorter, without exclamation marks).
- demo-reward-trl / demo-reward-hone: held-out accuracy of both batchings on the demo pairs
  (`--seed` sets the split, the head and the order, the same for both); the Hone one of seed 0
  is kept as the reward model for PPO (and merged for TRL's PPO).
- ppo-hone: training.ml.ppo on the demo prompts with that reward model, `--episodes` answers;
  ppo-hone-separate: the same with `value_model="separate"` (a value adapter of its own).
- ppo-trl: the same task with TRL 1.12's `trl.experimental.ppo.PPOTrainer`, run by
  bench/trl_ppo.py in the benchmark-only environment var/bench-trl112 (see docs/benchmarks.md).
- ppo-reference-base / ppo-reference-sft: PPO's models built from an SFT-sized adapter (LoRA
  r=16 on all linear layers), the reference being the base model (adapter off) or that adapter
  loaded frozen beside the policy's (`reference_adapter`): peak memory, the reference
  adapter's weights, and the time of a reference pass over 8 sequences of 96 tokens.

A watchdog in each child stops it (exit 3) when the machine's available memory falls under
1 GiB, so that a big baseline never pushes the other processes of a shared machine out.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import resource
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

OUT = ROOT / "var" / "bench"
RESULTS = OUT / "results"
TRL_PYTHON = ROOT / "var" / "bench-trl112" / "bin" / "python"
THREADS = 2  # torch threads per part; --threads
SEED = 0  # --seed
PARTS = [
    "generate",
    "long-data",
    "reward-long-hone-b2048",  # the default budget
    "reward-long-trl",
    "long-reward-hone",
    "long-reward-trl",
    "demo-data",
    "demo-reward-hone",
    "ppo-hone",
    "ppo-hone-separate",
    "ppo-trl",
    "demo-reward-trl",
    "ppo-reference-base",
    "ppo-reference-sft",
]
# Also available: reward-long-hone-b<budget>[-ckpt], e.g. reward-long-hone-b8192-ckpt.

# ---- the shared settings of the runs compared ----
LONG_PAIRS = 64  # synthetic long dialogues (the first 24 are the set of the first figures)
LONG_EPOCHS = 2.0  # long-reward-*: passes over the 48 training dialogues
LONG_MAX_LENGTH = 512
LONG_TRL_STEPS = 1  # steps of the TRL-defaults baseline (8 pairs each): it is the slow one
REWARD_LR = 1e-4
DEMO_SAMPLES = 3  # answers per demo prompt; every judged pair of them is a preference
PPO = {
    "total_episodes": 128,  # --episodes; 16 updates of 8 answers
    "rollout_batch_size": 8,
    "num_mini_batches": 1,
    "num_ppo_epochs": 4,
    "response_length": 32,
    "learning_rate": 1e-4,
    "temperature": 0.7,
    "kl_coef": 0.05,
    "missing_eos_penalty": 1.0,
    "lora_r": 16,
    "lora_alpha": 32,
    "seed": 0,
}


# ---------------------------------------------------------------------------------------------
# child-side helpers
# ---------------------------------------------------------------------------------------------


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def mem_available_mb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    return float("inf")


def start_watchdog(floor_mb: float = 1024) -> None:
    def watch() -> None:
        while True:
            if mem_available_mb() < floor_mb:
                print(f"watchdog: under {floor_mb} MB available, stopping", file=sys.stderr)
                os._exit(3)
            time.sleep(0.5)

    threading.Thread(target=watch, daemon=True).start()


def setup_torch() -> None:
    import torch

    torch.set_num_threads(THREADS)


def load_demo_prompts() -> list[Any]:
    path = ROOT / "training" / "fixtures" / "demo_prompts.jsonl"
    return [json.loads(line)["prompt"] for line in path.read_text().splitlines() if line.strip()]


# ---------------------------------------------------------------------------------------------
# parts
# ---------------------------------------------------------------------------------------------


def part_generate(base: str) -> dict[str, Any]:
    from training.ml.generate import sample_with_model
    from training.ml.loading import load_causal_lm

    model, tokenizer = load_causal_lm(base)
    prompts = load_demo_prompts()
    new_tokens = 48
    sample_with_model(model, tokenizer, prompts[:2], max_new_tokens=8, batch_size=2)  # warm-up
    rows = []
    for batch in (1, 4, 8, 16):
        start = time.perf_counter()
        samples = sample_with_model(
            model,
            tokenizer,
            prompts[:batch],
            max_new_tokens=new_tokens,
            temperature=0.8,
            batch_size=batch,
            seed=0,
        )
        seconds = time.perf_counter() - start
        # tokens the caller gets: the answer's tokens plus the stop token when it stopped
        tokens = sum(s.token_count + (s.finish_reason == "stop") for s in samples)
        rows.append(
            {
                "batch": batch,
                "tokens": tokens,
                "seconds": round(seconds, 2),
                "tokens_per_second": round(tokens / seconds, 2),
                "max_new_tokens": new_tokens,
            }
        )
        print(rows[-1], file=sys.stderr)
    return {"rows": rows}


WORD_TEXT = (
    "the a of to and in is it you that was for on are with as be this have from or one had by "
    "but not what all were when we there can an your which their said if do will each about how "
    "up out them then she many some so these would other into has more her two like him see time "
    "could no make than first been its who now people my made over did down only way find use may "
    "water long little very after words called just where most know get through back much before "
    "go good new write our used me man too any day same right look think also around another came "
    "come work three word must because does part even place well such here take why things help "
    "put years different away again off went old number great tell men say small every found still "
    "between name should home big give air line set own under read last never us left end along "
    "while might next sound below saw something thought both few those always looked show large "
    "often together asked house don't world going want school important until form food keep "
    "children feet land side without boy once animals life enough took sometimes four head above "
    "kind began almost live page got earth need far hand high year mother light parts country "
    "father let night following picture being study second eyes soon times story boys since white "
    "days ever paper hard near sentence better best across during today others however sure means "
    "knew it's try told young miles sun ways thing whole hear example heard several change answer "
    "room sea against top turned learn point city play toward five using himself usually"
)
WORDS = WORD_TEXT.split()


def _sentence(rng: random.Random, words: int, end: str = ".") -> str:
    text = " ".join(rng.choice(WORDS) for _ in range(words))
    return text[0].upper() + text[1:] + end


def _paragraph(rng: random.Random, tokens: int, end: str = ".") -> str:
    # SmolLM2's tokenizer: about 1.25 tokens per word of this vocabulary
    words = max(3, int(tokens / 1.25))
    parts = []
    while words > 0:
        n = min(words, rng.randint(6, 18))
        parts.append(_sentence(rng, n, end))
        words -= n
    return " ".join(parts)


def part_long_data(base: str) -> dict[str, Any]:
    """Multi-turn dialogues whose sides run up to 512 tokens, lengths skewed like real chats.

    The preference is learnable and not about length: the chosen answer ends its sentences with
    a period, the rejected one with exclamation marks; both have lengths drawn independently.
    """
    from training.ml.loading import load_tokenizer
    from training.ml.reward import encode_for_reward

    rng = random.Random(7)
    tokenizer = load_tokenizer(base)
    path = OUT / "long_pairs.jsonl"
    lengths = []
    with path.open("w", encoding="utf-8") as f:
        for _ in range(LONG_PAIRS):
            # total per side: log-normal around 230 tokens, cut to [60, 500]
            total = min(500, max(60, int(rng.lognormvariate(5.45, 0.5))))
            answer_tokens = [int(total * rng.uniform(0.25, 0.6)) for _ in range(2)]
            prompt_tokens = total - max(answer_tokens)
            turns = rng.randint(1, 3)
            messages = []
            per_turn = max(12, prompt_tokens // (2 * turns - 1) - 8)
            for t in range(turns):
                if t:
                    messages.append(
                        {"role": "assistant", "content": _paragraph(rng, per_turn)},
                    )
                messages.append({"role": "user", "content": _paragraph(rng, per_turn, "?")})
            chosen = _paragraph(rng, answer_tokens[0])
            rejected = _paragraph(rng, answer_tokens[1], "!")
            row = {"prompt": messages, "chosen": chosen, "rejected": rejected}
            f.write(json.dumps(row) + "\n")
            for answer in (chosen, rejected):
                lengths.append(
                    len(encode_for_reward(tokenizer, messages, answer, LONG_MAX_LENGTH).input_ids)
                )
    lengths.sort()
    return {
        "path": str(path),
        "pairs": LONG_PAIRS,
        "sequence_tokens": {
            "min": lengths[0],
            "median": statistics.median(lengths),
            "mean": round(statistics.mean(lengths), 1),
            "max": lengths[-1],
        },
    }


def _train_reward_timed(config: Any, data: Path, out: Path) -> dict[str, Any]:
    from training.ml.reward import train_reward

    logs: list[dict[str, Any]] = []
    stamps: list[float] = []

    def on_metrics(m: dict[str, Any]) -> None:
        logs.append(m)
        stamps.append(time.perf_counter())
        print({k: m.get(k) for k in ("step", "loss", "accuracy", "train_runtime")}, file=sys.stderr)

    if out.exists():
        import shutil

        shutil.rmtree(out)
    result = train_reward(config, data, out, on_metrics=on_metrics)
    final = next((m for m in logs if "train_runtime" in m), {})
    steps = [m for m in logs if "loss" in m and "train_runtime" not in m]
    step_seconds = [round(b - a, 2) for a, b in zip(stamps, stamps[1:], strict=False)][
        : len(steps) - 1
    ]
    return {
        "result": result,
        "train_runtime": final.get("train_runtime"),
        "steps": steps,
        "step_seconds_after_first": step_seconds,
    }


def part_reward_long(
    base: str, *, hone: bool, checkpointing: bool, budget: int = 2048, heldout: bool = False
) -> dict[str, Any]:
    """Speed (no held-out split; TRL's defaults for LONG_TRL_STEPS steps only), or with
    `heldout` both batchings trained for LONG_EPOCHS on 75% of the dialogues and scored on the
    rest."""
    from training.ml.data import load_preferences, split_by_prompt
    from training.ml.reward import RewardTrainConfig

    data = OUT / "long_pairs.jsonl"
    eval_fraction = 0.25 if heldout else 0.0
    train, _ = split_by_prompt(load_preferences(data), eval_fraction=eval_fraction, seed=SEED)
    pairs = len(train)
    speed_epochs = 1.0 if hone else LONG_TRL_STEPS * 8 / pairs
    epochs = LONG_EPOCHS if heldout else speed_epochs
    config = RewardTrainConfig(
        base_model=base,
        learning_rate=REWARD_LR,
        batch_size=8,
        max_length=LONG_MAX_LENGTH,
        max_batch_tokens=budget if hone else None,
        epochs=epochs,
        eval_fraction=eval_fraction,
        logging_steps=1,
        gradient_checkpointing=checkpointing,
        seed=SEED,
    )
    out = OUT / f"rm-long-{'hone' if hone else 'trl'}{'-heldout' if heldout else ''}"
    timed = _train_reward_timed(config, data, out)
    pairs_trained = round(pairs * epochs) if hone else timed["result"]["steps"] * 8
    runtime = timed["train_runtime"]
    return {
        **timed,
        "batching": f"token budget {budget}, sorted by length" if hone else "8 pairs, padded",
        "activation_checkpointing": checkpointing,
        "epochs": epochs,
        "pairs_trained": pairs_trained,
        "pairs_per_second": round(pairs_trained / runtime, 4),
        "seconds_per_pair": round(runtime / pairs_trained, 2),
    }


def part_demo_data(base: str) -> dict[str, Any]:
    from feedback.preferences import judge
    from training.ml.generate import sample_with_model
    from training.ml.loading import load_causal_lm

    model, tokenizer = load_causal_lm(base)
    prompts = load_demo_prompts()
    samples = sample_with_model(
        model,
        tokenizer,
        prompts,
        num_samples=DEMO_SAMPLES,
        max_new_tokens=64,
        temperature=1.0,
        batch_size=40,  # one decode step costs about the same at any batch size here
        seed=0,
    )
    rows, ties = [], 0
    for p, prompt in enumerate(prompts):
        answers = [s.text for s in samples[p * DEMO_SAMPLES : (p + 1) * DEMO_SAMPLES]]
        for i in range(DEMO_SAMPLES):
            for j in range(i + 1, DEMO_SAMPLES):
                a, b = answers[i], answers[j]
                if a.strip() == b.strip():
                    continue
                choice, _ = judge("concise", a, b)
                if choice == "tie":
                    ties += 1
                    continue
                chosen, rejected = (a, b) if choice == "a" else (b, a)
                rows.append({"prompt": prompt, "chosen": chosen, "rejected": rejected})
    path = OUT / "demo_prefs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    prompts_path = OUT / "demo_prompts.jsonl"
    prompts_path.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in prompts))
    return {"pairs": len(rows), "ties_skipped": ties, "prompts": len(prompts), "path": str(path)}


def part_demo_reward(base: str, *, hone: bool) -> dict[str, Any]:
    from training.ml.reward import RewardTrainConfig

    config = RewardTrainConfig(
        base_model=base,
        learning_rate=REWARD_LR,
        batch_size=8,
        max_length=LONG_MAX_LENGTH,
        max_batch_tokens=2048 if hone else None,
        epochs=1.0,
        eval_fraction=0.25,
        logging_steps=1,
        seed=SEED,
    )
    out = OUT / (("rm-demo" if hone else "rm-demo-trl") + seed_suffix())
    timed = _train_reward_timed(config, OUT / "demo_prefs.jsonl", out)
    timed.pop("steps")
    if hone and SEED == 0:  # the reward model of both PPO runs
        merge_reward_model(base, out, OUT / "rm-demo-merged")
    return timed


def merge_reward_model(base: str, reward_dir: Path, out: Path) -> None:
    """A plain sequence classifier (LoRA merged, score head in) for TRL's PPOTrainer."""
    from training.ml.reward import RewardScorer

    scorer = RewardScorer.load(base, reward_dir)
    merged = scorer.model.merge_and_unload()
    merged.save_pretrained(out)
    scorer.tokenizer.save_pretrained(out)


def part_ppo_hone(base: str, **overrides: Any) -> dict[str, Any]:
    from training.ml.ppo import PPOConfig, train_ppo

    name = "ppo-hone" + "".join(f"-{v}" for v in overrides.values())
    out = OUT / f"{name}{seed_suffix()}"
    if out.exists():
        import shutil

        shutil.rmtree(out)
    history: list[dict[str, Any]] = []

    def on_metrics(m: dict[str, Any]) -> None:
        # the clock and the load at each update: the two trainers run side by side are compared
        # over the same stretch of time
        m = {
            **m,
            "time": round(time.time(), 2),
            "cpu": round(time.process_time(), 2),  # this process's user + system seconds
            "load1": round(os.getloadavg()[0], 2),
        }
        history.append(m)
        print(
            {k: m[k] for k in ("episode", "objective/scores", "objective/kl", "eps", "load1")},
            file=sys.stderr,
            flush=True,
        )

    settings = {**PPO, "seed": SEED, **overrides}
    config = PPOConfig(base_model=base, reward_model=str(OUT / "rm-demo"), **settings)
    summary = train_ppo(config, OUT / "demo_prompts.jsonl", out, on_metrics=on_metrics)
    return {"summary": summary, **ppo_figures(history)}


def ppo_figures(history: list[dict[str, Any]]) -> dict[str, Any]:
    """The same figures for both trainers, from their per-update metrics.

    Gain: mean score of the last quarter of the updates minus the first quarter, with its
    standard error from the update-to-update spread (each update's score is the mean of
    `rollout_batch_size` sampled answers, so it moves by sampling alone).
    """
    scores = [m["objective/scores"] for m in history]
    k = max(1, len(scores) // 4)
    first, last = scores[:k], scores[-k:]
    spread = (
        math.sqrt(statistics.variance(first) / k + statistics.variance(last) / k) if k > 1 else None
    )
    figures: dict[str, Any] = {
        "updates": len(history),
        "episodes": history[-1]["episode"],
        "scores": [round(s, 4) for s in scores],
        "kl": [round(m["objective/kl"], 4) for m in history],
        "score_first_quarter": round(statistics.mean(first), 4),
        "score_last_quarter": round(statistics.mean(last), 4),
        "score_gain": round(statistics.mean(last) - statistics.mean(first), 4),
        "score_gain_stderr": None if spread is None else round(spread, 4),
        "kl_last_quarter": round(statistics.mean(m["objective/kl"] for m in history[-k:]), 4),
    }
    if all("time" in m for m in history):
        figures["update_times"] = [m["time"] for m in history]
        figures["update_load1"] = [m["load1"] for m in history]
    if all("cpu" in m for m in history) and len(history) >= 2:
        # CPU seconds per episode over the second half of the updates (loading and the first
        # updates' warm-up left out): from the end of update n//2 to the end of the last
        h = len(history) // 2
        cpu = history[-1]["cpu"] - history[h - 1]["cpu"]
        episodes = history[-1]["episode"] - history[h - 1]["episode"]
        figures["update_cpu"] = [m["cpu"] for m in history]
        figures["cpu_per_episode_second_half"] = round(cpu / episodes, 3)
        figures["cpu_per_episode_updates"] = f"{h + 1}-{len(history)}"
    return figures


def part_ppo_trl(base: str) -> dict[str, Any]:
    """Runs bench/trl_ppo.py in the TRL 1.12 environment; prompts tokenized here, as ours are."""
    from training.ml.loading import encode_prompt, load_tokenizer

    tokenizer = load_tokenizer(base)
    prompts = load_demo_prompts()
    ids_path = OUT / "demo_prompt_ids.jsonl"
    ids_path.write_text(
        "".join(json.dumps({"input_ids": encode_prompt(tokenizer, p)}) + "\n" for p in prompts)
    )
    result_path = OUT / f"ppo-trl{seed_suffix()}.json"
    if not TRL_PYTHON.exists():
        raise SystemExit(
            f"{TRL_PYTHON} missing: make the TRL 1.12 environment (docs/benchmarks.md)"
        )
    command = [
        str(TRL_PYTHON),
        str(ROOT / "bench" / "trl_ppo.py"),
        "--base", base,
        "--reward", str(OUT / "rm-demo-merged"),
        "--prompt-ids", str(ids_path),
        "--out", str(OUT / f"ppo-trl{seed_suffix()}"),
        "--result", str(result_path),
        "--config", json.dumps({**PPO, "seed": SEED}),
        "--threads", str(THREADS),
    ]  # fmt: skip
    subprocess.run(command, check=True)
    child = json.loads(result_path.read_text())
    return {**child, **ppo_figures(child["history"])}


# ---------------------------------------------------------------------------------------------
# parent: one child per part, then the report
# ---------------------------------------------------------------------------------------------


def part_ppo_reference(base: str, *, sft_reference: bool) -> dict[str, Any]:
    """PPO's policy, value and reference, started from an SFT-sized adapter; the reference the
    base (adapter off) or that adapter, frozen (PPOConfig.reference_adapter)."""
    import torch

    from training.ml.loading import LoraSettings, attach_lora, load_causal_lm
    from training.ml.ppo import PPOConfig, build_policy_and_value

    adapter = OUT / "sft-sized-adapter"
    if not (adapter / "adapter_config.json").exists():  # a stand-in: the shape is what counts
        model, _ = load_causal_lm(base, device="cpu")
        attach_lora(model, LoraSettings(r=16, alpha=32, dropout=0.05)).save_pretrained(adapter)
        del model
    config = PPOConfig(
        base_model=base,
        init_adapter=str(adapter),
        reference_adapter=str(adapter) if sft_reference else None,
        bf16=False,
    )
    model, _ = build_policy_and_value(config, device="cpu", dtype=torch.float32)
    rss_built = peak_rss_mb()

    def nbytes(params: Any) -> int:
        return sum(p.numel() * p.element_size() for p in params)

    reference = [p for n, p in model.named_parameters() if ".reference." in n]
    base_weights = [p for n, p in model.policy.named_parameters() if "lora_" not in n]
    ids = torch.randint(1, 1000, (8, 96))
    mask = torch.ones_like(ids)
    times = []
    with torch.no_grad():
        for _ in range(4):
            start = time.perf_counter()
            with model.as_reference():
                model.policy_logits(ids, mask, 64)
            times.append(time.perf_counter() - start)
    return {
        "reference": "sft adapter" if sft_reference else "base, adapter off",
        "reference_adapter_params": sum(p.numel() for p in reference),
        "reference_adapter_mb": round(nbytes(reference) / 2**20, 1),
        "base_weights_mb": round(nbytes(base_weights) / 2**20, 1),
        "rss_after_build_mb": round(rss_built, 1),
        "reference_pass_seconds_median": round(statistics.median(times[1:]), 3),
    }


def run_part(name: str, base: str) -> dict[str, Any]:
    setup_torch()
    start_watchdog()
    load_before = os.getloadavg()
    start = time.perf_counter()
    if name == "generate":
        figures = part_generate(base)
    elif name == "long-data":
        figures = part_long_data(base)
    elif name == "reward-long-trl":
        figures = part_reward_long(base, hone=False, checkpointing=False)
    elif name.startswith("reward-long-hone-b"):
        budget, _, ckpt = name.removeprefix("reward-long-hone-b").partition("-")
        figures = part_reward_long(
            base, hone=True, checkpointing=ckpt == "ckpt", budget=int(budget)
        )
    elif name == "long-reward-trl":
        figures = part_reward_long(base, hone=False, checkpointing=False, heldout=True)
    elif name == "long-reward-hone":
        figures = part_reward_long(base, hone=True, checkpointing=False, heldout=True)
    elif name == "demo-data":
        figures = part_demo_data(base)
    elif name == "demo-reward-trl":
        figures = part_demo_reward(base, hone=False)
    elif name == "demo-reward-hone":
        figures = part_demo_reward(base, hone=True)
    elif name == "ppo-hone":
        figures = part_ppo_hone(base)
    elif name == "ppo-hone-separate":
        figures = part_ppo_hone(base, value_model="separate")
    elif name == "ppo-trl":
        figures = part_ppo_trl(base)
    elif name in ("ppo-reference-base", "ppo-reference-sft"):
        figures = part_ppo_reference(base, sft_reference=name.endswith("sft"))
    else:
        raise SystemExit(f"unknown part {name!r}; parts: {', '.join(PARTS)}")
    import torch

    return {
        "part": name,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "seconds": round(time.perf_counter() - start, 1),
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "peak_rss_children_mb": round(
            resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1
        ),
        "torch_threads": torch.get_num_threads(),
        "seed": SEED,
        **figures,
    }


def seed_suffix() -> str:
    return f"-seed{SEED}" if SEED else ""


def main() -> None:
    global THREADS, SEED
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", default=str(ROOT / "var" / "models" / "smollm2-135m-instruct"))
    parser.add_argument("--parts", default=",".join(PARTS), help="comma-separated parts")
    parser.add_argument("--threads", type=int, default=THREADS, help="torch threads per part")
    parser.add_argument(
        "--episodes", type=int, default=PPO["total_episodes"], help="PPO answers in all"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the reward and PPO parts (split included)"
    )
    parser.add_argument(
        "--together", action="store_true", help="start the parts at once (same load for all)"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--report", action="store_true", help="print the saved results only")
    args = parser.parse_args()
    THREADS, SEED = args.threads, args.seed
    PPO["total_episodes"] = args.episodes
    RESULTS.mkdir(parents=True, exist_ok=True)

    if args.child:
        figures = run_part(args.child, args.base)
        (RESULTS / f"{args.child}{seed_suffix()}.json").write_text(json.dumps(figures, indent=2))
        return
    if not args.report:
        env = {**os.environ, "OMP_NUM_THREADS": str(THREADS), "TOKENIZERS_PARALLELISM": "false"}
        shared = ["--base", args.base, "--threads", str(THREADS), "--seed", str(SEED)]
        shared += ["--episodes", str(args.episodes)]
        running = []
        for name in args.parts.split(","):
            print(f"== {name} (load {os.getloadavg()[0]:.2f})", flush=True)
            child = subprocess.Popen([sys.executable, __file__, *shared, "--child", name], env=env)
            running.append((name, child))
            if not args.together:
                child.wait()
        for name, child in running:
            if child.wait():
                print(f"   {name} failed (exit {child.returncode})", flush=True)
    report()


# long per-step lists kept in the JSON files, left out of the printed report
PER_STEP_KEYS = (
    "steps",
    "history",
    "scores",
    "kl",
    "rows",
    "result",
    "update_times",
    "update_load1",
    "update_cpu",
)


def report() -> None:
    for path in sorted(RESULTS.glob("*.json")):
        r = json.loads(path.read_text())
        keep = {k: v for k, v in r.items() if k not in PER_STEP_KEYS}
        print(json.dumps(keep))
        if "rows" in r:
            for row in r["rows"]:
                print("   ", json.dumps(row))
        if "result" in r:
            res = r["result"]
            print("    result:", json.dumps({k: res.get(k) for k in (
                "train_pairs", "heldout_pairs", "heldout_accuracy",
                "heldout_accuracy_chosen_shorter", "heldout_accuracy_chosen_longer",
                "heldout_pairs_chosen_shorter", "heldout_pairs_chosen_longer", "steps",
                "prompts_truncated")}))  # fmt: skip


if __name__ == "__main__":
    main()
