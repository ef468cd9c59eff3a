"""The data page: import prompts and labels (admins) and export datasets (reviewers, admins).

The page is thin: uploads go to the API (api/data.py) from the browser, with the session's
CSRF token, so the UI, the API and the command line share one import path.
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from feedback.models import Membership, Prompt
from feedback.selectors import project_for_member
from training.models import DatasetSnapshot


@login_required
def data_page(request: HttpRequest, slug: str) -> HttpResponse:
    project = project_for_member(
        user=request.user, slug=slug, roles=(Membership.Role.ADMIN, Membership.Role.REVIEWER)
    )
    is_admin = project.memberships.filter(user=request.user, role=Membership.Role.ADMIN).exists()
    return render(
        request,
        "training/data.html",
        {
            "project": project,
            "is_admin": is_admin,
            "prompt_count": Prompt.objects.filter(project=project).count(),
            "snapshots": DatasetSnapshot.objects.filter(project=project).order_by("-id")[:10],
        },
    )
