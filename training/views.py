"""The loop's pages: project state, iterations, runs; buttons to start work."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from feedback.models import Membership
from feedback.selectors import project_for_member
from training import jobs, services
from training.models import PolicyVersion, TrainingRun
from training.selectors import iterations_for_project, run_metrics, runs_for_project

STAFF = (Membership.Role.ADMIN, Membership.Role.REVIEWER)


@login_required
def project_loop(request: HttpRequest, slug: str) -> HttpResponse:
    project = project_for_member(user=request.user, slug=slug, roles=STAFF)
    return render(
        request,
        "training/project.html",
        {
            "project": project,
            "iterations": iterations_for_project(project=project)[:20],
            "runs": runs_for_project(project=project)[:20],
            "policies": PolicyVersion.objects.filter(project=project).order_by("-number"),
            "is_admin": project.memberships.filter(
                user=request.user, role=Membership.Role.ADMIN
            ).exists(),
        },
    )


@login_required
@require_POST
def iteration_start(request: HttpRequest, slug: str) -> HttpResponse:
    project = project_for_member(user=request.user, slug=slug, roles=(Membership.Role.ADMIN,))
    iteration = services.iteration_start(project=project, trigger="manual")
    if iteration is None:
        messages.error(request, "An iteration is already running for this project.")
    else:
        messages.success(request, f"Iteration {iteration.number} started.")
    return redirect("training:project", slug=slug)


@login_required
@require_POST
def generation_start(request: HttpRequest, slug: str) -> HttpResponse:
    project = project_for_member(user=request.user, slug=slug, roles=(Membership.Role.ADMIN,))
    run = jobs.generation_queue(project=project)
    messages.success(request, f"Generation run {run.pk} queued.")
    return redirect("training:project", slug=slug)


@login_required
def run_detail(request: HttpRequest, slug: str, run_id: int) -> HttpResponse:
    project = project_for_member(user=request.user, slug=slug, roles=STAFF)
    run = get_object_or_404(TrainingRun, pk=run_id, project=project)
    return render(
        request,
        "training/run.html",
        {"project": project, "run": run, "metrics": run_metrics(run=run)},
    )
