from django.urls import path

from training import views

app_name = "training"

urlpatterns = [
    path("p/<slug:slug>/", views.project_loop, name="project"),
    path("p/<slug:slug>/iterations/start/", views.iteration_start, name="iteration-start"),
    path("p/<slug:slug>/generate/", views.generation_start, name="generation-start"),
    path("p/<slug:slug>/runs/<int:run_id>/", views.run_detail, name="run"),
]
