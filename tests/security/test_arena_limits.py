"""The arena is metered: a user has at most HONE_ARENA_MAX_GENERATING battles generating and
starts at most HONE_ARENA_BATTLES_PER_HOUR an hour, else a 429 with the time to wait. And an
annotator's arena votes are one game per pair of versions, for the leaderboard and so for the
human gate: repeated battles cannot stuff the gate."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from feedback.models import ArenaBattle, PreferenceLabel, Prompt
from tests.training.test_human_gate import gated_project, waiting_rows  # noqa: F401 (fixtures)
from training import services
from training.leaderboard import version_games
from training.models import PolicyVersion
from training.services.arena import arena_battle_start, arena_record_answer, arena_vote

START = "/p/demo/arena/battles/"


@pytest.fixture
def two_versions(project):
    v0 = PolicyVersion.objects.get(project=project, number=0)
    PolicyVersion.objects.create(project=project, number=1, status="candidate", parent=v0)
    return project


def _start(client):
    return client.post(START, {"prompt": "Hello"}, content_type="application/json")


def _answer(battle_id: int) -> None:
    for side in ("a", "b"):
        arena_record_answer(
            battle_id=battle_id, side=side, text=side, token_count=1, finish_reason="stop"
        )


def test_at_most_two_battles_generate_at_once_per_user(
    client, two_versions, annotator, settings, django_capture_on_commit_callbacks
):
    settings.HONE_ARENA_MAX_GENERATING = 2
    client.force_login(annotator)

    with django_capture_on_commit_callbacks() as queued:
        answers = [_start(client) for _ in range(3)]

    assert [a.status_code for a in answers] == [201, 201, 429]
    assert answers[2].json() == {
        "errors": [
            "You have 2 arena battles still generating, the most the arena runs at once for "
            "one person; send this prompt again when one is answered."
        ],
        "retry_after": 10,
    }
    assert answers[2]["Retry-After"] == "10"
    assert ArenaBattle.objects.count() == 2
    assert len(queued) == 2  # two generation jobs, not three
    assert Prompt.objects.filter(split="arena").count() == 2

    _answer(answers[0].json()["battle"])  # one is answered: room for one more
    assert _start(client).status_code == 201


def test_a_battle_generating_past_the_task_time_limit_no_longer_counts(
    client, two_versions, annotator, settings
):
    settings.HONE_ARENA_MAX_GENERATING = 1
    client.force_login(annotator)
    assert _start(client).status_code == 201
    assert _start(client).status_code == 429
    ArenaBattle.objects.update(created_at=timezone.now() - timedelta(minutes=16))  # lost

    assert _start(client).status_code == 201


def test_at_most_so_many_battles_an_hour_per_user(client, two_versions, annotator, settings):
    settings.HONE_ARENA_BATTLES_PER_HOUR = 3
    client.force_login(annotator)
    for _ in range(3):
        _answer(_start(client).json()["battle"])
    oldest = ArenaBattle.objects.order_by("pk").first()
    ArenaBattle.objects.filter(pk=oldest.pk).update(
        created_at=timezone.now() - timedelta(minutes=50)
    )

    refused = _start(client)

    assert refused.status_code == 429
    body = refused.json()
    assert 595 <= body["retry_after"] <= 600
    assert refused["Retry-After"] == str(body["retry_after"])
    assert body["errors"] == [
        "You started 3 arena battles in the last hour, the most the arena takes from one "
        f"person; try again in {(body['retry_after'] + 59) // 60} minutes."
    ]
    assert ArenaBattle.objects.count() == 3


def _battles(project, user, votes: int, choice_for_v1: str = "a") -> None:
    """`votes` arena battles of `user`, answered and voted for v1."""
    for _ in range(votes):
        battle = arena_battle_start(user=user, project=project, text="Hi")
        _answer(battle.pk)
        v1_is_a = battle.policy_a.number == 1
        choice = choice_for_v1 if v1_is_a else {"a": "b", "b": "a"}[choice_for_v1]
        arena_vote(user=user, project=project, battle_id=battle.pk, choice=choice)


def test_an_annotators_arena_votes_are_one_game_per_pair_of_versions(
    two_versions, annotator, make_user
):
    from feedback.services import membership_set

    other = make_user("other")
    membership_set(project=two_versions, user=other, role="annotator")

    _battles(two_versions, annotator, 5)
    _battles(two_versions, other, 2)

    assert PreferenceLabel.objects.count() == 7
    games = version_games(project=two_versions)
    # One game each, both won by v1 (on whichever side it was drawn).
    assert [(game.first, game.score) in ((1, 1.0), (0, 0.0)) for game in games] == [True, True]


def test_the_human_gate_counts_one_arena_game_per_annotator(
    waiting_rows,  # noqa: F811 (the fixture imported above)
    gated_project,  # noqa: F811
    annotator,
):
    _battles(gated_project, annotator, 8)  # eight votes for the candidate from one person

    moved = services.iteration_human_gate_check(iteration=waiting_rows)

    waiting_rows.refresh_from_db()
    assert moved is None
    assert waiting_rows.status == "awaiting_humans"
    report = waiting_rows.evaluation["human_gate"]
    assert (report["decision"], report["labels"], report["labels_needed"]) == ("waiting", 1, 6)
