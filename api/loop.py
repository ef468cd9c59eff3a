"""The loop: training runs, iterations, policy versions, SFT versions, the leaderboard, reward
models."""

from __future__ import annotations

import dataclasses

from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import Http404
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import generics, status
from rest_framework.response import Response

from api.base import ProjectScopedView, conflict
from api.serializers import (
    IterationSerializer,
    LeaderboardSerializer,
    LoopStateSerializer,
    PolicySerializer,
    RewardModelSerializer,
    RunCreateSerializer,
    RunFilterSerializer,
    RunMetricSerializer,
    RunSerializer,
    SFTVersionSerializer,
)
from training import jobs, services
from training.health import reward_model_health
from training.models import LoopIteration, PolicyVersion, RunMetric, SFTVersion, TrainingRun
from training.selectors import (
    LOOP_WAIT_CODES,
    iterations_for_project,
    loop_waiting_for,
    run_metrics,
    runs_for_project,
    sft_versions_for_project,
)

# --- Runs -------------------------------------------------------------------------------------


@extend_schema_view(
    get=extend_schema(
        tags=["training"],
        summary="Training runs, newest first (reviewer, admin)",
        parameters=[RunFilterSerializer],
    ),
    post=extend_schema(
        tags=["training"],
        summary="Queue a generation run on a GPU worker (admin)",
        request=RunCreateSerializer,
        responses={202: RunSerializer},
    ),
)
class RunListApi(ProjectScopedView, generics.ListAPIView):
    serializer_class = RunSerializer

    def get_queryset(self) -> QuerySet[TrainingRun]:
        if self.is_schema:
            return TrainingRun.objects.none()
        filters = self.query(RunFilterSerializer)
        return (
            runs_for_project(project=self.get_project())
            .filter(**filters)
            .select_related("iteration")
            .order_by("-queued_at", "-id")
        )

    def post(self, request, slug: str) -> Response:
        project = self.get_project()
        RunCreateSerializer(data=request.data).is_valid(raise_exception=True)
        run = jobs.generation_queue(project=project)
        return Response(RunSerializer(run).data, status=status.HTTP_202_ACCEPTED)


def _runs(view: ProjectScopedView) -> QuerySet[TrainingRun]:
    return TrainingRun.objects.filter(project=view.get_project()).select_related("iteration")


@extend_schema(tags=["training"], summary="One run: status, summary, log tail (reviewer, admin)")
class RunDetailApi(ProjectScopedView, generics.RetrieveAPIView):
    serializer_class = RunSerializer

    def get_queryset(self) -> QuerySet[TrainingRun]:
        return TrainingRun.objects.none() if self.is_schema else _runs(self)


@extend_schema(
    tags=["training"],
    summary="Ask a queued or running run to stop (admin)",
    description="Sets cancel_requested; a queued run stops before it starts, a running one at "
    "its next step (status becomes cancelled then). A run of an iteration cancels the "
    "iteration.",
    request=None,
    responses={200: RunSerializer},
)
class RunCancelApi(ProjectScopedView):
    serializer_class = RunSerializer

    def post(self, request, slug: str, pk: int) -> Response:
        run = generics.get_object_or_404(_runs(self), pk=pk)
        try:
            run = services.run_cancel(run=run, actor=request.user)
        except ValidationError as error:
            return conflict(error)
        return Response(RunSerializer(run).data)


@extend_schema(tags=["training"], summary="A run's metrics, step by step (reviewer, admin)")
class RunMetricsApi(ProjectScopedView, generics.ListAPIView):
    serializer_class = RunMetricSerializer

    def get_queryset(self) -> QuerySet[RunMetric]:
        if self.is_schema:
            return RunMetric.objects.none()
        run = generics.get_object_or_404(_runs(self), pk=self.kwargs["pk"])
        return run_metrics(run=run)


# --- Iterations ---------------------------------------------------------------------------------


@extend_schema_view(
    get=extend_schema(tags=["training"], summary="Loop iterations (reviewer, admin)"),
    post=extend_schema(
        tags=["training"],
        summary="Start an iteration: snapshot, reward models, PPO or DPO, promotion (admin)",
        request=None,
        responses={202: IterationSerializer},
    ),
)
class IterationListApi(ProjectScopedView, generics.ListAPIView):
    serializer_class = IterationSerializer

    def get_queryset(self) -> QuerySet[LoopIteration]:
        if self.is_schema:
            return LoopIteration.objects.none()
        return iterations_for_project(project=self.get_project())

    def post(self, request, slug: str) -> Response:
        iteration = services.iteration_start(
            project=self.get_project(), trigger="manual", actor=request.user
        )
        if iteration is None:
            return conflict(
                ValidationError({"iteration": "An iteration is already running for this project."})
            )
        return Response(IterationSerializer(iteration).data, status=status.HTTP_202_ACCEPTED)


@extend_schema(
    tags=["training"],
    summary="What the loop is waiting for now, and the running iteration (reviewer, admin)",
    description="waiting_for is one of: "
    + "; ".join(f"{code} ({meaning})" for code, meaning in LOOP_WAIT_CODES.items())
    + ".",
    responses={200: LoopStateSerializer},
)
class LoopStateApi(ProjectScopedView):
    serializer_class = LoopStateSerializer

    def get(self, request, slug: str) -> Response:
        project = self.get_project()
        waiting = loop_waiting_for(project=project)
        running = iterations_for_project(project=project).filter(
            status__in=LoopIteration.ACTIVE_STATUSES
        )
        return Response(
            LoopStateSerializer(
                {
                    "waiting_for": waiting.code,
                    "message": waiting.message,
                    "iteration": running.first(),
                }
            ).data
        )


ITERATION_ACTIONS = ("cancel", "approve", "reject")


class IterationActionApi(ProjectScopedView):
    serializer_class = IterationSerializer

    @extend_schema(
        tags=["training"],
        summary="Cancel a running iteration, or approve / reject a candidate waiting for "
        "approval (admin)",
        operation_id="projects_iterations_action",
        parameters=[
            OpenApiParameter("action", str, OpenApiParameter.PATH, enum=list(ITERATION_ACTIONS))
        ],
        request=None,
        responses={200: IterationSerializer},
    )
    def post(self, request, slug: str, number: int, action: str) -> Response:
        if action not in ITERATION_ACTIONS:
            raise Http404("Unknown action.")
        iteration = generics.get_object_or_404(
            LoopIteration.objects.filter(project=self.get_project()), number=number
        )
        try:
            if action == "cancel":
                iteration = services.iteration_cancel(iteration=iteration, actor=request.user)
            elif action == "approve":
                iteration = services.iteration_approve(iteration=iteration, actor=request.user)
            else:
                # Who rejected it is in the audit log (by id, so an erased person leaves no name).
                iteration = services.iteration_decline(
                    iteration=iteration, reason="Rejected by an admin.", actor=request.user
                )
        except services.IterationMoved as error:
            return conflict(ValidationError({"iteration": str(error)}))
        except ValidationError as error:
            return conflict(error)
        return Response(IterationSerializer(iteration).data)


# --- Policy versions ----------------------------------------------------------------------------


def _policies(view: ProjectScopedView) -> QuerySet[PolicyVersion]:
    return (
        PolicyVersion.objects.filter(project=view.get_project())
        .select_related("parent", "reward_model", "sft")
        .order_by("-number")
    )


@extend_schema(tags=["policies"], summary="Policy versions, newest first (reviewer, admin)")
class PolicyListApi(ProjectScopedView, generics.ListAPIView):
    serializer_class = PolicySerializer

    def get_queryset(self) -> QuerySet[PolicyVersion]:
        return PolicyVersion.objects.none() if self.is_schema else _policies(self)


@extend_schema(tags=["policies"], summary="One policy version (reviewer, admin)")
class PolicyDetailApi(ProjectScopedView, generics.RetrieveAPIView):
    serializer_class = PolicySerializer
    lookup_field = "number"

    def get_queryset(self) -> QuerySet[PolicyVersion]:
        return PolicyVersion.objects.none() if self.is_schema else _policies(self)


@extend_schema(
    tags=["policies"],
    summary="SFT versions, newest first, with the demonstrations that made each (reviewer, admin)",
)
class SFTVersionListApi(ProjectScopedView, generics.ListAPIView):
    serializer_class = SFTVersionSerializer

    def get_queryset(self) -> QuerySet[SFTVersion]:
        if self.is_schema:
            return SFTVersion.objects.none()
        return sft_versions_for_project(project=self.get_project())


PROMOTABLE = (
    PolicyVersion.Status.CANDIDATE,
    PolicyVersion.Status.RETIRED,
    PolicyVersion.Status.ROLLED_BACK,
    PolicyVersion.Status.ACTIVE,
)


@extend_schema(
    tags=["policies"],
    summary="Make this version the active policy (admin)",
    request=None,
    responses={200: PolicySerializer},
)
class PolicyPromoteApi(ProjectScopedView):
    serializer_class = PolicySerializer

    def post(self, request, slug: str, number: int) -> Response:
        policy = generics.get_object_or_404(_policies(self), number=number)
        if policy.status not in PROMOTABLE:
            return conflict(
                ValidationError(
                    {
                        "status": f"A {policy.status} version cannot be promoted; "
                        f"only {', '.join(PROMOTABLE)}."
                    }
                )
            )
        policy = services.policy_promote(policy=policy, actor=request.user)
        return Response(PolicySerializer(policy).data)


@extend_schema(
    tags=["policies"],
    summary="Make this earlier version active again; the active one is rolled back (admin)",
    request=None,
    responses={200: PolicySerializer},
)
class PolicyRollbackApi(ProjectScopedView):
    serializer_class = PolicySerializer

    def post(self, request, slug: str, number: int) -> Response:
        policy = generics.get_object_or_404(_policies(self), number=number)
        try:
            policy = services.policy_rollback(policy=policy, actor=request.user)
        except ValidationError as error:
            return conflict(error)
        return Response(PolicySerializer(policy).data)


@extend_schema(
    tags=["policies"],
    summary="Policy versions rated from human votes (reviewer, admin)",
    description="Bradley-Terry ratings on an Elo-like scale (1000 = average, +400 = 10:1 "
    "odds) with bootstrap 95% intervals, from labels on comparisons between two versions "
    "(training/leaderboard.py). Versions without games have no rating.",
    responses={200: LeaderboardSerializer},
)
class LeaderboardApi(ProjectScopedView):
    serializer_class = LeaderboardSerializer

    def get(self, request, slug: str) -> Response:
        from training.leaderboard import leaderboard

        rows = [dataclasses.asdict(r) for r in leaderboard(project=self.get_project())]
        return Response({"method": "bradley_terry", "versions": rows})


# --- Reward models --------------------------------------------------------------------------


@extend_schema(
    tags=["training"],
    summary="Reward models and their health on fresh labels, newest first (reviewer, admin)",
    description="For each of the latest reward models: its held-out accuracy, and how often "
    "it agrees with the decisive human labels that arrived after it was trained (Wilson 95% "
    "interval), by |margin| bucket and by day; `alarm` when that interval lies entirely below "
    "the held-out accuracy (docs/judgement.md). Labels are scored on a GPU worker.",
    responses={200: RewardModelSerializer(many=True)},
)
class RewardModelListApi(ProjectScopedView):
    serializer_class = RewardModelSerializer
    pagination_class = None  # the latest few, always whole

    def get(self, request, slug: str) -> Response:
        health = reward_model_health(project=self.get_project())
        return Response(RewardModelSerializer(health, many=True).data)
