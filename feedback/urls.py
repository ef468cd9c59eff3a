from django.urls import path

from feedback import apis, views

app_name = "feedback"

urlpatterns = [
    path("", views.home, name="home"),
    path("p/<slug:slug>/label/", views.label_page, name="label"),
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
