"""Arena services (the worker side is exercised in tests/browser/test_arena.py)."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.core.exceptions import ValidationError

from feedback.models import ArenaBattle, Comparison, LabelAudit, PreferenceLabel, Prompt
from feedback.routing import websocket_urlpatterns
from training.models import PolicyVersion
from training.selectors import labels_for_training
from training.services.arena import arena_battle_start, arena_record_answer, arena_vote


@pytest.fixture
def two_versions(project):
    PolicyVersion.objects.create(project=project, number=1, status="candidate")
    return project


def test_start_stores_an_arena_prompt_and_two_different_versions(
    two_versions, annotator, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks:
        battle = arena_battle_start(
            user=annotator, project=two_versions, text="  Why is the sky blue? "
        )

    assert battle.prompt.messages == [{"role": "user", "content": "Why is the sky blue?"}]
    assert battle.prompt.split == Prompt.Split.ARENA
    assert {battle.policy_a.number, battle.policy_b.number} == {0, 1}
    assert battle.status == "generating"
    assert len(callbacks) == 1  # the generation task, queued after commit


def test_start_needs_two_versions_and_a_prompt(project, annotator):
    with pytest.raises(ValidationError) as error:
        arena_battle_start(user=annotator, project=project, text="Hello")
    assert error.value.messages == [
        "The arena needs two policy versions; this project has 1 so far. "
        "Run an iteration of the loop first."
    ]
    PolicyVersion.objects.create(project=project, number=1, status="candidate")
    with pytest.raises(ValidationError) as error:
        arena_battle_start(user=annotator, project=project, text="   ")
    assert error.value.message_dict == {"prompt": ["Type a prompt first."]}
    assert ArenaBattle.objects.count() == 0
    assert Prompt.objects.filter(split="arena").count() == 0


def test_vote_before_the_answers_finish_becomes_a_label_when_they_do(two_versions, annotator):
    battle = arena_battle_start(user=annotator, project=two_versions, text="Hi")

    arena_vote(user=annotator, project=two_versions, battle_id=battle.pk, choice="b", strength=3)
    assert PreferenceLabel.objects.count() == 0  # answers not stored yet
    arena_record_answer(
        battle_id=battle.pk, side="a", text="A!", token_count=2, finish_reason="stop"
    )
    assert PreferenceLabel.objects.count() == 0
    arena_record_answer(
        battle_id=battle.pk, side="b", text="B.", token_count=2, finish_reason="length"
    )

    battle.refresh_from_db()
    label = PreferenceLabel.objects.select_related("comparison").get()
    assert battle.status == "done"
    assert (label.comparison.kind, label.comparison.status) == ("arena", "complete")
    assert (label.choice, label.strength, label.a_shown_left) == ("b", 3, battle.a_shown_left)
    assert label.comparison.completion_a.policy_version_id == battle.policy_a_id
    assert label.comparison.completion_b.text == "B."
    assert list(LabelAudit.objects.values_list("action", flat=True)) == ["created"]
    assert list(labels_for_training(project=two_versions)) == []


def test_vote_after_the_answers_and_repeats_change_nothing(two_versions, annotator):
    battle = arena_battle_start(user=annotator, project=two_versions, text="Hi")
    for side in "ab":
        arena_record_answer(
            battle_id=battle.pk, side=side, text=side, token_count=1, finish_reason="stop"
        )
        arena_record_answer(
            battle_id=battle.pk, side=side, text="again", token_count=1, finish_reason="stop"
        )

    arena_vote(user=annotator, project=two_versions, battle_id=battle.pk, choice="tie")
    arena_vote(user=annotator, project=two_versions, battle_id=battle.pk, choice="a")

    assert PreferenceLabel.objects.get().choice == "tie"
    assert Comparison.objects.filter(kind="arena").count() == 1
    assert sorted(c.completion_a.text + c.completion_b.text for c in Comparison.objects.all()) == [
        "ab"
    ]


def test_vote_refuses_bad_input_and_other_annotators(two_versions, annotator, make_user):
    battle = arena_battle_start(user=annotator, project=two_versions, text="Hi")
    with pytest.raises(ValidationError) as error:
        arena_vote(user=annotator, project=two_versions, battle_id=battle.pk, choice="left")
    assert error.value.message_dict == {
        "choice": ["Unknown choice 'left'; use one of ['a', 'b', 'tie', 'both_bad']."]
    }
    with pytest.raises(ValidationError):
        arena_vote(user=make_user("x"), project=two_versions, battle_id=battle.pk, choice="a")
    battle.refresh_from_db()
    assert battle.voted_at is None and battle.choice == ""


@pytest.mark.django_db(transaction=True)
def test_arena_socket_is_for_members_only(project, make_user):
    stranger = make_user("stranger")

    async def scenario():
        communicator = WebsocketCommunicator(
            URLRouter(websocket_urlpatterns), "/ws/projects/demo/arena/"
        )
        communicator.scope["user"] = stranger
        connected, code = await communicator.connect()
        return connected, code

    assert async_to_sync(scenario)() == (False, 4403)


def test_a_nul_in_model_output_is_stored_as_a_replacement_character(two_versions, annotator):
    battle = arena_battle_start(user=annotator, project=two_versions, text="Hi")

    arena_record_answer(
        battle_id=battle.pk, side="a", text="a\x00b", token_count=3, finish_reason="stop"
    )

    battle.refresh_from_db()
    assert battle.completion_a.text == "a\ufffdb"
