"""Reads of the feedback app, always scoped to a project the user belongs to."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet
from django.http import Http404
from django.utils import timezone

from feedback.models import Comparison, Membership, PreferenceLabel, Project


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
    today = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)
    mine = PreferenceLabel.objects.filter(comparison__project=project, annotator=user)
    return {
        "done_today": mine.filter(created_at__gte=today).count(),
        "done_total": mine.count(),
        "open_in_project": Comparison.objects.filter(
            project=project, status=Comparison.Status.OPEN
        ).count(),
    }
