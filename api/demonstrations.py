"""Demonstrations: list, write, edit an answer with a label, review (docs/demonstrations.md).
Their import and export are with the other data in api/data.py."""

from __future__ import annotations

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import generics, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from api.access import MEMBERS, STAFF
from api.base import ProjectScopedView
from api.serializers import (
    DemonstrationCreateSerializer,
    DemonstrationDetailSerializer,
    DemonstrationFilterSerializer,
    DemonstrationReviewSerializer,
    DemonstrationSerializer,
    PromptSerializer,
    PromptToWriteSerializer,
)
from api.views import LabelSubmitInputSerializer, SubmittedLabelSerializer, label_payload
from feedback.models import Demonstration
from feedback.rendering import text_diff
from feedback.selectors import (
    demonstration_for_review,
    demonstrations_for_project,
    prompt_to_write,
)
from feedback.services import (
    demonstration_correct,
    demonstration_edit,
    demonstration_review,
    demonstration_write,
)


def detail(demonstration: Demonstration) -> dict:
    """A demonstration with its diff (an edit: original -> text now) and audit trail."""
    demonstration.diff = (
        [{"op": op, "text": text} for op, text in text_diff(demonstration.original.text,
                                                             demonstration.text)]
        if demonstration.original_id is not None
        else None
    )  # fmt: skip
    return DemonstrationDetailSerializer(demonstration).data


@extend_schema_view(
    get=extend_schema(
        tags=["demonstrations"],
        summary="List demonstrations (reviewer, admin: all; annotator: your own)",
        parameters=[DemonstrationFilterSerializer],
    ),
    post=extend_schema(
        tags=["demonstrations"],
        summary="Write a demonstration for a train prompt (any member)",
        description="One per person and prompt: sending it again returns the stored one. The "
        "project must collect written demonstrations (demonstrations_per_prompt > 0).",
        request=DemonstrationCreateSerializer,
        responses={201: DemonstrationSerializer},
    ),
)
class DemonstrationListApi(ProjectScopedView, generics.ListAPIView):
    serializer_class = DemonstrationSerializer
    read_roles = MEMBERS
    write_roles = MEMBERS

    def get_queryset(self) -> QuerySet[Demonstration]:
        if self.is_schema:
            return Demonstration.objects.none()
        return self.filtered(
            _visible(self),
            DemonstrationFilterSerializer,
            {
                "status": "review_status",
                "origin": "origin",
                "author": "author__username",
                "prompt": "prompt_id",
            },
        )

    def post(self, request, slug: str) -> Response:
        serializer = DemonstrationCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        demonstration = demonstration_write(
            user=request.user, project=self.get_project(), **serializer.validated_data
        )
        return Response(DemonstrationSerializer(demonstration).data, status=status.HTTP_201_CREATED)


def _visible(view: ProjectScopedView) -> QuerySet[Demonstration]:
    project = view.get_project()
    if view.get_membership().role in STAFF:
        return demonstrations_for_project(project=project)
    return demonstrations_for_project(project=project, user=view.request.user)


@extend_schema(
    tags=["demonstrations"],
    summary="One demonstration, its diff and audit trail (reviewer, admin; annotator: yours)",
    responses={200: DemonstrationDetailSerializer},
)
class DemonstrationDetailApi(ProjectScopedView):
    read_roles = MEMBERS
    serializer_class = DemonstrationDetailSerializer

    def get(self, request, slug: str, pk: int) -> Response:
        demonstration = generics.get_object_or_404(
            _visible(self).prefetch_related("audits__actor"), pk=pk
        )
        return Response(detail(demonstration))


@extend_schema(
    tags=["demonstrations"],
    summary="Accept, reject or correct a demonstration (reviewer, admin)",
    description="A decision (accepted, rejected, unreviewed), or a corrected text (the "
    "demonstration becomes corrected). An edit's own preference label is reviewed with it. "
    "Audited; nothing is deleted.",
    request=DemonstrationReviewSerializer,
    responses={200: DemonstrationDetailSerializer},
)
class DemonstrationReviewApi(ProjectScopedView):
    write_roles = STAFF
    serializer_class = DemonstrationReviewSerializer

    def post(self, request, slug: str, pk: int) -> Response:
        project = self.get_project()
        demonstration = demonstration_for_review(project=project, demonstration_id=pk)
        serializer = DemonstrationReviewSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        if "text" in serializer.validated_data:
            demonstration_correct(
                reviewer=request.user,
                demonstration_id=demonstration.pk,
                text=serializer.validated_data["text"],
            )
        else:
            demonstration_review(
                reviewer=request.user,
                demonstration_id=demonstration.pk,
                decision=serializer.validated_data["decision"],
            )
        return Response(detail(demonstration_for_review(project=project, demonstration_id=pk)))


@extend_schema(
    tags=["demonstrations"],
    summary="The next prompt to write a demonstration for (any member)",
    description="A train prompt with fewer standing demonstrations than the project's "
    "demonstrations_per_prompt, that you have given none, the fewest first. 204 when there is "
    "none (or the project collects no written demonstrations).",
    responses={200: PromptToWriteSerializer, 204: OpenApiResponse(description="Nothing.")},
)
class DemonstrationNextPromptApi(ProjectScopedView):
    read_roles = MEMBERS
    serializer_class = PromptToWriteSerializer

    def get(self, request, slug: str) -> Response:
        prompt, waiting = prompt_to_write(project=self.get_project(), user=request.user)
        if prompt is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response({"prompt": PromptSerializer(prompt).data, "waiting": waiting})


class LabelEditInputSerializer(LabelSubmitInputSerializer):
    edit_side = serializers.ChoiceField(
        choices=["a", "b"], help_text="The answer edited: completion a or b of the comparison."
    )
    edit_text = serializers.CharField(
        allow_blank=True, trim_whitespace=False, help_text="The edited answer (the same limits "
        "as any demonstration)."
    )  # fmt: skip


class EditedLabelSerializer(SubmittedLabelSerializer):
    demonstration_id = serializers.IntegerField()


@extend_schema(
    tags=["comparisons"],
    summary="Submit your label for a leased comparison with your edit of one of its answers",
    description="The label as POST .../label/ stores it, and the edit: a demonstration, and a "
    "comparison of the edit against the answer it edits with your label preferring the edit. "
    "All or nothing; sending it again returns what was stored.",
    request=LabelEditInputSerializer,
    responses={201: EditedLabelSerializer},
)
class LabelEditApi(APIView):
    def post(self, request, assignment_id: int) -> Response:
        serializer = LabelEditInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        demonstration = demonstration_edit(
            user=request.user,
            assignment_id=assignment_id,
            side=data.pop("edit_side"),
            text=data.pop("edit_text"),
            **data,
        )
        label = demonstration.label
        payload = label_payload(
            label_id=label.pk,
            comparison_id=label.comparison_id,
            choice=label.choice,
            strength=label.strength,
            a_shown_left=label.a_shown_left,
        )
        return Response(
            {**payload, "demonstration_id": demonstration.pk}, status=status.HTTP_201_CREATED
        )
