"""Who may do what in a project: members only, and by role.

A non-member gets 404 for everything under a project (its existence never leaks); a member
whose role is not enough gets 403.
"""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.http import Http404
from rest_framework.exceptions import PermissionDenied

from feedback.models import Membership, Project

ANNOTATOR, REVIEWER, ADMIN = (
    Membership.Role.ANNOTATOR,
    Membership.Role.REVIEWER,
    Membership.Role.ADMIN,
)
MEMBERS = (ANNOTATOR, REVIEWER, ADMIN)
STAFF = (REVIEWER, ADMIN)
ADMINS = (ADMIN,)


def membership_for(*, user: AbstractBaseUser, slug: str) -> Membership:
    membership = (
        Membership.objects.select_related("project").filter(user=user, project__slug=slug).first()
        if user.is_authenticated
        else None
    )
    if membership is None:
        raise Http404("No such project.")
    return membership


def project_for(
    *, user: AbstractBaseUser, slug: str, roles: tuple[str, ...]
) -> tuple[Project, Membership]:
    membership = membership_for(user=user, slug=slug)
    if membership.role not in roles:
        raise PermissionDenied(
            f"Your role in this project ({membership.role}) cannot do this; "
            f"it needs {' or '.join(roles)}."
        )
    return membership.project, membership
