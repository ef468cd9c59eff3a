"""Pages of the minimal labeling path (the full annotator workspace comes on top)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from feedback.models import Assignment, PreferenceLabel
from feedback.selectors import annotator_progress, project_for_member, projects_for_user
from feedback.services import assignment_next, label_submit


@login_required
def home(request: HttpRequest) -> HttpResponse:
    return render(request, "feedback/home.html", {"projects": projects_for_user(user=request.user)})


@login_required
@require_http_methods(["GET", "POST"])
def label_page(request: HttpRequest, slug: str) -> HttpResponse:
    project = project_for_member(user=request.user, slug=slug)
    if request.method == "POST":
        try:
            label_submit(
                user=request.user,
                assignment_id=int(request.POST.get("assignment_id", 0)),
                choice=request.POST.get("choice", ""),
                strength=int(request.POST.get("strength") or PreferenceLabel.Strength.CLEAR),
                rationale=request.POST.get("rationale", ""),
                time_spent_ms=max(0, int(request.POST.get("time_spent_ms") or 0)),
            )
        except (ValidationError, ValueError) as error:
            for message in getattr(error, "messages", [str(error)]):
                messages.error(request, message)
        return redirect("feedback:label", slug=slug)

    assignment = assignment_next(project=project, user=request.user)
    context = {
        "project": project,
        "progress": annotator_progress(project=project, user=request.user),
    }
    if assignment is not None:
        assignment = Assignment.objects.select_related(
            "comparison__prompt", "comparison__completion_a", "comparison__completion_b"
        ).get(pk=assignment.pk)
        comparison = assignment.comparison
        a = ("a", comparison.completion_a.text)
        b = ("b", comparison.completion_b.text)
        context.update(
            assignment=assignment,
            comparison=comparison,
            sides=[a, b] if assignment.a_shown_left else [b, a],
            strengths=PreferenceLabel.Strength.choices,
        )
    return render(request, "feedback/label.html", context)
