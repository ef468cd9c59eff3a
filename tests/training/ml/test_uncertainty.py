"""The uncertainty rule that chooses new comparisons (training/ml/uncertainty.py)."""

from __future__ import annotations

import math

import pytest

from training.ml.uncertainty import most_uncertain, pair_uncertainty, preference_probability


def test_preference_probability_is_the_bradley_terry_sigmoid_of_the_margin():
    assert preference_probability(1.0, 1.0) == 0.5
    assert preference_probability(2.0, 0.0) == pytest.approx(1 / (1 + math.exp(-2.0)))
    assert preference_probability(0.0, 2.0) == pytest.approx(1 - 1 / (1 + math.exp(-2.0)))
    # No overflow far out on either side.
    assert (preference_probability(0.0, 1000.0), preference_probability(1000.0, 0.0)) == (0.0, 1.0)


def test_uncertainty_is_one_at_a_coin_toss_and_zero_when_every_model_is_sure():
    assert pair_uncertainty([0.5]) == 1.0
    assert pair_uncertainty([0.9]) == pytest.approx(0.2)
    assert pair_uncertainty([0.1]) == pytest.approx(0.2)
    assert pair_uncertainty([1.0, 1.0]) == 0.0
    # Each model sure of its own answer: they disagree, and that counts as doubt.
    assert pair_uncertainty([0.9, 0.1]) == pytest.approx(1.0)
    assert pair_uncertainty([0.9, 0.7]) == pytest.approx(0.4)


def test_uncertainty_needs_a_model():
    with pytest.raises(ValueError, match="at least one model"):
        pair_uncertainty([])


def test_most_uncertain_takes_each_groups_best_pair_then_the_best_groups():
    groups = [[0.1, 0.3], [], [0.9, 0.2, 0.9], [0.5], [0.3]]

    assert most_uncertain(groups, 3) == [(2, 0), (3, 0), (0, 1)]
    # Equal best pairs: the groups' own order decides.
    assert most_uncertain(groups, 5) == [(2, 0), (3, 0), (0, 1), (4, 0)]
    assert most_uncertain(groups, 0) == []
