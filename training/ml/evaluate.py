"""Evaluate a candidate policy against the incumbent before promotion.

    python -m training.ml.evaluate --base var/models/smollm2 --candidate-adapter var/policies/4 \
        --incumbent-adapter var/policies/3 --reward-model var/rm/4 --prompts eval.jsonl

On the same (seeded) evaluation prompts, both policies answer once; the reward model judges
each pair (win rate, ties count half), and so does the independent judge when one is given: a
reward model trained on labels the policy's reward model never saw. PPO climbs its reward
model, so a candidate that games it wins that model's comparison by construction; the judge's
win rate does not move with the exploit, and the gap between the two (the over-optimization
gap) is the signal (Gao et al. 2022, "Scaling Laws for Reward Model Overoptimization"). Alongside: how far the candidate drifted from the base
(mean KL on its own samples), answer lengths, repetition and empty answers, the numbers that
show reward hacking before a human sees it, and a few example pairs.

KL: for each candidate answer y to prompt x, sum over answer tokens of
log p_candidate(y_t | x, y_<t) - log p_base(y_t | x, y_<t), averaged over answers. This is
the Monte-Carlo estimate of KL(candidate || base) since y is sampled from the candidate; the
base is the same model with the adapter disabled. With `reference_adapter` (the SFT version
at the root of the candidate's line, PPO's reference) the same estimate against it is added. Log-probs use the sampling temperature,
as the samples came from the tempered distribution (Huang et al. 2024, "The N Implementation
Details of RLHF with PPO", detail on temperature scaling of logits).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training.ml.data import (
    add_config_arguments,
    config_from_arguments,
    load_prompts,
    sample_prompts,
)
from training.ml.generate import Sample
from training.ml.loading import check_adapter_path, check_model_path

OnProgress = Callable[[int, int], None]

CANDIDATE = "candidate"
INCUMBENT = "incumbent"
REFERENCE = "reference"
REPETITION_N = 3  # n-gram size (tokens) for the repetition rate


@dataclass
class EvaluateConfig:
    base_model: str = field(metadata={"help": "base model folder (or cached hub id)"})
    reward_model: str = field(metadata={"help": "reward adapter folder (train_reward's out_dir)"})
    judge_model: str | None = field(
        default=None,
        metadata={
            "help": "reward adapter folder of an independent judge (trained on labels the "
            "reward model never saw); none = no judge"
        },
    )
    candidate_adapter: str | None = field(
        default=None, metadata={"help": "LoRA adapter of the candidate policy; none = the base"}
    )
    incumbent_adapter: str | None = field(
        default=None, metadata={"help": "LoRA adapter of the active policy; none = the base"}
    )
    reference_adapter: str | None = field(
        default=None,
        metadata={
            "help": "LoRA adapter of the candidate's KL reference (its SFT version): the report "
            "adds the KL to it; none = the base is the only reference"
        },
    )
    num_prompts: int | None = field(
        default=64, metadata={"help": "prompts drawn (seeded) from the file; none = all"}
    )
    max_new_tokens: int = field(default=64, metadata={"help": "longest answer, in tokens"})
    temperature: float = field(default=0.8, metadata={"help": "sampling temperature (> 0)"})
    top_p: float = field(default=0.95, metadata={"help": "nucleus sampling mass"})
    batch_size: int = field(default=8, metadata={"help": "sequences per forward pass"})
    seed: int = field(default=0, metadata={"help": "seed for prompt choice and sampling"})
    num_examples: int = field(default=3, metadata={"help": "example pairs in the report"})
    device: str | None = field(
        default=None, metadata={"help": "torch device; default CUDA when available, else CPU"}
    )

    def validate(self) -> None:
        if self.num_prompts is not None and self.num_prompts < 1:
            raise ValueError(f"num_prompts must be at least 1, got {self.num_prompts}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be positive, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        if self.num_examples < 0:
            raise ValueError(f"num_examples must be >= 0, got {self.num_examples}")


def evaluate(
    config: EvaluateConfig, prompts_path: str | Path, *, on_progress: OnProgress | None = None
) -> dict[str, Any]:
    """Candidate vs incumbent on prompts from `prompts_path`; a JSON-ready report.

    `on_progress(done, total)` counts units of work: each generated answer (two per prompt),
    each KL sequence and each scored answer.
    """
    # ---- check everything before loading a model ----
    config.validate()
    check_model_path(config.base_model)
    adapters = (config.candidate_adapter, config.incumbent_adapter, config.reward_model)
    for adapter in (*adapters, config.judge_model, config.reference_adapter):
        if adapter is not None:
            check_adapter_path(adapter)
    prompts = sample_prompts(load_prompts(prompts_path), config.num_prompts, seed=config.seed)

    from training.ml.generate import sample_with_model
    from training.ml.loading import encode_prompt, load_causal_lm

    n = len(prompts)
    judges = 2 if config.judge_model else 1
    total = 3 * n + 2 * n * judges  # 2n answers, n KL sequences, 2n scores per judge

    def report(done: int) -> None:
        if on_progress is not None:
            on_progress(done, total)

    report(0)

    # ---- both policies answer every prompt once, same seed ----
    model, tokenizer = load_causal_lm(config.base_model, device=config.device)
    model = _load_policies(
        model, config.candidate_adapter, config.incumbent_adapter, config.reference_adapter
    )
    samples: dict[str, list[Sample]] = {}
    policies = ((CANDIDATE, config.candidate_adapter), (INCUMBENT, config.incumbent_adapter))
    for stage, (name, adapter) in enumerate(policies):
        with _policy(model, name if adapter is not None else None):
            samples[name] = sample_with_model(
                model,
                tokenizer,
                prompts,
                num_samples=1,
                max_new_tokens=config.max_new_tokens,
                temperature=config.temperature,
                top_p=config.top_p,
                batch_size=config.batch_size,
                seed=config.seed,
                on_progress=lambda answered, _, offset=stage * n: report(offset + answered),
            )

    # ---- KL(candidate || base) on the candidate's own answers ----
    prompt_ids = [encode_prompt(tokenizer, p) for p in prompts]
    stop_id = tokenizer.eos_token_id
    answers = [
        list(s.token_ids) + ([stop_id] if s.finish_reason == "stop" else [])
        for s in samples[CANDIDATE]
    ]
    with _policy(model, CANDIDATE if config.candidate_adapter is not None else None):
        candidate_logps = sequence_logprobs(
            model, prompt_ids, answers, temperature=config.temperature, batch_size=config.batch_size
        )
    with _policy(model, None):
        base_logps = sequence_logprobs(
            model, prompt_ids, answers, temperature=config.temperature, batch_size=config.batch_size
        )
    kls = [c - b for c, b in zip(candidate_logps, base_logps, strict=True)]
    reference_kls = None
    if config.reference_adapter is not None:  # KL(candidate || its SFT version), the same way
        with _policy(model, REFERENCE):
            reference_logps = sequence_logprobs(
                model,
                prompt_ids,
                answers,
                temperature=config.temperature,
                batch_size=config.batch_size,
            )
        reference_kls = [c - r for c, r in zip(candidate_logps, reference_logps, strict=True)]
    report(3 * n)
    del model

    # ---- the reward model (and the independent judge) score each pair ----
    rewards = _scores(config, config.reward_model, prompts, samples)
    report(5 * n)
    result = {
        "prompts": n,
        **_wins(rewards),
        "kl_to_base_mean": statistics.fmean(kls),
        "kl_to_base_max": max(kls),
        **(
            {
                "kl_to_reference_mean": statistics.fmean(reference_kls),
                "kl_to_reference_max": max(reference_kls),
            }
            if reference_kls is not None
            else {}
        ),
        CANDIDATE: _answer_stats(samples[CANDIDATE], rewards[CANDIDATE]),
        INCUMBENT: _answer_stats(samples[INCUMBENT], rewards[INCUMBENT]),
    }
    judged: dict[str, list[float]] = {}
    if config.judge_model:
        judged = _scores(config, config.judge_model, prompts, samples)
        report(7 * n)
        result["judge"] = _wins(judged)
        result["overoptimization_gap"] = result["win_rate"] - result["judge"]["win_rate"]
    result["examples"] = [
        {
            "prompt": prompts[i],
            "candidate": samples[CANDIDATE][i].text,
            "incumbent": samples[INCUMBENT][i].text,
            "candidate_reward": rewards[CANDIDATE][i],
            "incumbent_reward": rewards[INCUMBENT][i],
            **(
                {"candidate_judge": judged[CANDIDATE][i], "incumbent_judge": judged[INCUMBENT][i]}
                if judged
                else {}
            ),
        }
        for i in range(min(config.num_examples, n))
    ]
    return result


def _scores(
    config: EvaluateConfig, adapter: str, prompts: Sequence[Any], samples: dict[str, list[Sample]]
) -> dict[str, list[float]]:
    """One reward model's score of every answer of both policies."""
    from training.ml.reward import RewardScorer

    scorer = RewardScorer.load(config.base_model, adapter, device=config.device)
    return {
        name: scorer.score(prompts, [s.text for s in samples[name]], batch_size=config.batch_size)
        for name in (CANDIDATE, INCUMBENT)
    }


def _wins(rewards: dict[str, list[float]]) -> dict[str, Any]:
    """The candidate's win rate over the incumbent, pair by pair (ties count half)."""
    pairs = list(zip(rewards[CANDIDATE], rewards[INCUMBENT], strict=True))
    wins = sum(c > i for c, i in pairs)
    ties = sum(c == i for c, i in pairs)
    return {
        "win_rate": (wins + 0.5 * ties) / len(pairs),
        "wins": wins,
        "ties": ties,
        "losses": len(pairs) - wins - ties,
    }


# ---- policies on one base model ----


def _load_policies(
    model: Any, candidate: str | None, incumbent: str | None, reference: str | None = None
) -> Any:
    """The base with the candidate, incumbent (and reference) adapters loaded under their own
    names."""
    from peft import PeftModel

    named = [
        (name, path)
        for name, path in ((CANDIDATE, candidate), (INCUMBENT, incumbent), (REFERENCE, reference))
        if path
    ]
    if not named:
        return model
    (first_name, first_path), *rest = named
    model = PeftModel.from_pretrained(model, first_path, adapter_name=first_name)
    for name, path in rest:
        model.load_adapter(path, adapter_name=name)
    model.eval()
    return model


@contextlib.contextmanager
def _policy(model: Any, adapter_name: str | None) -> Iterator[None]:
    """Run as the named adapter, or as the base (adapters disabled) when None."""
    if adapter_name is not None:
        model.set_adapter(adapter_name)
        yield
    elif hasattr(model, "disable_adapter"):
        with model.disable_adapter():
            yield
    else:
        yield


def sequence_logprobs(
    model: Any,
    prompt_ids: Sequence[list[int]],
    answer_ids: Sequence[list[int]],
    *,
    temperature: float = 1.0,
    batch_size: int = 8,
) -> list[float]:
    """Sum of log p(answer token | everything before it) per sequence, logits / temperature."""
    import torch

    device = next(model.parameters()).device
    totals = []
    with torch.no_grad():
        for start in range(0, len(prompt_ids), batch_size):
            prompts = prompt_ids[start : start + batch_size]
            answers = answer_ids[start : start + batch_size]
            rows = [p + a for p, a in zip(prompts, answers, strict=True)]
            width = max(len(r) for r in rows)
            ids = torch.zeros((len(rows), width), dtype=torch.long)  # right padding
            mask = torch.zeros((len(rows), width), dtype=torch.long)
            answer_mask = torch.zeros((len(rows), width), dtype=torch.bool)
            for i, (p, a) in enumerate(zip(prompts, answers, strict=True)):
                ids[i, : len(p) + len(a)] = torch.tensor(p + a)
                mask[i, : len(p) + len(a)] = 1
                answer_mask[i, len(p) : len(p) + len(a)] = True
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
            logprobs = torch.log_softmax(
                logits[:, :-1].float() / temperature, dim=-1
            )  # (B, T-1, V)
            next_ids = ids[:, 1:].to(device)  # (B, T-1)
            token_logps = logprobs.gather(-1, next_ids.unsqueeze(-1)).squeeze(-1)  # (B, T-1)
            token_logps = token_logps * answer_mask[:, 1:].to(device)
            totals.extend(token_logps.sum(dim=1).tolist())
    return totals


# ---- answer statistics ----


def _answer_stats(samples: Sequence[Sample], rewards: Sequence[float]) -> dict[str, Any]:
    lengths = [s.token_count for s in samples]
    return {
        "reward_mean": statistics.fmean(rewards),
        "length_mean": statistics.fmean(lengths),
        "length_median": statistics.median(lengths),
        "length_max": max(lengths),
        "truncated_rate": sum(s.finish_reason == "length" for s in samples) / len(samples),
        "empty_rate": sum(not s.text.strip() for s in samples) / len(samples),
        "repetition_rate": repetition_rate([list(s.token_ids) for s in samples]),
    }


def repetition_rate(sequences: Sequence[Sequence[int]], n: int = REPETITION_N) -> float:
    """Share of n-grams that repeat an earlier n-gram of the same answer, over all answers.

    0 for answers without repeats; near 1 for an answer stuck in a loop.
    """
    repeated = total = 0
    for tokens in sequences:
        grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
        repeated += len(grams) - len(set(grams))
        total += len(grams)
    return repeated / total if total else 0.0


# ---- command line ----


def main(argv: list[str] | None = None) -> None:
    from tqdm import tqdm

    parser = argparse.ArgumentParser(
        description="Evaluate a candidate policy against the incumbent."
    )
    add_config_arguments(parser, EvaluateConfig, renames={"base_model": "base"})
    parser.add_argument("--prompts", required=True, help='JSONL file, {"prompt": ...} per line')
    parser.add_argument("--out", help="write the report (JSON) here as well as to stdout")
    args = parser.parse_args(argv)
    config = config_from_arguments(EvaluateConfig, args)

    bar = tqdm(unit="step", file=sys.stderr)

    def on_progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    report = evaluate(config, args.prompts, on_progress=on_progress)
    bar.close()
    text = json.dumps(report, ensure_ascii=False, indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
