from django.urls import path

from feedback.consumers import ProjectEventsConsumer

websocket_urlpatterns = [
    path("ws/projects/<slug:slug>/", ProjectEventsConsumer.as_asgi()),
]
