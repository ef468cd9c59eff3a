"""Which pairs teach the reward models most: how unsure they are of the preference.

A reward model trained with the Bradley-Terry loss says that A is preferred over B with
probability p = sigmoid(r_A - r_B). A pair it scores near p = 0.5 is one it cannot call; a
pair where two reward models (the policy's and the independent judge) are each sure but of
opposite answers is one at least one of them gets wrong. Both are where a human label teaches
most (uncertainty sampling and query by committee: Settles, "Active Learning Literature
Survey", 2009, sections 3.1 and 3.2). One number covers both: the committee's mean
probability p̄, and uncertainty = 1 - |2 p̄ - 1|, which is 1 at p̄ = 0.5 and 0 when every model
is sure of the same answer. Two models sure of opposite answers average to p̄ near 0.5, so
their disagreement counts as much as their joint doubt.

Plain Python: the generation job (training/jobs/uncertainty.py) and the label-efficiency
benchmark (bench/label_efficiency.py) share it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def preference_probability(reward_a: float, reward_b: float) -> float:
    """Bradley-Terry probability that A is preferred over B."""
    margin = reward_a - reward_b
    if margin >= 0:
        return 1.0 / (1.0 + math.exp(-margin))
    e = math.exp(margin)  # no overflow for a large negative margin
    return e / (1.0 + e)


def pair_uncertainty(probabilities: Sequence[float]) -> float:
    """1 - |2 p̄ - 1| for the committee's probabilities that A wins; in [0, 1]."""
    if not probabilities:
        raise ValueError("a pair's uncertainty needs at least one model's probability")
    mean = sum(probabilities) / len(probabilities)
    return 1.0 - abs(2.0 * mean - 1.0)


def most_uncertain(groups: Sequence[Sequence[float]], k: int) -> list[tuple[int, int]]:
    """The k groups (prompts) whose best candidate pair is the most uncertain, at most one pair
    per group, as (group, candidate) indices, most uncertain first. Ties keep the groups'
    order, so that equal pairs are taken in the order the caller ranks its prompts."""
    best = [
        (-max(scores), g, max(range(len(scores)), key=lambda i: (scores[i], -i)))
        for g, scores in enumerate(groups)
        if scores
    ]
    best.sort()
    return [(g, i) for _, g, i in best[:k]]
