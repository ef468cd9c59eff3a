"""Data in and out: prompt and label file imports, dataset snapshots, exports."""

from __future__ import annotations

import logging
import secrets
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import FileResponse, Http404, HttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import generics, status
from rest_framework.exceptions import APIException
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response

from api.access import STAFF
from api.base import ProjectScopedView, conflict
from api.serializers import (
    DemonstrationExportSerializer,
    DemonstrationImportResultSerializer,
    DemonstrationUploadSerializer,
    LabelImportResultSerializer,
    LabelUploadSerializer,
    PreferenceExportSerializer,
    PromptImportResultSerializer,
    PromptUploadSerializer,
    SnapshotSerializer,
    VoteExportSerializer,
)
from api.views import rejected
from feedback.exports import demonstrations_export
from feedback.imports import (
    FileRejected,
    LabelStudioMapping,
    demonstrations_import_file,
    labels_import_file,
    prompts_import_file,
)
from training import exports
from training.models import DatasetSnapshot
from training.services import (
    ArtifactCorruptError,
    ArtifactPathError,
    ArtifactStoreError,
    snapshot_create,
)

JSONL = "application/x-ndjson"

logger = logging.getLogger(__name__)


def _read_upload(upload) -> bytes:
    """The uploaded file's bytes; a file over the limit is refused before it is read."""
    from django.conf import settings

    from feedback.imports import Problem

    limit = settings.HONE_IMPORT_MAX_BYTES
    if upload.size > limit:
        raise FileRejected(
            [Problem(0, "file", f"The file has {upload.size} bytes; the limit is {limit}.")],
            upload.name,
        )
    return upload.read()


# --- Imports ----------------------------------------------------------------------------------


class _FileImportApi(ProjectScopedView):
    """A multipart upload, validated by `serializer_class`, imported all or nothing by
    `imported` (by default `importer` with the file's format and duplicates policy): 201 with
    the import's result, or 400 with every problem and nothing stored."""

    parser_classes = [MultiPartParser, FormParser]
    importer: Any = None

    def post(self, request, slug: str) -> Response:
        project = self.get_project()
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        try:
            result = self.imported(project, data, _read_upload(data["file"]), request.user)
        except FileRejected as error:
            return rejected(error)
        return Response(result.as_dict(), status=status.HTTP_201_CREATED)

    def imported(self, project, data: dict, content: bytes, actor):
        return type(self).importer(
            project=project,
            data=content,
            name=data["file"].name,
            file_format=data.get("file_format"),
            duplicates=data["duplicates"],
            actor=actor,
        )


@extend_schema(
    tags=["prompts"],
    summary="Import a prompt file (JSONL, CSV, JSON list), all or nothing (admin)",
    request={"multipart/form-data": PromptUploadSerializer},
    responses={201: PromptImportResultSerializer},
)
class PromptImportApi(_FileImportApi):
    serializer_class = PromptUploadSerializer
    importer = prompts_import_file


@extend_schema(
    tags=["labels"],
    summary="Import pairwise labels from a Label Studio JSON export (admin)",
    request={"multipart/form-data": LabelUploadSerializer},
    responses={201: LabelImportResultSerializer},
)
class LabelImportApi(_FileImportApi):
    serializer_class = LabelUploadSerializer

    def imported(self, project, data: dict, content: bytes, actor):
        return labels_import_file(
            project=project,
            data=content,
            name=data["file"].name,
            actor=actor,
            mapping=LabelStudioMapping(
                prompt=data["prompt_field"],
                answer_a=data["answer_a_field"],
                answer_b=data["answer_b_field"],
            ),
        )


@extend_schema(
    tags=["demonstrations"],
    summary="Import demonstrations in TRL's SFT formats (JSONL, JSON list), all or nothing (admin)",
    description='Records: {"messages": [..., {"role": "assistant", ...}]} or {"prompt", '
    '"completion"}, optionally "split" and "metadata". A file with any problem is rejected '
    "with every problem (line, field, message) and nothing is stored.",
    request={"multipart/form-data": DemonstrationUploadSerializer},
    responses={201: DemonstrationImportResultSerializer},
)
class DemonstrationImportApi(_FileImportApi):
    serializer_class = DemonstrationUploadSerializer
    importer = demonstrations_import_file


# --- Snapshots --------------------------------------------------------------------------------


@extend_schema_view(
    get=extend_schema(tags=["datasets"], summary="Dataset snapshots (reviewer, admin)"),
    post=extend_schema(
        tags=["datasets"],
        summary="Snapshot the preference data now (admin)",
        request=None,
        responses={201: SnapshotSerializer},
    ),
)
class SnapshotListApi(ProjectScopedView, generics.ListAPIView):
    serializer_class = SnapshotSerializer

    def get_queryset(self) -> QuerySet[DatasetSnapshot]:
        if self.is_schema:
            return DatasetSnapshot.objects.none()
        return DatasetSnapshot.objects.filter(project=self.get_project()).order_by("-id")

    def post(self, request, slug: str) -> Response:
        project = self.get_project()
        name = f"api-{timezone.now():%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"
        try:
            snapshot = snapshot_create(project=project, name=name)
        except ValidationError as error:
            return conflict(error)
        return Response(SnapshotSerializer(snapshot).data, status=status.HTTP_201_CREATED)


@extend_schema(tags=["datasets"], summary="One dataset snapshot (reviewer, admin)")
class SnapshotDetailApi(ProjectScopedView, generics.RetrieveAPIView):
    serializer_class = SnapshotSerializer

    def get_queryset(self) -> QuerySet[DatasetSnapshot]:
        if self.is_schema:
            return DatasetSnapshot.objects.none()
        return DatasetSnapshot.objects.filter(project=self.get_project())


class SnapshotCorrupt(APIException):
    """The object store's copy of a snapshot is not the file the snapshot recorded (its
    sha256 differs): never served. The server log has the details."""

    status_code = status.HTTP_502_BAD_GATEWAY
    default_code = "artifact_corrupt"
    default_detail = (
        "The artifact store's copy of this snapshot does not match the hash recorded when it "
        "was made, so it is not served."
    )


class ArtifactStoreUnavailable(APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_code = "artifact_store_unavailable"
    default_detail = "The artifact store cannot be read at the moment; try again later."


@extend_schema(
    tags=["datasets"],
    summary="Download a snapshot's JSONL (TRL explicit-prompt format; reviewer, admin)",
    responses={(200, JSONL): OpenApiResponse(OpenApiTypes.BINARY)},
)
class SnapshotDownloadApi(ProjectScopedView):
    serializer_class = SnapshotSerializer

    def get(self, request, slug: str, pk: int) -> FileResponse:
        snapshot = generics.get_object_or_404(
            DatasetSnapshot.objects.filter(project=self.get_project()), pk=pk
        )
        try:
            path = exports.snapshot_export(snapshot=snapshot, actor=request.user)
        except (ArtifactPathError, FileNotFoundError):
            raise Http404("The snapshot's file is missing from the artifact store.") from None
        except ArtifactCorruptError:
            logger.exception("Snapshot %s of %s refused", snapshot.pk, slug)
            raise SnapshotCorrupt() from None
        except ArtifactStoreError:
            logger.exception("Snapshot %s of %s could not be read", snapshot.pk, slug)
            raise ArtifactStoreUnavailable() from None
        return FileResponse(
            path.open("rb"),
            as_attachment=True,
            filename=f"{slug}-snapshot-{snapshot.pk}.jsonl",
            content_type=JSONL,
        )


# --- Exports ----------------------------------------------------------------------------------


@extend_schema(
    tags=["datasets"],
    summary="Export preference pairs for TRL (reviewer, admin)",
    description="One row per comparison with a majority preference: prompt, chosen, "
    "rejected, margin, comparison_id. jsonl: a JSONL file. hf: a zip holding a Hugging Face "
    "`datasets` folder (unzip, then `datasets.load_from_disk`).",
    parameters=[PreferenceExportSerializer],
    responses={
        (200, JSONL): OpenApiResponse(OpenApiTypes.BINARY),
        (200, "application/zip"): OpenApiResponse(OpenApiTypes.BINARY),
    },
)
class PreferenceExportApi(ProjectScopedView):
    read_roles = STAFF
    serializer_class = PreferenceExportSerializer

    def get(self, request, slug: str) -> HttpResponse:
        project = self.get_project()
        options = self.query(PreferenceExportSerializer)
        try:
            rows = exports.export_rows(
                project=project,
                what="preferences",
                file_format=options["file_format"],
                style=options["style"],
                actor=request.user,
            )
        except ValidationError as error:
            return conflict(error)
        if options["file_format"] == "hf":
            return _download(
                exports.hf_zip_bytes(rows), f"{slug}-preferences.zip", "application/zip"
            )
        return _download(exports.jsonl_bytes(rows), f"{slug}-preferences.jsonl", JSONL)


@extend_schema(
    tags=["datasets"],
    summary="Export every vote, annotators pseudonymous (reviewer, admin)",
    parameters=[VoteExportSerializer],
    responses={
        (200, JSONL): OpenApiResponse(OpenApiTypes.BINARY),
        (200, "text/csv"): OpenApiResponse(OpenApiTypes.BINARY),
    },
)
class VoteExportApi(ProjectScopedView):
    serializer_class = VoteExportSerializer

    def get(self, request, slug: str) -> HttpResponse:
        project = self.get_project()
        options = self.query(VoteExportSerializer)
        rows = exports.export_rows(
            project=project, what="votes", file_format=options["file_format"], actor=request.user
        )
        if options["file_format"] == "csv":
            return _download(exports.csv_bytes(rows), f"{slug}-votes.csv", "text/csv")
        return _download(exports.jsonl_bytes(rows), f"{slug}-votes.jsonl", JSONL)


@extend_schema(
    tags=["demonstrations"],
    summary="Export demonstrations in TRL's SFT format, JSONL (reviewer, admin)",
    description="One row per standing demonstration (not withdrawn, not rejected; corrected "
    "ones with the reviewer's text) on prompts of the split: messages, or prompt and "
    "completion. 409 when there is none.",
    parameters=[DemonstrationExportSerializer],
    responses={(200, JSONL): OpenApiResponse(OpenApiTypes.BINARY)},
)
class DemonstrationExportApi(ProjectScopedView):
    read_roles = STAFF
    serializer_class = DemonstrationExportSerializer

    def get(self, request, slug: str) -> HttpResponse:
        project = self.get_project()
        options = self.query(DemonstrationExportSerializer)
        try:
            payload = demonstrations_export(project=project, actor=request.user, **options)
        except ValidationError as error:
            return conflict(error)
        filename = f"{slug}-demonstrations-{options['split']}.jsonl"
        return _download(payload, filename, JSONL)


def _download(payload: bytes, filename: str, content_type: str) -> HttpResponse:
    response = HttpResponse(payload, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
