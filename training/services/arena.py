"""The arena: an annotator's own prompt, two anonymous policy versions, one vote.

Writes of the arena live here (services); the generation runs on a GPU worker
(training/jobs/arena.py, task `arena_generate_task`) and streams text to the annotator over the
websocket group of that annotator in that project. The web process never loads a model.
"""

from __future__ import annotations

import logging
import math
import random
from datetime import timedelta
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from feedback.events import arena_group
from feedback.models import (
    ArenaBattle,
    Comparison,
    Completion,
    LabelAudit,
    PreferenceLabel,
    Project,
    Prompt,
)
from feedback.rendering import markdown_to_html
from feedback.services import storable_text, vote_check
from training.models import PolicyVersion

logger = logging.getLogger(__name__)

MAX_PROMPT_CHARS = 4000
ARENA_STATUSES = ("active", "retired", "candidate")  # versions worth comparing
# The generation task's time limit (training/tasks.py): a battle still generating after it
# was lost with its worker and no longer counts against its annotator's limit.
GENERATION_TIME_LIMIT = timedelta(minutes=15)
# When to try again while the user's battles are generating (a battle takes seconds).
BUSY_RETRY_SECONDS = 10


class ArenaLimited(Exception):
    """A battle start beyond the user's arena limits (settings HONE_ARENA_MAX_GENERATING and
    HONE_ARENA_BATTLES_PER_HOUR); `retry_after`: seconds until a start can succeed."""

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _arena_limits_check(*, user: AbstractBaseUser) -> None:
    """Raise ArenaLimited if the user may not start a battle now. Call inside the
    transaction that creates the battle: the user's row lock makes two starts at once count
    one after the other."""
    get_user_model().objects.select_for_update().filter(pk=user.pk).first()
    now = timezone.now()
    mine = ArenaBattle.objects.filter(annotator=user)
    most = settings.HONE_ARENA_MAX_GENERATING
    generating = mine.filter(
        status=ArenaBattle.Status.GENERATING, created_at__gt=now - GENERATION_TIME_LIMIT
    ).count()
    if generating >= most:
        raise ArenaLimited(
            f"You have {_plural(generating, 'arena battle')} still generating, the most the "
            "arena runs at once for one person; send this prompt again when one is answered.",
            retry_after=BUSY_RETRY_SECONDS,
        )
    per_hour = settings.HONE_ARENA_BATTLES_PER_HOUR
    hour = timedelta(hours=1)
    started = list(
        mine.filter(created_at__gt=now - hour)
        .order_by("-created_at")
        .values_list("created_at", flat=True)[:per_hour]
    )
    if len(started) >= per_hour:
        # A start is free again when the oldest of the last `per_hour` leaves the hour.
        seconds = max(1, math.ceil((started[-1] + hour - now).total_seconds()))
        raise ArenaLimited(
            f"You started {_plural(per_hour, 'arena battle')} in the last hour, the most the "
            "arena takes from one person; try again in "
            f"{_plural(math.ceil(seconds / 60), 'minute')}.",
            retry_after=seconds,
        )


def arena_event(*, battle: ArenaBattle, event: str, data: dict[str, Any]) -> None:
    """Send to the annotator's arena socket after the current transaction commits."""
    message = {"type": "arena.event", "event": event, "data": {"battle": battle.pk, **data}}
    group = arena_group(battle.project_id, battle.annotator_id)

    def send() -> None:
        layer = get_channel_layer()
        if layer is None:
            return
        try:
            async_to_sync(layer.group_send)(group, message)
        except Exception:  # a lost stream message never breaks generation
            logger.exception("Could not send %s for arena battle %s", event, battle.pk)

    transaction.on_commit(send)


def arena_battle_start(*, user: AbstractBaseUser, project: Project, text: str) -> ArenaBattle:
    """Store the prompt, draw two different versions, and queue the generation. Beyond the
    user's limits (at most HONE_ARENA_MAX_GENERATING battles generating, and
    HONE_ARENA_BATTLES_PER_HOUR started an hour) raises ArenaLimited and stores nothing."""
    from training.tasks import arena_generate_task  # tasks import services

    text = text.strip()
    if not text:
        raise ValidationError({"prompt": "Type a prompt first."})
    if len(text) > MAX_PROMPT_CHARS:
        raise ValidationError(
            {"prompt": f"The prompt has {len(text)} characters; the limit is {MAX_PROMPT_CHARS}."}
        )
    versions = list(
        PolicyVersion.objects.filter(project=project, status__in=ARENA_STATUSES).order_by("number")
    )
    if len(versions) < 2:
        raise ValidationError(
            "The arena needs two policy versions; this project has "
            f"{len(versions)} so far. Run an iteration of the loop first."
        )
    policy_a, policy_b = random.sample(versions, 2)
    with transaction.atomic():
        _arena_limits_check(user=user)
        prompt = Prompt.objects.create(
            project=project,
            messages=[{"role": "user", "content": text}],
            split=Prompt.Split.ARENA,
            source="arena",
        )
        battle = ArenaBattle.objects.create(
            project=project,
            annotator=user,
            prompt=prompt,
            policy_a=policy_a,
            policy_b=policy_b,
            a_shown_left=random.random() < 0.5,
        )
        transaction.on_commit(lambda: arena_generate_task.delay(battle.pk))
    return battle


def arena_side_position(battle: ArenaBattle, side: str) -> str:
    """Where completion `side` ("a" or "b") is shown: "left" or "right"."""
    return "left" if (side == "a") == battle.a_shown_left else "right"


def arena_record_answer(
    *, battle_id: int, side: str, text: str, token_count: int, finish_reason: str
) -> ArenaBattle | None:
    """Store one finished answer (called by the worker); None if the battle is gone."""
    if side not in ("a", "b"):
        raise ValidationError({"side": f"Side must be 'a' or 'b', got {side!r}."})
    with transaction.atomic():
        battle = (
            ArenaBattle.objects.select_for_update()
            .select_related("project", "prompt")
            .filter(pk=battle_id)
            .first()
        )
        if battle is None:
            return None
        if getattr(battle, f"completion_{side}_id") is not None:
            return battle  # a retried task: the answer is stored already
        project = battle.project
        completion = Completion.objects.create(
            prompt=battle.prompt,
            policy_version=getattr(battle, f"policy_{side}"),
            text=storable_text(text),
            token_count=token_count,
            finish_reason=finish_reason,
            sampling={
                "temperature": project.temperature,
                "top_p": project.top_p,
                "max_new_tokens": project.max_new_tokens,
                "arena": True,
            },
        )
        setattr(battle, f"completion_{side}", completion)
        fields = [f"completion_{side}"]
        if battle.completion_a_id and battle.completion_b_id:
            battle.status = ArenaBattle.Status.DONE
            fields.append("status")
        battle.save(update_fields=fields)
        arena_event(
            battle=battle,
            event="arena_answer",
            data={
                "side": arena_side_position(battle, side),
                "html": markdown_to_html(storable_text(text)),
                "finish_reason": finish_reason,
            },
        )
        _arena_finalize(battle)
    return battle


def arena_fail(*, battle_id: int, error: str) -> None:
    with transaction.atomic():
        battle = ArenaBattle.objects.select_for_update().filter(pk=battle_id).first()
        if battle is None or battle.status == ArenaBattle.Status.DONE:
            return
        battle.status = ArenaBattle.Status.FAILED
        battle.error = error[-4000:]
        battle.save(update_fields=["status", "error"])
        arena_event(battle=battle, event="arena_failed", data={"error": "Generation failed."})


def arena_vote(
    *,
    user: AbstractBaseUser,
    project: Project,
    battle_id: int,
    choice: str,
    strength: int = PreferenceLabel.Strength.CLEAR,
    time_to_vote_ms: int = 0,
) -> ArenaBattle:
    """Record the vote (answers may still be streaming). Voting twice keeps the first vote."""
    vote_check(choice=choice, strength=strength)
    if time_to_vote_ms < 0:
        raise ValidationError({"time_to_vote_ms": "Time cannot be negative."})
    with transaction.atomic():
        battle = (
            ArenaBattle.objects.select_for_update()
            .filter(pk=battle_id, project=project, annotator=user)
            .first()
        )
        if battle is None:
            raise ValidationError({"battle": "No such arena battle of yours."}, code="not_found")
        if battle.voted_at is not None:
            return battle
        if battle.status == ArenaBattle.Status.FAILED:
            raise ValidationError({"battle": "This battle failed; start a new one."})
        battle.choice = choice
        battle.strength = strength
        battle.voted_at = timezone.now()
        battle.time_to_vote_ms = time_to_vote_ms
        battle.save(update_fields=["choice", "strength", "voted_at", "time_to_vote_ms"])
        _arena_finalize(battle)
    return battle


def _arena_finalize(battle: ArenaBattle) -> None:
    """Once voted and both answers are stored: an arena comparison with its one label.

    Call with the battle row locked (select_for_update) inside a transaction.
    """
    if battle.voted_at is None or battle.comparison_id is not None:
        return
    if battle.completion_a_id is None or battle.completion_b_id is None:
        return
    comparison = Comparison.objects.create(
        project_id=battle.project_id,
        prompt_id=battle.prompt_id,
        completion_a_id=battle.completion_a_id,
        completion_b_id=battle.completion_b_id,
        kind=Comparison.Kind.ARENA,
        required_labels=1,
        status=Comparison.Status.COMPLETE,
    )
    label = PreferenceLabel(
        comparison=comparison,
        annotator_id=battle.annotator_id,
        choice=battle.choice,
        strength=battle.strength,
        time_spent_ms=battle.time_to_vote_ms,
        a_shown_left=battle.a_shown_left,
    )
    label.full_clean(validate_unique=False)
    label.save()
    LabelAudit.objects.create(
        label=label,
        actor_id=battle.annotator_id,
        action="created",
        before=None,
        after={"choice": label.choice, "strength": label.strength, "arena_battle": battle.pk},
    )
    battle.comparison = comparison
    battle.save(update_fields=["comparison"])
