"""The simulated annotators' tastes (feedback/preferences.py)."""

from __future__ import annotations

import pytest

from feedback.preferences import PREFERENCES, judge


@pytest.mark.parametrize(
    ("text", "details"),
    [
        ("The moon is far away.", 0),
        ("The moon is 384,400 km away.", 1),
        ("It was first walked on by Neil Armstrong in 1969.", 3),
        ("Bees make honey. Honey keeps for years.", 0),  # capitals that open a sentence
        ("I think I'm right, and I'll say why.", 0),  # "I" is nobody's name
        ("Jars from Egypt: honey in them was 3000 years old!", 2),
    ],
)
def test_specific_counts_numbers_and_names(text, details):
    assert PREFERENCES["specific"](text) == details


def test_specific_prefers_the_detail_not_the_length():
    short = "It was built in 1889."
    long = "It was built a long time ago, by people who knew a great deal about building."

    assert judge("specific", short, long) == ("a", 3)
    assert judge("specific", long, short) == ("b", 3)
    assert judge("specific", "Built long ago.", "Built a long time ago.") == ("tie", 1)
