"""Projects, prompts, comparisons (list, next, submit) and labels."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import generics, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from api.access import ADMINS, MEMBERS, STAFF, membership_for, project_for
from api.base import BodyTooLarge, Page, ProjectScopedView
from api.serializers import (
    ComparisonFilterSerializer,
    ComparisonSerializer,
    LabelFilterSerializer,
    LabelSerializer,
    MessageSerializer,
    ProjectSerializer,
    ProjectTrainingSerializer,
    PromptCreateSerializer,
    PromptFilterSerializer,
    PromptImportResultSerializer,
    PromptSerializer,
)
from feedback.imports import FileRejected, prompts_import_records
from feedback.labeling import Lease
from feedback.models import (
    MAX_RATIONALE_CHARS,
    Comparison,
    Membership,
    PreferenceLabel,
    Project,
    Prompt,
)
from feedback.quality import project_quality
from feedback.selectors import project_for_member
from feedback.services import (
    MAX_TIME_SPENT_MS,
    assignment_lease,
    label_submit,
    project_training_set,
)


def rejected(error: FileRejected) -> Response:
    return Response(
        {"errors": [p.as_dict() for p in error.problems]}, status=status.HTTP_400_BAD_REQUEST
    )


def lease_payload(lease: Lease) -> dict[str, Any]:
    """The answer of POST .../comparisons/next/ (here and in api/fastpath.py)."""
    assignment = lease.assignment
    return {
        "assignment_id": assignment["id"],
        "comparison_id": assignment["comparison_id"],
        "expires_at": assignment["expires_at"].isoformat(),
        "a_shown_left": assignment["a_shown_left"],
        "prompt": lease.prompt_messages,
        "completion_a": lease.completion_a,
        "completion_b": lease.completion_b,
    }


def label_payload(
    *, label_id: int, comparison_id: int, choice: str, strength: int, a_shown_left: bool
) -> dict[str, Any]:
    """The answer of POST /api/assignments/<id>/label/ (here and in api/fastpath.py)."""
    return {
        "label_id": label_id,
        "comparison_id": comparison_id,
        "choice": choice,
        "strength": strength,
        "a_shown_left": a_shown_left,
    }


# --- Projects ---------------------------------------------------------------------------------


@extend_schema(tags=["projects"], summary="Projects you belong to, with your role in each")
class ProjectListApi(generics.ListAPIView):
    serializer_class = ProjectSerializer
    pagination_class = Page

    def get_queryset(self) -> QuerySet[Project]:
        if getattr(self, "swagger_fake_view", False):
            return Project.objects.none()
        return Project.objects.filter(memberships__user=self.request.user).order_by("slug")

    def get_serializer_context(self):
        context = super().get_serializer_context()
        if not getattr(self, "swagger_fake_view", False):
            context["roles"] = dict(
                Membership.objects.filter(user=self.request.user).values_list("project_id", "role")
            )
        return context


@extend_schema_view(
    get=extend_schema(tags=["projects"], summary="One project (any member)"),
    patch=extend_schema(
        tags=["projects"],
        summary="Set how iterations train: optimizer, restart_from, reward_length_control, "
        "sft_min_demonstrations (admin)",
        description="Any of the four; any other field is refused (400). An iteration reads "
        "sft_min_demonstrations when it starts, the others when its reward models are trained.",
        request=ProjectTrainingSerializer,
        responses={200: ProjectSerializer},
    ),
)
class ProjectDetailApi(generics.GenericAPIView):
    serializer_class = ProjectSerializer

    def get(self, request, slug: str) -> Response:
        membership = membership_for(user=request.user, slug=slug)
        return self._project(membership.project, membership.role)

    def patch(self, request, slug: str) -> Response:
        project, membership = project_for(user=request.user, slug=slug, roles=ADMINS)
        serializer = ProjectTrainingSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        current = {
            "optimizer": project.optimizer,
            "restart_from": project.restart_from,
            "reward_length_control": project.reward_length_control,
            "sft_min_demonstrations": project.sft_min_demonstrations,
        }
        project = project_training_set(
            project=project, actor=request.user, **{**current, **serializer.validated_data}
        )
        return self._project(project, membership.role)

    def _project(self, project: Project, role: str) -> Response:
        return Response(ProjectSerializer(project, context={"roles": {project.pk: role}}).data)


# --- Prompts ----------------------------------------------------------------------------------


@extend_schema_view(
    get=extend_schema(
        tags=["prompts"],
        summary="List prompts (any member)",
        parameters=[PromptFilterSerializer],
    ),
    post=extend_schema(
        tags=["prompts"],
        summary="Add prompts from JSON records, all or nothing (admin)",
        request=PromptCreateSerializer,
        responses={201: PromptImportResultSerializer},
    ),
)
class PromptListApi(ProjectScopedView, generics.ListAPIView):
    serializer_class = PromptSerializer
    read_roles = MEMBERS

    def get_queryset(self) -> QuerySet[Prompt]:
        if self.is_schema:
            return Prompt.objects.none()
        filters = self.query(PromptFilterSerializer)
        return Prompt.objects.filter(project=self.get_project(), **filters).order_by("id")

    def post(self, request, slug: str) -> Response:
        project = self.get_project()
        serializer = PromptCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            result = prompts_import_records(
                project=project,
                records=list(enumerate(serializer.validated_data["prompts"], start=1)),
                source=f"api:{request.user.get_username()}",
                duplicates=serializer.validated_data["duplicates"],
                actor=request.user,
            )
        except FileRejected as error:
            return rejected(error)
        return Response(result.as_dict(), status=status.HTTP_201_CREATED)


@extend_schema(tags=["prompts"], summary="One prompt (any member)")
class PromptDetailApi(ProjectScopedView, generics.RetrieveAPIView):
    serializer_class = PromptSerializer
    read_roles = MEMBERS

    def get_queryset(self) -> QuerySet[Prompt]:
        if self.is_schema:
            return Prompt.objects.none()
        return Prompt.objects.filter(project=self.get_project())


# --- Comparisons ------------------------------------------------------------------------------


def _comparisons(project: Project) -> QuerySet[Comparison]:
    return (
        Comparison.objects.filter(project=project)
        .select_related(
            "prompt",
            "completion_a__policy_version",
            "completion_b__policy_version",
        )
        .order_by("id")
    )


@extend_schema(
    tags=["comparisons"],
    summary="List comparisons (reviewer, admin)",
    parameters=[ComparisonFilterSerializer],
)
class ComparisonListApi(ProjectScopedView, generics.ListAPIView):
    serializer_class = ComparisonSerializer

    def get_queryset(self) -> QuerySet[Comparison]:
        if self.is_schema:
            return Comparison.objects.none()
        filters = self.query(ComparisonFilterSerializer)
        return _comparisons(self.get_project()).filter(**filters)


@extend_schema(tags=["comparisons"], summary="One comparison (reviewer, admin)")
class ComparisonDetailApi(ProjectScopedView, generics.RetrieveAPIView):
    serializer_class = ComparisonSerializer

    def get_queryset(self) -> QuerySet[Comparison]:
        if self.is_schema:
            return Comparison.objects.none()
        return _comparisons(self.get_project())


class AssignmentSerializer(serializers.Serializer):
    assignment_id = serializers.IntegerField()
    comparison_id = serializers.IntegerField()
    expires_at = serializers.DateTimeField()
    a_shown_left = serializers.BooleanField()
    prompt = MessageSerializer(many=True)
    completion_a = serializers.CharField()
    completion_b = serializers.CharField()


class SubmittedLabelSerializer(serializers.Serializer):
    label_id = serializers.IntegerField()
    comparison_id = serializers.IntegerField()
    choice = serializers.CharField()
    strength = serializers.IntegerField()
    a_shown_left = serializers.BooleanField()


class LabelingBodyLimit(APIView):
    """The two labeling endpoints: a body over HONE_LABELING_MAX_BODY_BYTES (by its
    Content-Length) is refused with 413 before anything else, as the fast path refuses it."""

    def initial(self, request, *args: Any, **kwargs: Any) -> None:
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > settings.HONE_LABELING_MAX_BODY_BYTES:
            raise BodyTooLarge(settings.HONE_LABELING_MAX_BODY_BYTES)
        super().initial(request, *args, **kwargs)


@extend_schema(
    tags=["comparisons"],
    summary="Lease the next comparison to label (any member)",
    description="Your current lease, or a new one; 204 when nothing is left for you.",
    request=None,
    responses={200: AssignmentSerializer, 204: OpenApiResponse(description="Nothing to label.")},
)
class ComparisonNextApi(LabelingBodyLimit):
    """POST: the caller's current lease, or a new one. 204 when nothing is left to label."""

    def post(self, request, slug: str) -> Response:
        project = project_for_member(user=request.user, slug=slug)
        lease = assignment_lease(project=project, user=request.user)
        if lease is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(lease_payload(lease))


class LabelSubmitInputSerializer(serializers.Serializer):
    choice = serializers.CharField()
    strength = serializers.IntegerField(default=PreferenceLabel.Strength.CLEAR)
    rationale = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        validators=PreferenceLabel._meta.get_field("rationale").validators,
        help_text=f"At most {MAX_RATIONALE_CHARS} characters.",
    )
    time_spent_ms = serializers.IntegerField(
        required=False, default=0, min_value=0, max_value=MAX_TIME_SPENT_MS
    )


@extend_schema(
    tags=["comparisons"],
    summary="Submit your label for a leased comparison",
    request=LabelSubmitInputSerializer,
    responses={201: SubmittedLabelSerializer},
)
class LabelSubmitApi(LabelingBodyLimit):
    InputSerializer = LabelSubmitInputSerializer  # the fast path validates with it too

    def post(self, request, assignment_id: int) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        label = label_submit(
            user=request.user, assignment_id=assignment_id, **serializer.validated_data
        )
        payload = label_payload(
            label_id=label.pk,
            comparison_id=label.comparison_id,
            choice=label.choice,
            strength=label.strength,
            a_shown_left=label.a_shown_left,
        )
        return Response(payload, status=status.HTTP_201_CREATED)


# --- Labels -----------------------------------------------------------------------------------


@extend_schema(
    tags=["labels"],
    summary="List labels (reviewer, admin: all; annotator: your own)",
    parameters=[LabelFilterSerializer],
)
class LabelListApi(ProjectScopedView, generics.ListAPIView):
    serializer_class = LabelSerializer
    read_roles = MEMBERS

    def get_queryset(self) -> QuerySet[PreferenceLabel]:
        if self.is_schema:
            return PreferenceLabel.objects.none()
        return self.filtered(
            _labels(self),
            LabelFilterSerializer,
            {
                "annotator": "annotator__username",
                "status": "review_status",
                "choice": "choice",
                "comparison": "comparison_id",
                "created_after": "created_at__gte",
                "created_before": "created_at__lt",
            },
        )


@extend_schema(tags=["labels"], summary="One label (reviewer, admin; annotator: your own)")
class LabelDetailApi(ProjectScopedView, generics.RetrieveAPIView):
    serializer_class = LabelSerializer
    read_roles = MEMBERS

    def get_queryset(self) -> QuerySet[PreferenceLabel]:
        if self.is_schema:
            return PreferenceLabel.objects.none()
        return _labels(self)


def _labels(view: ProjectScopedView) -> QuerySet[PreferenceLabel]:
    labels = (
        PreferenceLabel.objects.filter(comparison__project=view.get_project())
        .select_related("annotator")
        .order_by("id")
    )
    if view.get_membership().role not in STAFF:
        labels = labels.filter(annotator=view.request.user)
    return labels


@extend_schema(
    tags=["quality"],
    summary="Label quality: gold accuracy, self-consistency, position bias, agreement",
    description="Reviewers and admins. The figures of docs/quality.md, as one object.",
    responses={200: OpenApiTypes.OBJECT},
)
class ProjectQualityApi(APIView):
    """GET: gold accuracy, self-consistency, position bias and agreement (reviewers, admins)."""

    def get(self, request, slug: str) -> Response:
        project = project_for_member(
            user=request.user, slug=slug, roles=(Membership.Role.REVIEWER, Membership.Role.ADMIN)
        )
        return Response(project_quality(project=project))
