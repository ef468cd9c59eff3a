"""Pages of the annotator workspace: home, labeling (with edits of an answer) and writing
answers (htmx partials)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from feedback.http import error_messages, int_or
from feedback.models import (
    MAX_DEMONSTRATION_CHARS,
    MAX_FLAG_NOTE_CHARS,
    MAX_RATIONALE_CHARS,
    Assignment,
    ComparisonFlag,
    PreferenceLabel,
    Project,
)
from feedback.selectors import (
    annotator_progress,
    assignment_for_display,
    home_overview,
    label_undoable,
    loop_waiting_phrase,
    project_for_member,
    prompt_to_write,
)
from feedback.services import (
    MAX_TIME_SPENT_MS,
    SKIP_REASONS,
    assignment_next,
    assignment_skip,
    comparison_flag,
    demonstration_edit,
    demonstration_write,
    label_submit,
    label_undo,
)


def _time_spent(request: HttpRequest) -> int:
    """The page's own measure of time on the item; a broken clock never costs a label."""
    return min(MAX_TIME_SPENT_MS, max(0, int_or(request.POST.get("time_spent_ms"))))


def _label_fields(request: HttpRequest) -> dict[str, Any]:
    """label_submit's input from the labeling form; a strength that is not a whole number is
    refused, not read as the default."""
    strength = request.POST.get("strength", "")
    try:
        strength = int(strength) if strength else PreferenceLabel.Strength.CLEAR
    except ValueError:
        raise ValidationError(
            {"strength": f"Strength must be one of {PreferenceLabel.Strength.values}."}
        ) from None
    return {
        "assignment_id": int_or(request.POST.get("assignment_id")),
        "choice": request.POST.get("choice", ""),
        "strength": strength,
        "rationale": request.POST.get("rationale", ""),
        "time_spent_ms": _time_spent(request),
    }


def _label_or_edit(request: HttpRequest) -> str:
    """Store the label the form sends, with the annotator's edit of an answer when the form
    carries one (the editor open: `edit_side` and `edit_text`); says what was done. A plain
    label costs nothing more than before: the edit is read from the form, not the database."""
    fields = _label_fields(request)
    side = request.POST.get("edit_side", "")
    if not side:
        label_submit(user=request.user, **fields)
        return "Saved."
    demonstration_edit(
        user=request.user, side=side, text=request.POST.get("edit_text", ""), **fields
    )
    return "Saved, with your edit."


@login_required
def home(request: HttpRequest) -> HttpResponse:
    return render(request, "feedback/home.html", {"overview": home_overview(user=request.user)})


def _item_context(
    request: HttpRequest, project: Project, assignment: Assignment | None, **extra: Any
) -> dict[str, Any]:
    context: dict[str, Any] = {
        "project": project,
        "progress": annotator_progress(project=project, user=request.user),
        "undoable": label_undoable(user=request.user, project=project),
        "strengths": PreferenceLabel.Strength.choices,
        "skip_reasons": SKIP_REASONS.items(),
        "flag_reasons": ComparisonFlag.Reason.choices,
        "rationale_max": MAX_RATIONALE_CHARS,
        "note_max": MAX_FLAG_NOTE_CHARS,
        "demonstration_max": MAX_DEMONSTRATION_CHARS,
        **extra,
    }
    if assignment is None:
        context["loop_waiting"] = loop_waiting_phrase(project=project)
    else:
        assignment = assignment_for_display(user=request.user, assignment_id=assignment.pk)
        comparison = assignment.comparison
        a = ("a", comparison.completion_a.text)
        b = ("b", comparison.completion_b.text)
        context.update(
            assignment=assignment,
            comparison=comparison,
            sides=[a, b] if assignment.a_shown_left else [b, a],
        )
    return context


def _render_item(
    request: HttpRequest, project: Project, status: int = 200, **extra: Any
) -> HttpResponse:
    """The next item for the annotator (their current lease first), as an htmx partial."""
    assignment = assignment_next(project=project, user=request.user)
    context = _item_context(request, project, assignment, **extra)
    return render(request, "feedback/_item.html", context, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def label_page(request: HttpRequest, slug: str) -> HttpResponse:
    """The labeling page. A plain POST (no JavaScript) submits a label and redirects; one the
    label is refused for answers 400 with the page, why, and what was typed."""
    project = project_for_member(user=request.user, slug=slug)
    status, extra = 200, {}
    if request.method == "POST":
        try:
            _label_or_edit(request)
        except ValidationError as error:
            for message in error_messages(error):
                messages.error(request, message)
            status, extra = 400, {"posted": request.POST}
        else:
            return redirect("feedback:label", slug=slug)

    assignment = assignment_next(project=project, user=request.user)
    context = _item_context(request, project, assignment, **extra)
    return render(request, "feedback/label.html", context, status=status)


@login_required
@require_GET
def label_item(request: HttpRequest, slug: str) -> HttpResponse:
    project = project_for_member(user=request.user, slug=slug)
    return _render_item(request, project)


def _act(
    request: HttpRequest, project: Project, write: Callable[[], Any], done: str, **on_error: Any
) -> HttpResponse:
    """Run one labeling write; answer with the item page: what was done, or (400) what was
    wrong (htmx swaps a 400 in too: the htmx-config of templates/base.html)."""
    try:
        write()
    except ValidationError as error:
        errors = error_messages(error)
        return _render_item(request, project, status=400, errors=errors, **on_error)
    return _render_item(request, project, just_done=done)


@login_required
@require_POST
def label_submit_view(request: HttpRequest, slug: str) -> HttpResponse:
    """Submit and answer with the next item. A repeated submit (lost connection, retry)
    returns the stored label and the next item: never a second label."""
    project = project_for_member(user=request.user, slug=slug)
    try:
        done = _label_or_edit(request)
    except ValidationError as error:
        errors = error_messages(error)
        return _render_item(request, project, status=400, errors=errors, posted=request.POST)
    return _render_item(request, project, just_done=done)


@login_required
@require_POST
def label_skip_view(request: HttpRequest, slug: str) -> HttpResponse:
    project = project_for_member(user=request.user, slug=slug)
    reason = SKIP_REASONS.get(request.POST.get("reason", ""), "")
    note = request.POST.get("note", "").strip()
    return _act(
        request,
        project,
        lambda: assignment_skip(
            user=request.user,
            assignment_id=int_or(request.POST.get("assignment_id")),
            reason=f"{reason}: {note}" if note and reason else (reason or note),
        ),
        "Skipped.",
    )


@login_required
@require_POST
def label_flag_view(request: HttpRequest, slug: str) -> HttpResponse:
    project = project_for_member(user=request.user, slug=slug)
    return _act(
        request,
        project,
        lambda: comparison_flag(
            user=request.user,
            assignment_id=int_or(request.POST.get("assignment_id")),
            reason=request.POST.get("reason", ""),
            note=request.POST.get("note", ""),
        ),
        "Flagged for review.",
    )


@login_required
@require_POST
def label_undo_view(request: HttpRequest, slug: str) -> HttpResponse:
    project = project_for_member(user=request.user, slug=slug)
    return _act(
        request,
        project,
        lambda: label_undo(user=request.user, project=project),
        "Label withdrawn: label this item again.",
    )


# --- Writing answers (demonstrations) ---------------------------------------------------------


def _write_context(request: HttpRequest, project: Project, **extra: Any) -> dict[str, Any]:
    """The next prompt the annotator should answer (or the one they were answering, when
    their answer was refused and comes back with why)."""
    prompt, waiting = prompt_to_write(project=project, user=request.user)
    posted = extra.get("posted")
    if posted is not None:  # the same prompt again, with what they wrote
        prompt_id = int_or(posted.get("prompt_id"))
        kept = project.prompts.filter(pk=prompt_id).first() if 0 < prompt_id < 2**63 else None
        prompt = kept or prompt
    return {
        "project": project,
        "prompt": prompt,
        "waiting": waiting,
        "demonstration_max": MAX_DEMONSTRATION_CHARS,
        **extra,
    }


def _write_fields(request: HttpRequest) -> dict[str, Any]:
    return {
        "prompt_id": int_or(request.POST.get("prompt_id")),
        "text": request.POST.get("text", ""),
        "time_spent_ms": _time_spent(request),
    }


@login_required
@require_http_methods(["GET", "POST"])
def write_page(request: HttpRequest, slug: str) -> HttpResponse:
    """The workspace in write mode (the `w` key swaps the same partial in). A plain POST (no
    JavaScript) stores the answer and redirects; a refused one answers 400 with why and what
    was typed."""
    project = project_for_member(user=request.user, slug=slug)
    status, extra = 200, {}
    if request.method == "POST":
        try:
            demonstration_write(user=request.user, project=project, **_write_fields(request))
        except ValidationError as error:
            for message in error_messages(error):
                messages.error(request, message)
            status, extra = 400, {"posted": request.POST}
        else:
            return redirect("feedback:write", slug=slug)
    context = {**_write_context(request, project, **extra), "mode": "write"}
    return render(request, "feedback/label.html", context, status=status)


@login_required
@require_GET
def write_item(request: HttpRequest, slug: str) -> HttpResponse:
    project = project_for_member(user=request.user, slug=slug)
    return render(request, "feedback/_write.html", _write_context(request, project))


@login_required
@require_POST
def write_submit_view(request: HttpRequest, slug: str) -> HttpResponse:
    """Store the answer and show the next prompt to answer. Sending it again (a lost
    connection, a retry) returns the stored answer: never a second one."""
    project = project_for_member(user=request.user, slug=slug)
    try:
        demonstration_write(user=request.user, project=project, **_write_fields(request))
    except ValidationError as error:
        context = _write_context(
            request, project, errors=error_messages(error), posted=request.POST
        )
        return render(request, "feedback/_write.html", context, status=400)
    context = _write_context(request, project, just_done="Saved.")
    return render(request, "feedback/_write.html", context)
