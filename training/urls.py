from django.urls import path

from training import views

app_name = "training"

urlpatterns = [
    path("p/<slug:slug>/", views.project_loop, name="project"),
    path("p/<slug:slug>/iterations/start/", views.iteration_start, name="iteration-start"),
    path("p/<slug:slug>/generate/", views.generation_start, name="generation-start"),
    path("p/<slug:slug>/runs/<id:run_id>/", views.run_detail, name="run"),
    path("p/<slug:slug>/runs/<id:run_id>/cancel/", views.run_cancel, name="run-cancel"),
    path(
        "p/<slug:slug>/iterations/<id:number>/<str:action>/",
        views.iteration_action,
        name="iteration-action",
    ),
    path(
        "p/<slug:slug>/policies/<id:number>/rollback/",
        views.policy_rollback,
        name="policy-rollback",
    ),
    path("p/<slug:slug>/schedule/", views.schedule_set, name="schedule"),
    path("p/<slug:slug>/gates/", views.gates_set, name="gates"),
    path("p/<slug:slug>/training/", views.training_set, name="training"),
]
