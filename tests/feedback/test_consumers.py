from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser

from feedback.events import project_group
from feedback.routing import websocket_urlpatterns

pytestmark = pytest.mark.django_db(transaction=True)


def communicator_for(user, slug: str = "demo") -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(URLRouter(websocket_urlpatterns), f"/ws/projects/{slug}/")
    communicator.scope["user"] = user
    return communicator


def test_member_receives_loop_events(project, annotator):
    async def scenario():
        communicator = communicator_for(annotator)
        connected, _ = await communicator.connect()
        await get_channel_layer().group_send(
            project_group(project.pk),
            {"type": "loop.event", "event": "policy_live", "data": {"version": 1}},
        )
        message = await communicator.receive_json_from(timeout=5)
        await communicator.disconnect()
        return connected, message

    connected, message = async_to_sync(scenario)()

    assert connected is True
    assert message == {"event": "policy_live", "data": {"version": 1}}


@pytest.mark.parametrize("who", ["anonymous", "stranger"])
def test_non_members_are_refused(project, make_user, who):
    user = AnonymousUser() if who == "anonymous" else make_user("stranger")

    async def scenario():
        communicator = communicator_for(user)
        connected, code = await communicator.connect()
        return connected, code

    assert async_to_sync(scenario)() == (False, 4403)
