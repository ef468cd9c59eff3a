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


def _specific(text: str) -> float:
    """Concrete details are better: each number and each named thing (a capitalised word that
    does not open a sentence, "I" aside) counts one. Length itself counts for nothing, yet in
    real answers the specific one is usually the longer: a taste confounded with length, the
    case that teaches a reward model to reward length (bench/length.py)."""
    details = 0
    opens_sentence = True
    for word in text.split():
        core = word.strip("\"'()[]{},;:.!?")
        number = any(c.isdigit() for c in core)
        name = core[:1].isupper() and not opens_sentence and core.split("'")[0] != "I"
        details += number or name
        opens_sentence = word.endswith((".", "!", "?"))
    return details


PREFERENCES: dict[str, Callable[[str], float]] = {
    "concise": _concise,
    "shorter": _shorter,
    "longer": _longer,
    "no_exclamation": _no_exclamation,
    "specific": _specific,
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
