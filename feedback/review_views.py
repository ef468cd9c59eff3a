"""Pages of reviewers and admins: quality figures, the review queue, one comparison's labels,
demonstrations to review, the audit log."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from feedback.http import error_messages, int_or
from feedback.models import (
    MAX_DEMONSTRATION_CHARS,
    AuditEvent,
    Demonstration,
    Membership,
    PreferenceLabel,
)
from feedback.quality import (
    comparison_for_review,
    labels_for_review,
    majority_choice,
    project_quality,
    review_queue,
)
from feedback.rendering import text_diff
from feedback.selectors import (
    audit_actors,
    audit_events,
    demonstration_for_review,
    demonstrations_for_project,
    project_for_member,
)
from feedback.services import (
    comparison_decide,
    comparison_set_gold,
    demonstration_correct,
    demonstration_review,
    label_review,
)

REVIEW_ROLES = (Membership.Role.REVIEWER, Membership.Role.ADMIN)
AUDIT_PAGE_SIZE = 50
DEMONSTRATION_PAGE_SIZE = 50


@login_required
@require_GET
def quality_page(request: HttpRequest, slug: str) -> HttpResponse:
    project = project_for_member(user=request.user, slug=slug, roles=REVIEW_ROLES)
    quality = project_quality(project=project)
    return render(request, "feedback/quality.html", {"project": project, "quality": quality})


@login_required
@require_GET
def review_queue_page(request: HttpRequest, slug: str) -> HttpResponse:
    project = project_for_member(user=request.user, slug=slug, roles=REVIEW_ROLES)
    return render(
        request,
        "feedback/review_queue.html",
        {"project": project, "queue": review_queue(project=project)},
    )


@login_required
@require_http_methods(["GET", "POST"])
def review_comparison_page(request: HttpRequest, slug: str, comparison_id: int) -> HttpResponse:
    project = project_for_member(user=request.user, slug=slug, roles=REVIEW_ROLES)
    comparison = comparison_for_review(project=project, comparison_id=comparison_id)
    status = 200
    if request.method == "POST":
        action = request.POST.get("action", "")
        try:
            if action == "review_label":
                label = (
                    labels_for_review(comparison=comparison)
                    .filter(pk=int_or(request.POST.get("label_id")))
                    .first()
                )
                if label is None:
                    raise ValidationError({"label_id": "No such label on this comparison."})
                label_review(
                    reviewer=request.user,
                    label_id=label.pk,
                    decision=request.POST.get("decision", ""),
                )
            elif action == "final_choice":
                comparison_decide(
                    reviewer=request.user,
                    comparison_id=comparison.pk,
                    choice=request.POST.get("choice", ""),
                )
            elif action == "gold":
                project_for_member(user=request.user, slug=slug, roles=(Membership.Role.ADMIN,))
                comparison_set_gold(
                    admin=request.user,
                    comparison_id=comparison.pk,
                    choice=request.POST.get("choice", ""),
                )
            else:
                raise ValidationError(f"Unknown action {action!r}.")
        except ValidationError as error:
            for message in error_messages(error):
                messages.error(request, message)
            status = 400  # the page again, with why
        else:
            return redirect("feedback:review-comparison", slug=slug, comparison_id=comparison.pk)

    is_admin = Membership.objects.filter(
        user=request.user, project=project, role=Membership.Role.ADMIN
    ).exists()
    return render(
        request,
        "feedback/review_comparison.html",
        {
            "project": project,
            "comparison": comparison,
            "labels": labels_for_review(comparison=comparison),
            "majority": majority_choice(comparison=comparison),
            "choices": PreferenceLabel.Choice.choices,
            "review_statuses": PreferenceLabel.ReviewStatus.choices,
            "audits": comparison.audits.select_related("actor").order_by("at", "id"),
            "is_admin": is_admin,
        },
        status=status,
    )


@login_required
@require_GET
def audit_page(request: HttpRequest, slug: str) -> HttpResponse:
    """The project's audit log (admins): newest first, by action and by person."""
    project = project_for_member(user=request.user, slug=slug, roles=(Membership.Role.ADMIN,))
    action = request.GET.get("action", "")
    actor = request.GET.get("actor", "")
    if action and action not in AuditEvent.Action.values:
        return HttpResponseBadRequest(f"Unknown action {action!r}.")
    events = audit_events(project=project, action=action, actor=actor)
    page = Paginator(events, AUDIT_PAGE_SIZE).get_page(request.GET.get("page"))
    return render(
        request,
        "feedback/audit.html",
        {
            "project": project,
            "page": page,
            "actions": AuditEvent.Action.choices,
            "actors": audit_actors(project=project),
            "action": action,
            "actor": actor,
        },
    )


@login_required
@require_GET
def demonstration_queue_page(request: HttpRequest, slug: str) -> HttpResponse:
    """Demonstrations by review status (unreviewed first by default) and origin, oldest first."""
    project = project_for_member(user=request.user, slug=slug, roles=REVIEW_ROLES)
    status = request.GET.get("status", Demonstration.ReviewStatus.UNREVIEWED)
    origin = request.GET.get("origin", "")
    if status and status not in Demonstration.ReviewStatus.values:
        return HttpResponseBadRequest(f"Unknown review status {status!r}.")
    if origin and origin not in Demonstration.Origin.values:
        return HttpResponseBadRequest(f"Unknown origin {origin!r}.")
    demonstrations = demonstrations_for_project(project=project).filter(withdrawn_at__isnull=True)
    if status:
        demonstrations = demonstrations.filter(review_status=status)
    if origin:
        demonstrations = demonstrations.filter(origin=origin)
    page = Paginator(demonstrations, DEMONSTRATION_PAGE_SIZE).get_page(request.GET.get("page"))
    return render(
        request,
        "feedback/review_demonstrations.html",
        {
            "project": project,
            "page": page,
            "status": status,
            "origin": origin,
            "statuses": Demonstration.ReviewStatus.choices,
            "origins": Demonstration.Origin.choices,
        },
    )


@login_required
@require_http_methods(["GET", "POST"])
def review_demonstration_page(
    request: HttpRequest, slug: str, demonstration_id: int
) -> HttpResponse:
    """One demonstration: its prompt, what an edit changed (a diff against the answer it
    edits), accept, reject or correct it, and its audit trail with what each change did."""
    project = project_for_member(user=request.user, slug=slug, roles=REVIEW_ROLES)
    demonstration = demonstration_for_review(project=project, demonstration_id=demonstration_id)
    status, correction = 200, None
    if request.method == "POST":
        action = request.POST.get("action", "")
        try:
            if action == "review":
                demonstration_review(
                    reviewer=request.user,
                    demonstration_id=demonstration.pk,
                    decision=request.POST.get("decision", ""),
                )
            elif action == "correct":
                correction = request.POST.get("text", "")
                demonstration_correct(
                    reviewer=request.user, demonstration_id=demonstration.pk, text=correction
                )
            else:
                raise ValidationError(f"Unknown action {action!r}.")
        except ValidationError as error:
            for message in error_messages(error):
                messages.error(request, message)
            status = 400  # the page again, with why and what was typed
        else:
            return redirect(
                "feedback:review-demonstration", slug=slug, demonstration_id=demonstration.pk
            )
    original = demonstration.original.text if demonstration.original_id else None
    trail = [
        {
            "audit": audit,
            "diff": text_diff(audit.before["text"], audit.after["text"])
            if audit.before and audit.after and audit.before.get("text") != audit.after.get("text")
            else None,
        }
        for audit in sorted(demonstration.audits.all(), key=lambda a: (a.at, a.pk))
    ]
    return render(
        request,
        "feedback/review_demonstration.html",
        {
            "project": project,
            "demonstration": demonstration,
            "original": original,
            "diff": text_diff(original, demonstration.text) if original is not None else None,
            "trail": trail,
            "correction": demonstration.text if correction is None else correction,
            "demonstration_max": MAX_DEMONSTRATION_CHARS,
        },
        status=status,
    )
