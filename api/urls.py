"""/api/: the public REST API, its OpenAPI schema and its docs (served without a CDN)."""

from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from api import audit, data, demonstrations, loop, views

app_name = "api"

P = "projects/<slug:slug>/"

urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api:schema"), name="docs"),
    path("redoc/", SpectacularRedocView.as_view(url_name="api:schema"), name="redoc"),
    path("projects/", views.ProjectListApi.as_view(), name="projects"),
    path(P, views.ProjectDetailApi.as_view(), name="project"),
    # Prompts
    path(P + "prompts/", views.PromptListApi.as_view(), name="prompts"),
    path(P + "prompts/import/", data.PromptImportApi.as_view(), name="prompts-import"),
    path(P + "prompts/<id:pk>/", views.PromptDetailApi.as_view(), name="prompt"),
    # Comparisons and the labeling path (served by the fast path too: api/fastpath.py)
    path(P + "comparisons/", views.ComparisonListApi.as_view(), name="comparisons"),
    path(P + "comparisons/next/", views.ComparisonNextApi.as_view(), name="comparison-next"),
    path(P + "comparisons/<id:pk>/", views.ComparisonDetailApi.as_view(), name="comparison"),
    path(
        "assignments/<id:assignment_id>/label/",
        views.LabelSubmitApi.as_view(),
        name="label-submit",
    ),
    path(
        "assignments/<id:assignment_id>/edit/",
        demonstrations.LabelEditApi.as_view(),
        name="label-edit",
    ),
    # Demonstrations
    path(P + "demonstrations/", demonstrations.DemonstrationListApi.as_view(), name="demos"),
    path(
        P + "demonstrations/next-prompt/",
        demonstrations.DemonstrationNextPromptApi.as_view(),
        name="demos-next-prompt",
    ),
    path(P + "demonstrations/import/", data.DemonstrationImportApi.as_view(), name="demos-import"),
    path(
        P + "demonstrations/<id:pk>/",
        demonstrations.DemonstrationDetailApi.as_view(),
        name="demo",
    ),
    path(
        P + "demonstrations/<id:pk>/review/",
        demonstrations.DemonstrationReviewApi.as_view(),
        name="demo-review",
    ),
    # Labels
    path(P + "quality/", views.ProjectQualityApi.as_view(), name="project-quality"),
    path(P + "labels/", views.LabelListApi.as_view(), name="labels"),
    path(P + "labels/import/", data.LabelImportApi.as_view(), name="labels-import"),
    path(P + "labels/<id:pk>/", views.LabelDetailApi.as_view(), name="label"),
    # Datasets
    path(P + "snapshots/", data.SnapshotListApi.as_view(), name="snapshots"),
    path(P + "snapshots/<id:pk>/", data.SnapshotDetailApi.as_view(), name="snapshot"),
    path(
        P + "snapshots/<id:pk>/download/",
        data.SnapshotDownloadApi.as_view(),
        name="snapshot-download",
    ),
    path(P + "exports/preferences/", data.PreferenceExportApi.as_view(), name="export-prefs"),
    path(P + "exports/votes/", data.VoteExportApi.as_view(), name="export-votes"),
    path(
        P + "exports/demonstrations/",
        data.DemonstrationExportApi.as_view(),
        name="export-demos",
    ),
    # Training
    path(P + "runs/", loop.RunListApi.as_view(), name="runs"),
    path(P + "runs/<id:pk>/", loop.RunDetailApi.as_view(), name="run"),
    path(P + "runs/<id:pk>/cancel/", loop.RunCancelApi.as_view(), name="run-cancel"),
    path(P + "runs/<id:pk>/metrics/", loop.RunMetricsApi.as_view(), name="run-metrics"),
    path(P + "loop/", loop.LoopStateApi.as_view(), name="loop"),
    path(P + "iterations/", loop.IterationListApi.as_view(), name="iterations"),
    path(
        P + "iterations/<id:number>/<str:action>/",
        loop.IterationActionApi.as_view(),
        name="iteration-action",
    ),
    path(P + "reward-models/", loop.RewardModelListApi.as_view(), name="reward-models"),
    # Policies
    path(P + "policies/", loop.PolicyListApi.as_view(), name="policies"),
    path(P + "sft-versions/", loop.SFTVersionListApi.as_view(), name="sft-versions"),
    path(P + "policies/<id:number>/", loop.PolicyDetailApi.as_view(), name="policy"),
    path(
        P + "policies/<id:number>/promote/",
        loop.PolicyPromoteApi.as_view(),
        name="policy-promote",
    ),
    path(
        P + "policies/<id:number>/rollback/",
        loop.PolicyRollbackApi.as_view(),
        name="policy-rollback",
    ),
    path(P + "leaderboard/", loop.LeaderboardApi.as_view(), name="leaderboard"),
    # Governance
    path(P + "audit/", audit.AuditEventListApi.as_view(), name="audit"),
]
