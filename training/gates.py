"""Promotion gates: what a candidate policy must show before it may replace the active one."""

from __future__ import annotations

from typing import Any

from feedback.models import Project


def gate_report(*, project: Project, evaluation: dict[str, Any]) -> dict[str, Any]:
    """Check an evaluation (training.ml.evaluate) against the project's thresholds.

    Returns {"passed": bool, "gates": [{"name", "value", "threshold", "passed"}, ...]}.
    """
    candidate = evaluation["candidate"]
    checks = [
        ("reward-model win rate", evaluation["win_rate"], ">=", project.gate_min_win_rate),
        ("mean KL to the base", evaluation["kl_to_base_mean"], "<=", project.gate_max_kl),
        ("empty answers", candidate["empty_rate"], "<=", project.gate_max_empty_rate),
        ("repeated 3-grams", candidate["repetition_rate"], "<=", project.gate_max_repetition),
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
    return {"passed": all(g["passed"] for g in gates), "gates": gates}
