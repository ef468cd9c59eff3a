"""Agreement and bias statistics over annotators' labels. Pure Python: no Django, no I/O.

- Krippendorff's alpha (nominal or ordinal), from the coincidence matrix, as in
  Krippendorff, "Computing Krippendorff's Alpha-Reliability" (2011).
- Cohen's kappa between two annotators over the items both labelled.
- An exact two-sided binomial test against p = 0.5 (position bias).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Hashable, Iterable, Sequence
from itertools import permutations
from math import comb

# A label as one point of an ordinal scale: "A much better" ... "B much better".
# Tie and both-bad carry no preference between the two answers: the middle of the scale.
ORDINAL_SCALE: tuple[int, ...] = (-3, -2, -1, 0, 1, 2, 3)


def ordinal_value(choice: str, strength: int) -> int:
    """-strength for A, +strength for B, 0 for tie and both-bad."""
    if choice == "a":
        return -strength
    if choice == "b":
        return strength
    return 0


def krippendorff_alpha(
    units: Iterable[Sequence[Hashable]],
    *,
    metric: str = "nominal",
    scale: Sequence[Hashable] | None = None,
) -> float | None:
    """Alpha over units (each the values its annotators gave; missing values left out).

    `metric` is "nominal" or "ordinal"; an ordinal alpha needs `scale`, the values in order.
    Units with fewer than two values are not pairable and are ignored. None when there is no
    pairable unit or no variation at all (alpha is undefined then).
    """
    coincidences: dict[tuple[Hashable, Hashable], float] = defaultdict(float)
    for values in units:
        m = len(values)
        if m < 2:
            continue
        for i, j in permutations(range(m), 2):
            coincidences[(values[i], values[j])] += 1.0 / (m - 1)
    if not coincidences:
        return None
    totals: Counter[Hashable] = Counter()
    for (c, _), weight in coincidences.items():
        totals[c] += weight
    n = sum(totals.values())
    categories = list(scale) if scale is not None else sorted(totals, key=str)
    if metric == "ordinal":
        if scale is None:
            raise ValueError("An ordinal alpha needs the scale, its values in order.")
        unknown = set(totals) - set(scale)
        if unknown:
            raise ValueError(f"Values not on the scale: {sorted(unknown, key=str)}.")
        position = {value: i for i, value in enumerate(categories)}

        def delta(c: Hashable, k: Hashable) -> float:
            lo, hi = sorted((position[c], position[k]))
            between = sum(totals[categories[g]] for g in range(lo, hi + 1))
            return (between - (totals[c] + totals[k]) / 2) ** 2
    elif metric == "nominal":

        def delta(c: Hashable, k: Hashable) -> float:
            return 0.0 if c == k else 1.0
    else:
        raise ValueError(f"Unknown metric {metric!r}; use 'nominal' or 'ordinal'.")

    observed = sum(weight * delta(c, k) for (c, k), weight in coincidences.items())
    expected = sum(totals[c] * totals[k] * delta(c, k) for c in totals for k in totals)
    if expected == 0:
        return None
    return 1.0 - (n - 1) * observed / expected


def cohen_kappa(pairs: Sequence[tuple[Hashable, Hashable]]) -> float | None:
    """Kappa of two annotators from (their value, other's value) on each shared item.

    None when there is no shared item or chance agreement is already perfect (both gave one
    and the same value throughout), where kappa is undefined.
    """
    n = len(pairs)
    if n == 0:
        return None
    observed = sum(1 for x, y in pairs if x == y) / n
    first = Counter(x for x, _ in pairs)
    second = Counter(y for _, y in pairs)
    expected = sum(first[c] * second[c] for c in first) / (n * n)
    if expected == 1.0:
        return None
    return (observed - expected) / (1.0 - expected)


def binomial_test_half(successes: int, trials: int) -> float:
    """Exact two-sided p-value of `successes` in `trials` under p = 0.5."""
    if trials == 0:
        return 1.0
    k = min(successes, trials - successes)
    tail = sum(comb(trials, i) for i in range(k + 1)) / 2**trials
    return min(1.0, 2 * tail)
