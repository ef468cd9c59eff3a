"""Deterministic tastes of simulated annotators: which of two answers they prefer."""

from __future__ import annotations

from collections.abc import Callable


def _concise(text: str) -> float:
    """Shorter is better; every exclamation mark costs as much as 20 characters."""
    return -(len(text.strip()) + 20 * text.count("!"))


def _shorter(text: str) -> float:
    return -len(text.strip())


def _longer(text: str) -> float:
    return len(text.strip())


def _no_exclamation(text: str) -> float:
    return -text.count("!")


PREFERENCES: dict[str, Callable[[str], float]] = {
    "concise": _concise,
    "shorter": _shorter,
    "longer": _longer,
    "no_exclamation": _no_exclamation,
}


def judge(preference: str, a: str, b: str) -> tuple[str, int]:
    """(choice, strength) of an annotator with this taste: "a", "b" or "tie"; 1..3."""
    score = PREFERENCES[preference]
    sa, sb = score(a), score(b)
    if sa == sb:
        return "tie", 1
    gap = abs(sa - sb) / max(abs(sa), abs(sb), 1)
    strength = 3 if gap > 0.5 else 2 if gap > 0.2 else 1
    return ("a" if sa > sb else "b"), strength
