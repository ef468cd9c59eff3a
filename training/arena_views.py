"""The arena's pages: an annotator's own prompt, two anonymous policy versions, one vote."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET, require_POST

from feedback.http import error_messages, int_or, json_body
from feedback.models import PreferenceLabel
from feedback.selectors import arena_battle_for_user, project_for_member
from training.services.arena import ArenaLimited, arena_battle_start, arena_vote


@login_required
@require_GET
def arena_page(request: HttpRequest, slug: str) -> HttpResponse:
    project = project_for_member(user=request.user, slug=slug)
    context = {
        "project": project,
        "arena_page": True,
        "max_generating": settings.HONE_ARENA_MAX_GENERATING,
        "battles_per_hour": settings.HONE_ARENA_BATTLES_PER_HOUR,
    }
    return render(request, "training/arena.html", context)


@login_required
@require_POST
def arena_start_view(request: HttpRequest, slug: str) -> JsonResponse:
    project = project_for_member(user=request.user, slug=slug)
    try:
        body = json_body(request)
        battle = arena_battle_start(
            user=request.user, project=project, text=str(body.get("prompt", ""))
        )
    except ValidationError as error:
        return JsonResponse({"errors": error_messages(error)}, status=400)
    except ArenaLimited as limited:
        body = {"errors": [limited.message], "retry_after": limited.retry_after}
        response = JsonResponse(body, status=429)
        response["Retry-After"] = str(limited.retry_after)
        return response
    return JsonResponse({"battle": battle.pk}, status=201)


@login_required
@require_POST
def arena_vote_view(request: HttpRequest, slug: str, battle_id: int) -> JsonResponse:
    """Record the vote; the answer names the two versions (revealed only after voting)."""
    project = project_for_member(user=request.user, slug=slug)
    battle = arena_battle_for_user(user=request.user, project=project, battle_id=battle_id)
    try:
        body = json_body(request)
        # The page knows positions only; which completion sat left is the server's secret.
        position = str(body.get("choice", ""))
        left, right = ("a", "b") if battle.a_shown_left else ("b", "a")
        battle = arena_vote(
            user=request.user,
            project=project,
            battle_id=battle_id,
            choice={"left": left, "right": right}.get(position, position),
            strength=int_or(str(body.get("strength", "")), PreferenceLabel.Strength.CLEAR),
            time_to_vote_ms=max(0, int_or(str(body.get("time_to_vote_ms", "")))),
        )
    except ValidationError as error:
        return JsonResponse({"errors": error_messages(error)}, status=400)
    battle = arena_battle_for_user(user=request.user, project=project, battle_id=battle.pk)
    left, right = (
        (battle.policy_a, battle.policy_b)
        if battle.a_shown_left
        else (battle.policy_b, battle.policy_a)
    )
    return JsonResponse(
        {
            "battle": battle.pk,
            "choice": battle.choice,
            "left": f"v{left.number}",
            "right": f"v{right.number}",
        }
    )
