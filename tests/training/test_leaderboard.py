"""Which labels are games between versions (training/leaderboard.py)."""

from __future__ import annotations

import pytest

from feedback.models import Completion, Prompt
from feedback.services import assignment_next, comparisons_create, label_submit, label_undo
from training.leaderboard import Game, version_games, win_probability
from training.models import PolicyVersion


def test_a_withdrawn_label_is_no_game(project, annotator):
    v0 = PolicyVersion.objects.get(project=project, number=0)
    v1 = PolicyVersion.objects.create(project=project, number=1, status="candidate", parent=v0)
    prompt = Prompt.objects.filter(project=project, split="eval").first()
    comparisons_create(
        project=project,
        pairs=[
            (
                Completion.objects.create(prompt=prompt, policy_version=v1, text="new"),
                Completion.objects.create(prompt=prompt, policy_version=v0, text="old"),
            )
        ],
    )
    assignment = assignment_next(project=project, user=annotator)
    label_submit(user=annotator, assignment_id=assignment.pk, choice="a")
    counted = version_games(project=project)

    label_undo(user=annotator, project=project)

    assert counted == [Game(1, 0, 1.0)]
    assert version_games(project=project) == []


def test_win_probability_reads_a_version_on_either_side():
    games = [Game(1, 0, 1.0)] * 3 + [Game(0, 1, 0.0)] * 3 + [Game(0, 1, 1.0)] * 2

    p, low, high, counted = win_probability(games, version=1, against=0, bootstrap=100)
    reverse = win_probability(games, version=0, against=1, bootstrap=100)

    assert counted == reverse[3] == 8
    assert p > 0.5
    assert low <= p <= high
    assert reverse[0] == pytest.approx(1 - p)
