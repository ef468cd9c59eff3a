"""Reads of the feedback app, always scoped to a project the user belongs to."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Avg, Count, Q, QuerySet, Subquery
from django.http import Http404
from django.utils import timezone

from feedback.models import (
    Assignment,
    AuditEvent,
    Comparison,
    Demonstration,
    Membership,
    PreferenceLabel,
    Project,
    Prompt,
)


def project_for_member(
    *, user: AbstractBaseUser, slug: str, roles: tuple[str, ...] | None = None
) -> Project:
    """The project if the user is a member with one of `roles`; 404 otherwise.

    A 404 rather than a 403, so that another project's existence is not revealed.
    """
    memberships = Membership.objects.filter(user=user, project__slug=slug)
    if roles is not None:
        memberships = memberships.filter(role__in=roles)
    membership = memberships.select_related("project").first()
    if membership is None:
        raise Http404("No such project.")
    return membership.project


def projects_for_user(*, user: AbstractBaseUser) -> QuerySet[Project]:
    return Project.objects.filter(memberships__user=user).order_by("name")


def comparison_for_display(*, comparison_id: int) -> Comparison:
    return Comparison.objects.select_related("prompt", "completion_a", "completion_b").get(
        pk=comparison_id
    )


def annotator_progress(*, project: Project, user: AbstractBaseUser) -> dict[str, int]:
    """Standing labels of the annotator (today, in all) and what is left for them.

    One round trip (subqueries): this runs on every item shown, so it stays cheap however
    big the project is.
    """
    today = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)
    # Arena votes and the labels of one's own edits (Demonstration) are not items labeled.
    mine = (
        PreferenceLabel.objects.filter(
            comparison__project=project, annotator=user, withdrawn_at__isnull=True
        )
        .exclude(comparison__kind__in=[Comparison.Kind.ARENA, Comparison.Kind.EDIT])
        .values("annotator")
    )
    open_comparisons = Comparison.objects.filter(
        project=project, status=Comparison.Status.OPEN
    ).values("project")
    # Open comparisons this annotator has touched (one assignment per comparison and
    # annotator): counted over their own assignments.
    touched = Assignment.objects.filter(
        annotator=user, comparison__project=project, comparison__status=Comparison.Status.OPEN
    ).values("annotator")

    def scalar(queryset, aggregate):
        return Subquery(queryset.annotate(v=aggregate).values("v")[:1])

    row = (
        Project.objects.filter(pk=project.pk)
        .annotate(
            done_total=scalar(mine, Count("id")),
            done_today=scalar(mine.filter(created_at__gte=today), Count("id")),
            mean_ms=scalar(mine, Avg("time_spent_ms")),
            open_count=scalar(open_comparisons, Count("id")),
            touched=scalar(touched, Count("id")),
        )
        .values("done_total", "done_today", "mean_ms", "open_count", "touched")
        .get()
    )
    open_count = row["open_count"] or 0
    return {
        "done_today": row["done_today"] or 0,
        "done_total": row["done_total"] or 0,
        "mean_seconds": round((row["mean_ms"] or 0) / 1000, 1),
        "open_in_project": open_count,
        "remaining_for_me": open_count - (row["touched"] or 0),
    }


def assignment_for_display(*, user: AbstractBaseUser, assignment_id: int) -> Assignment:
    """One of the user's own assignments with everything the labeling page shows; 404 else."""
    assignment = (
        Assignment.objects.select_related(
            "comparison__prompt", "comparison__completion_a", "comparison__completion_b"
        )
        .filter(pk=assignment_id, annotator=user)
        .first()
    )
    if assignment is None:
        raise Http404("No such assignment.")
    return assignment


def label_undoable(*, user: AbstractBaseUser, project: Project) -> PreferenceLabel | None:
    """The annotator's latest label if `label_undo` would still accept it."""
    from feedback.services import UNDO_WINDOW

    return (
        PreferenceLabel.objects.filter(
            annotator=user,
            comparison__project=project,
            withdrawn_at__isnull=True,
            assignment__isnull=False,
            review_status=PreferenceLabel.ReviewStatus.UNREVIEWED,
            created_at__gte=timezone.now() - UNDO_WINDOW,
        )
        .order_by("-created_at", "-id")
        .first()
    )


def loop_waiting_phrase(*, project: Project) -> str | None:
    """What the project's loop is waiting for, as the loop answers it (feedback/signals.py,
    loop_waiting_asked); None when nobody answers."""
    from feedback.signals import loop_waiting_asked

    answers = [a for _, a in loop_waiting_asked.send(sender=Project, project=project) if a]
    return answers[0] if answers else None


def home_overview(*, user: AbstractBaseUser) -> list[dict]:
    """Per project of the user: their role, their progress and what waits for them."""
    memberships = Membership.objects.filter(user=user).select_related("project")
    return [
        {
            "project": m.project,
            "role": m.role,
            "progress": annotator_progress(project=m.project, user=user),
        }
        for m in memberships.order_by("project__name")
    ]


def arena_battle_for_user(*, user: AbstractBaseUser, project: Project, battle_id: int):
    from feedback.models import ArenaBattle

    battle = (
        ArenaBattle.objects.select_related("policy_a", "policy_b")
        .filter(pk=battle_id, project=project, annotator=user)
        .first()
    )
    if battle is None:
        raise Http404("No such arena battle.")
    return battle


def audit_events(*, project: Project, action: str = "", actor: str = "") -> QuerySet[AuditEvent]:
    """The project's audit log, newest first; `action` an AuditEvent.Action, `actor` a
    username (empty: any)."""
    events = AuditEvent.objects.filter(project=project).select_related("actor")
    if action:
        events = events.filter(action=action)
    if actor:
        events = events.filter(actor__username=actor)
    return events.order_by("-at", "-id")


def audit_actors(*, project: Project) -> list[str]:
    """The usernames of the people in the project's audit log, for a filter."""
    from django.contrib.auth import get_user_model

    return list(
        get_user_model()
        .objects.filter(pk__in=AuditEvent.objects.filter(project=project).values("actor_id"))
        .order_by("username")
        .values_list("username", flat=True)
    )


# --- Demonstrations -------------------------------------------------------------------------


def _prompts_wanting_demonstrations(*, project: Project, user: AbstractBaseUser):
    """Train prompts with fewer standing demonstrations (not withdrawn, not rejected) than
    the project wants, that `user` has given none: the write mode's queue, fewest first."""
    standing = Q(demonstrations__withdrawn_at__isnull=True) & ~Q(
        demonstrations__review_status=Demonstration.ReviewStatus.REJECTED
    )
    given = Demonstration.objects.filter(
        project=project, author=user, withdrawn_at__isnull=True
    ).values("prompt_id")
    return (
        Prompt.objects.filter(project=project, split=Prompt.Split.TRAIN)
        .exclude(pk__in=given)
        .annotate(demonstration_count=Count("demonstrations", filter=standing))
        .filter(demonstration_count__lt=project.demonstrations_per_prompt)
    )


def prompt_to_write(*, project: Project, user: AbstractBaseUser) -> tuple[Prompt | None, int]:
    """The prompt `user` should write an answer for next (the fewest demonstrations first,
    then the oldest), and how many prompts wait for one from them; (None, 0) when the project
    takes no written demonstrations."""
    if project.demonstrations_per_prompt < 1:
        return None, 0
    wanting = _prompts_wanting_demonstrations(project=project, user=user)
    prompt = wanting.order_by("demonstration_count", "created_at", "id").first()
    return prompt, (wanting.count() if prompt is not None else 0)


def demonstrations_for_project(
    *, project: Project, user: AbstractBaseUser | None = None
) -> QuerySet[Demonstration]:
    """The project's demonstrations, oldest first; only `user`'s own when given (what an
    annotator may see)."""
    demonstrations = Demonstration.objects.filter(project=project).select_related(
        "prompt", "author", "reviewed_by", "original"
    )
    if user is not None:
        demonstrations = demonstrations.filter(author=user)
    return demonstrations.order_by("id")


def demonstration_for_review(*, project: Project, demonstration_id: int) -> Demonstration:
    """A demonstration of `project` with its prompt, original answer and audit trail; 404
    otherwise."""
    demonstration = (
        demonstrations_for_project(project=project)
        .prefetch_related("audits__actor")
        .filter(pk=demonstration_id)
        .first()
    )
    if demonstration is None:
        raise Http404("No such demonstration.")
    return demonstration
