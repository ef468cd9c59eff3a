"""Promotion gates: what a candidate policy must show before it may replace the active one.

The reward-model gates read the evaluation run (training.ml.evaluate); the human gate, when a
project turns it on, reads human labels on the candidate against the active policy.
"""

from __future__ import annotations

from typing import Any

from feedback.models import Project
from training.leaderboard import Game, win_probability

OVEROPTIMIZATION = "over-optimization gap"


def gate_report(*, project: Project, evaluation: dict[str, Any]) -> dict[str, Any]:
    """Check an evaluation (training.ml.evaluate) against the project's thresholds.

    Returns {"passed": bool, "gates": [{"name", "value", "threshold", "passed"}, ...],
    "judge": "judged" | "missing" | "off"}. With the judge gate on, the independent judge's win
    rate must reach its threshold and the gap between the training reward model's win rate and
    the judge's (over-optimization: the candidate games its reward model) must stay within the
    project's limit. "missing": the gate is on but there was no judge to ask (too few labels on
    eval prompts); the candidate may then not be promoted on the training reward model's word
    alone (training/jobs/iteration.py sends it to people or an admin).
    """
    candidate = evaluation["candidate"]
    # A candidate of an SFT line is held to its SFT version, as PPO held it: the KL the SFT
    # stage itself put between that version and the base is not the candidate's drift.
    kl = ("mean KL to the base", evaluation["kl_to_base_mean"])
    if "kl_to_reference_mean" in evaluation:
        kl = ("mean KL to its SFT version", evaluation["kl_to_reference_mean"])
    checks = [
        ("reward-model win rate", evaluation["win_rate"], ">=", project.gate_min_win_rate),
        (*kl, "<=", project.gate_max_kl),
        ("empty answers", candidate["empty_rate"], "<=", project.gate_max_empty_rate),
        ("repeated 3-grams", candidate["repetition_rate"], "<=", project.gate_max_repetition),
    ]
    judge = "off"
    if project.gate_judge_min_win_rate is not None:
        judge = "judged" if "judge" in evaluation else "missing"
    if judge == "judged":
        checks += [
            (
                "judge win rate",
                evaluation["judge"]["win_rate"],
                ">=",
                project.gate_judge_min_win_rate,
            ),
            (
                OVEROPTIMIZATION,
                evaluation["overoptimization_gap"],
                "<=",
                project.gate_max_overoptimization,
            ),
        ]
    gates = [
        {
            "name": name,
            "value": value,
            "threshold": f"{op} {threshold}",
            "passed": value >= threshold if op == ">=" else value <= threshold,
        }
        for name, value, op, threshold in checks
    ]
    return {"passed": all(g["passed"] for g in gates), "gates": gates, "judge": judge}


def gate_rejection(report: dict[str, Any]) -> str:
    """Why the gates said no, as the iteration's error reads it."""
    failed = [g for g in report["gates"] if not g["passed"]]
    reason = f"Gates not passed: {', '.join(g['name'] for g in failed)}."
    gap = next((g for g in failed if g["name"] == OVEROPTIMIZATION), None)
    if gap is not None:
        reason += (
            f" The candidate games its reward model: it wins {gap['value']:.2f} more often "
            "by the reward model it was trained against than by the independent judge "
            f"(limit {gap['threshold']})."
        )
    return reason


def human_gate(
    *,
    project: Project,
    games: list[Game],
    candidate: int,
    incumbent: int,
    open_comparisons: int,
) -> dict[str, Any]:
    """The human gate: the candidate's win probability against the active policy, from human
    labels (the leaderboard's games and Bradley-Terry fit), with its bootstrap 95% interval.

    It decides once the project's number of labels is in: "passed" when the interval's lower
    end reaches the threshold, "failed" when its upper end is below it; in between it waits
    for more labels while some of the candidate's comparisons are still open. When none is
    open and it still cannot pass, it fails: nothing more will come. Before the labels are
    in it never passes, even on a unanimous start: a percentile bootstrap of a few identical
    games has no width at all.
    """
    threshold = project.gate_human_min_win_rate
    needed = project.gate_human_labels
    value = low = high = None
    labels = 0
    if any({g.first, g.second} == {candidate, incumbent} for g in games):
        value, low, high, labels = win_probability(games, version=candidate, against=incumbent)
    enough = labels >= needed
    interval = f"{value:.3f} (95% interval {low:.3f}-{high:.3f})" if labels else ""
    if enough and low is not None and low >= threshold:
        decision, reason = "passed", ""
    elif enough and high is not None and high < threshold:
        decision = "failed"
        reason = (
            f"humans prefer v{incumbent}: the candidate's win probability is {interval}, "
            f"below {threshold}, from {labels} labels"
        )
    elif open_comparisons:
        decision, reason = "waiting", ""
    elif not enough:
        decision = "failed"
        reason = (
            f"only {labels} of the {needed} labels it needs could be collected (no comparison "
            "of the candidate is open any more); add eval prompts, raise "
            "comparisons_per_iteration or lower gate_human_labels"
        )
    else:
        decision = "failed"
        reason = (
            f"undecided after all {labels} labels: the candidate's win probability is "
            f"{interval}, whose interval still contains {threshold}"
        )
    return {
        "name": "human win rate",
        "value": value,
        "low": low,
        "high": high,
        "threshold": f">= {threshold} (lower end of the 95% interval)",
        "labels": labels,
        "labels_needed": needed,
        "open_comparisons": open_comparisons,
        "decision": decision,
        "passed": {"passed": True, "failed": False}.get(decision),
        "reason": reason,
    }
