from django.urls import path

from feedback import apis, review_views, views

app_name = "feedback"

urlpatterns = [
    path("", views.home, name="home"),
    path("p/<slug:slug>/label/", views.label_page, name="label"),
    path("p/<slug:slug>/quality/", review_views.quality_page, name="quality"),
    path("p/<slug:slug>/review/", review_views.review_queue_page, name="review"),
    path(
        "p/<slug:slug>/review/comparisons/<int:comparison_id>/",
        review_views.review_comparison_page,
        name="review-comparison",
    ),
    path(
        "api/projects/<slug:slug>/quality/",
        apis.ProjectQualityApi.as_view(),
        name="api-project-quality",
    ),
    path(
        "api/projects/<slug:slug>/comparisons/next/",
        apis.ComparisonNextApi.as_view(),
        name="api-comparison-next",
    ),
    path(
        "api/assignments/<int:assignment_id>/label/",
        apis.LabelSubmitApi.as_view(),
        name="api-label-submit",
    ),
]
