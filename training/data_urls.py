from django.urls import path

from training import data_views

app_name = "data"

urlpatterns = [
    path("p/<slug:slug>/data/", data_views.data_page, name="page"),
]
