"""The loop's pages: project state, iterations, runs; buttons to start work."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from feedback.models import Membership
from feedback.selectors import project_for_member
from feedback.services import project_gates_set, project_training_set
from training import jobs, services
from training.forms import ProjectGatesForm, ProjectTrainingForm
from training.health import agreement_series, heldout_report, reward_model_health
from training.leaderboard import leaderboard
from training.models import LoopIteration, PolicyVersion, TrainingRun
from training.run_report import key_value_rows, run_curves
from training.selectors import (
    iteration_series,
    iterations_for_project,
    loop_waiting_for,
    run_metrics,
    runs_for_project,
    sft_versions_for_project,
)

STAFF = (Membership.Role.ADMIN, Membership.Role.REVIEWER)
# Offered on the loop page to a project with enough annotators to judge candidates
# (docs/judgement.md, "Safe by default").
HUMAN_GATE_RECOMMENDED = {"annotators": 3, "min_win_rate": 0.5, "labels": 30}


@login_required
def project_loop(request: HttpRequest, slug: str) -> HttpResponse:
    project = project_for_member(user=request.user, slug=slug, roles=STAFF)
    health = reward_model_health(project=project)
    return render(
        request,
        "training/project.html",
        {
            "project": project,
            "iterations": iterations_for_project(project=project)[:20],
            "waiting": loop_waiting_for(project=project),
            "runs": runs_for_project(project=project)[:20],
            "policies": PolicyVersion.objects.filter(project=project)
            .select_related(
                "reward_model__snapshot",
                "parent",
                "training_run__iteration__snapshot",
                "sft__snapshot",
            )
            .order_by("-number"),
            "sft_versions": sft_versions_for_project(project=project),
            "sft_summary": sft_summary(project),
            "leaderboard": _leaderboard_plot(leaderboard(project=project)),
            "series": iteration_series(project=project),
            "health": health,
            "health_series": agreement_series(health),
            "schedule": services.loop_schedule(project=project),
            "gates_form": ProjectGatesForm(instance=project),
            "training_form": ProjectTrainingForm(instance=project),
            "annotators": project.memberships.filter(role=Membership.Role.ANNOTATOR).count(),
            "human_gate_recommended": HUMAN_GATE_RECOMMENDED,
            "is_admin": project.memberships.filter(
                user=request.user, role=Membership.Role.ADMIN
            ).exists(),
        },
    )


def sft_summary(project) -> str:
    """The SFT stage in words, as the loop page and its Training form's message say it."""
    if project.sft_min_demonstrations is None:
        return "No SFT stage"
    return (
        f"SFT first when {project.sft_min_demonstrations} accepted demonstrations are new to "
        "the latest SFT version"
    )


def _leaderboard_plot(rows: list) -> dict:
    """Rows plus the x positions (0-100) of each rating and its interval, for an SVG plot."""
    rated = [r for r in rows if r.rating is not None]
    if not rated:
        return {"rows": rows, "points": []}
    lo = min(r.low for r in rated) - 20
    hi = max(r.high for r in rated) + 20

    def x(value: float) -> float:
        return round(5 + 90 * (value - lo) / (hi - lo), 2)

    points = [
        {"row": r, "x": x(r.rating), "x_low": x(r.low), "x_high": x(r.high), "y": 20 + 28 * i}
        for i, r in enumerate(rated)
    ]
    return {
        "rows": rows,
        "points": points,
        "height": 28 * len(rated) + 30,
        "axis": [(x(v), round(v)) for v in (lo + 20, (lo + hi) / 2, hi - 20)],
    }


def _admin_action(request: HttpRequest, slug: str, action) -> HttpResponse:
    """Run one admin action on the project's loop and report the outcome as a message."""
    project = project_for_member(user=request.user, slug=slug, roles=(Membership.Role.ADMIN,))
    try:
        messages.success(request, action(project))
    except ValidationError as error:
        for message in error.messages:
            messages.error(request, message)
    return redirect("training:project", slug=slug)


@login_required
@require_POST
def iteration_action(request: HttpRequest, slug: str, number: int, action: str) -> HttpResponse:
    if action not in ("cancel", "approve", "reject"):
        raise Http404("Unknown action.")

    def act(project) -> str:
        iteration = get_object_or_404(LoopIteration, project=project, number=number)
        if action == "cancel":
            services.iteration_cancel(iteration=iteration, actor=request.user)
        elif action == "approve":
            try:
                services.iteration_approve(iteration=iteration, actor=request.user)
            except services.IterationMoved as error:
                raise ValidationError(str(error)) from None
        else:
            services.iteration_decline(
                iteration=iteration, reason="Rejected by an admin.", actor=request.user
            )
        return f"Iteration {number}: {action} done."

    return _admin_action(request, slug, act)


@login_required
@require_POST
def policy_rollback(request: HttpRequest, slug: str, number: int) -> HttpResponse:
    def act(project) -> str:
        policy = get_object_or_404(PolicyVersion, project=project, number=number)
        services.policy_rollback(policy=policy, actor=request.user)
        return f"v{number} is active again."

    return _admin_action(request, slug, act)


@login_required
@require_POST
def run_cancel(request: HttpRequest, slug: str, run_id: int) -> HttpResponse:
    def act(project) -> str:
        run = get_object_or_404(TrainingRun, project=project, pk=run_id)
        services.run_cancel(run=run, actor=request.user)
        return f"Run {run_id} will stop at its next step."

    return _admin_action(request, slug, act)


@login_required
@require_POST
def schedule_set(request: HttpRequest, slug: str) -> HttpResponse:
    def act(project) -> str:
        cron = request.POST.get("cron", "")
        services.loop_schedule_set(project=project, cron=cron, actor=request.user)
        return f"Schedule set to {cron!r}." if cron.strip() else "Schedule removed."

    return _admin_action(request, slug, act)


def _cleaned(form: forms.ModelForm) -> dict:
    """The form's values, or a ValidationError naming each bad field by its label."""
    if not form.is_valid():
        raise ValidationError(
            [
                f"{form.fields[name].label}: {' '.join(errors)}"
                for name, errors in form.errors.items()
            ]
        )
    return form.cleaned_data


@login_required
@require_POST
def gates_set(request: HttpRequest, slug: str) -> HttpResponse:
    def act(project) -> str:
        form = ProjectGatesForm(request.POST, instance=project)
        project_gates_set(project=project, actor=request.user, **_cleaned(form))
        return "Gates saved."

    return _admin_action(request, slug, act)


@login_required
@require_POST
def training_set(request: HttpRequest, slug: str) -> HttpResponse:
    def act(project) -> str:
        form = ProjectTrainingForm(request.POST, instance=project)
        project = project_training_set(project=project, actor=request.user, **_cleaned(form))
        return (
            f"Training saved: {project.get_optimizer_display()}, "
            f"each candidate from {project.get_restart_from_display().lower()}, "
            f"reward models {'with' if project.reward_length_control else 'without'} "
            f"length control. {sft_summary(project)}."
        )

    return _admin_action(request, slug, act)


@login_required
@require_POST
def iteration_start(request: HttpRequest, slug: str) -> HttpResponse:
    project = project_for_member(user=request.user, slug=slug, roles=(Membership.Role.ADMIN,))
    iteration = services.iteration_start(project=project, trigger="manual", actor=request.user)
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
    rows = [{"step": m.step, **m.values} for m in run_metrics(run=run)]
    reward = run.kind == TrainingRun.Kind.REWARD and bool(run.summary)
    return render(
        request,
        "training/run.html",
        {
            "project": project,
            "run": run,
            "heldout": heldout_report(run.summary) if reward else None,
            "metrics_data": rows,
            "curves": run_curves(kind=run.kind, rows=rows),
            "config_rows": key_value_rows(run.config),
            "summary_rows": key_value_rows(run.summary),
            "is_admin": project.memberships.filter(
                user=request.user, role=Membership.Role.ADMIN
            ).exists(),
        },
    )
