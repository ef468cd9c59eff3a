from django.urls import path

from training import arena_views

app_name = "arena"

urlpatterns = [
    path("p/<slug:slug>/arena/", arena_views.arena_page, name="page"),
    path("p/<slug:slug>/arena/battles/", arena_views.arena_start_view, name="start"),
    path(
        "p/<slug:slug>/arena/battles/<id:battle_id>/vote/",
        arena_views.arena_vote_view,
        name="vote",
    ),
]
