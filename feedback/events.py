"""Loop events pushed to every browser connected to a project's websocket.

Events are sent after the surrounding transaction commits, so a browser never hears of a
row it cannot read yet. Any process can publish (web server or worker): with Redis the
channel layer carries the event across machines.
"""

from __future__ import annotations

import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

logger = logging.getLogger(__name__)


def project_group(project_id: int) -> str:
    return f"project-{project_id}"


def arena_group(project_id: int, user_id: int) -> str:
    """One annotator's arena stream in one project (training/services/arena.py sends)."""
    return f"arena-{project_id}-{user_id}"


def event_publish(*, project_id: int, event: str, data: dict[str, Any] | None = None) -> None:
    message = {"type": "loop.event", "event": event, "data": data or {}}

    def send() -> None:
        layer = get_channel_layer()
        if layer is None:
            return
        try:
            async_to_sync(layer.group_send)(project_group(project_id), message)
        except Exception:  # an event is a notification: never fail the write it follows
            logger.exception("Could not publish %s for project %s", event, project_id)

    transaction.on_commit(send)
