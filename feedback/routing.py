from django.urls import path

from feedback.consumers import ArenaConsumer, ProjectEventsConsumer

websocket_urlpatterns = [
    path("ws/projects/<slug:slug>/", ProjectEventsConsumer.as_asgi()),
    path("ws/projects/<slug:slug>/arena/", ArenaConsumer.as_asgi()),
]
