"""What a run's page shows: the curves a practitioner reads first for each kind of run, the
rest of its metrics folded away, and its configuration and summary as key/value rows.

The metric names are those the stages in `training/ml` report: ppo.py's own (TRL's PPO names),
TRL's RewardTrainer, DPOTrainer and SFTTrainer logs, and the held-out figures each stage adds.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Curve:
    key: str
    title: str
    # False: shown once the run reports it (held-out figures come at the end of training).
    always: bool = True


LEADING_CURVES: dict[str, tuple[Curve, ...]] = {
    "ppo": (
        Curve("objective/scores", "Score (reward model)"),
        Curve("objective/rlhf_reward", "RLHF reward (score − KL penalty)"),
        Curve("objective/kl", "KL to the reference"),
        Curve("loss/policy", "Policy loss"),
        Curve("loss/value", "Value loss"),
        Curve("val/response_length", "Answer length (tokens)"),
    ),
    "reward": (
        Curve("loss", "Training loss"),
        Curve("accuracy", "Training accuracy"),
        Curve("heldout_accuracy", "Held-out accuracy", always=False),
    ),
    "dpo": (
        Curve("loss", "Training loss"),
        Curve("rewards/accuracies", "Preference accuracy (train)"),
        Curve("rewards/margins", "Reward margin (chosen − rejected)"),
        # Falling log-probs of the chosen answers: DPO pushing both answers down.
        Curve("logps/chosen", "Log-prob of chosen answers"),
        Curve("heldout_accuracy", "Held-out accuracy", always=False),
    ),
    "sft": (
        Curve("loss", "Training loss"),
        Curve("mean_token_accuracy", "Token accuracy (train)"),
        Curve("heldout_loss", "Held-out loss per token", always=False),
    ),
}

# Counters, clocks and progress: numbers that only grow with the step, never plotted.
BOOKKEEPING = frozenset(
    {
        "step",
        "episode",
        "elapsed_seconds",
        "eps",
        "epoch",
        "of",
        "answers_done",
        "answers_total",
        "num_tokens",
        "train_runtime",
        "train_samples_per_second",
        "train_steps_per_second",
        "total_flos",
        "heldout_pairs",
        "heldout_pairs_chosen_shorter",
        "heldout_pairs_chosen_longer",
        "heldout_pairs_same_length",
    }
)


@dataclass(frozen=True)
class RunCurves:
    lead: list[Curve]  # in the kind's order: every `always` curve, the others once reported
    more: list[str]  # every other numeric metric reported, sorted
    plan: dict[str, Any]  # for the page's script: where a metric first seen live goes


def run_curves(*, kind: str, rows: Iterable[Mapping[str, Any]]) -> RunCurves:
    """The run's curves, from its metric rows ({"step": ..., name: value})."""
    reported = {
        k
        for row in rows
        for k, v in row.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool)
    }
    leading = LEADING_CURVES.get(kind, ())
    lead = [c for c in leading if c.always or c.key in reported]
    lead_keys = {c.key for c in leading}
    more = sorted(reported - lead_keys - BOOKKEEPING)
    plan = {
        "lead": [c.key for c in leading],
        "titles": {c.key: c.title for c in leading},
        "hidden": sorted(BOOKKEEPING),
    }
    return RunCurves(lead=lead, more=more, plan=plan)


def key_value_rows(mapping: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """A configuration or summary as (key, value) rows sorted by key (PostgreSQL's jsonb keeps
    no order of its own): nested mappings
    flattened to dotted keys ("lora.r"), strings as they are, floats to 6 significant digits,
    other values as JSON (true, null, [1, 2])."""
    rows: list[tuple[str, str]] = []
    for key, value in sorted(mapping.items()):
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            rows.extend(key_value_rows(value, prefix=f"{name}."))
        elif isinstance(value, str):
            rows.append((name, value))
        elif isinstance(value, float):
            rows.append((name, format(value, ".6g")))
        else:
            rows.append((name, json.dumps(value, ensure_ascii=False, default=str)))
    return rows
