"""Agreement statistics against published values and hand computations."""

from __future__ import annotations

import pytest

from feedback.agreement import (
    ORDINAL_SCALE,
    binomial_test_half,
    cohen_kappa,
    krippendorff_alpha,
    ordinal_value,
)

# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", section C: four
# observers, twelve units, values 1..5, with missing values (None).
OBSERVERS = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
    [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
]
UNITS = [[v for v in unit if v is not None] for unit in zip(*OBSERVERS, strict=True)]


def test_krippendorff_alpha_matches_the_published_example():
    assert krippendorff_alpha(UNITS, metric="nominal") == pytest.approx(0.743, abs=5e-4)
    assert krippendorff_alpha(UNITS, metric="ordinal", scale=[1, 2, 3, 4, 5]) == pytest.approx(
        0.815, abs=5e-4
    )


def test_alpha_is_one_for_perfect_agreement_and_undefined_without_pairs():
    assert krippendorff_alpha([[1, 1], [3, 3, 3]], metric="ordinal", scale=[1, 2, 3]) == 1.0
    assert krippendorff_alpha([[1], [2]], metric="nominal") is None
    assert krippendorff_alpha([[2, 2], [2, 2]], metric="nominal") is None


def test_ordinal_alpha_refuses_values_off_the_scale():
    with pytest.raises(ValueError, match="not on the scale"):
        krippendorff_alpha([[1, 9]], metric="ordinal", scale=[1, 2, 3])


def test_ordinal_scale_runs_from_a_strong_to_b_strong():
    values = [ordinal_value("a", 3), ordinal_value("a", 1), ordinal_value("tie", 2)]
    values += [ordinal_value("both_bad", 1), ordinal_value("b", 2)]
    assert values == [-3, -1, 0, 0, 2]
    assert ORDINAL_SCALE == (-3, -2, -1, 0, 1, 2, 3)


def test_cohen_kappa_by_hand():
    # Observed 3/4; chance: first a,a,b,b / second a,b,b,b -> (2*1 + 2*3) / 16 = 1/2.
    assert cohen_kappa([("a", "a"), ("a", "b"), ("b", "b"), ("b", "b")]) == 0.5
    assert cohen_kappa([("a", "b"), ("b", "a")]) == -1.0
    assert cohen_kappa([("a", "a"), ("a", "a")]) is None
    assert cohen_kappa([]) is None


def test_exact_binomial_test_against_one_half():
    assert binomial_test_half(7, 10) == pytest.approx(0.34375)
    assert binomial_test_half(10, 10) == pytest.approx(2 / 1024)
    assert binomial_test_half(5, 10) == 1.0
    assert binomial_test_half(0, 0) == 1.0
