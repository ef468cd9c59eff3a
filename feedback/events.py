"""Loop events pushed to the browsers connected to a project's websocket.

Each socket of the project joins one audience group (feedback/consumers.py): annotators'
sockets `project_group`, reviewers' and admins' `staff_group`. An event for everybody goes to
both; training internals (runs, their progress and errors) to staff only. Every socket also
joins its user's group, through which `user_sockets_close` closes it when the membership
ends or changes or the user is deactivated.

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
    """The annotators' sockets of a project."""
    return f"project-{project_id}"


def staff_group(project_id: int) -> str:
    """The reviewers' and admins' sockets of a project."""
    return f"project-{project_id}-staff"


def user_group(user_id: int) -> str:
    """Every socket of one user (project events and arena)."""
    return f"user-{user_id}"


def arena_group(project_id: int, user_id: int) -> str:
    """One annotator's arena stream in one project (training/services/arena.py sends)."""
    return f"arena-{project_id}-{user_id}"


def _send_on_commit(what: str, messages: list[tuple[str, dict[str, Any]]]) -> None:
    def send() -> None:
        layer = get_channel_layer()
        if layer is None:
            return
        try:
            for group, message in messages:
                async_to_sync(layer.group_send)(group, message)
        except Exception:  # a notification: never fail the write it follows
            logger.exception("Could not send %s", what)

    transaction.on_commit(send)


def event_publish(
    *,
    project_id: int,
    event: str,
    data: dict[str, Any] | None = None,
    staff_only: bool = False,
    staff_data: dict[str, Any] | None = None,
) -> None:
    """Send `event` to the project's sockets: staff only (`staff_only`: training internals),
    or everybody, staff seeing `staff_data` (an error text, say) added to `data`."""
    data = data or {}
    staff = {"type": "loop.event", "event": event, "data": {**data, **(staff_data or {})}}
    messages = [(staff_group(project_id), staff)]
    if not staff_only:
        messages.append(
            (project_group(project_id), {"type": "loop.event", "event": event, "data": data})
        )
    _send_on_commit(f"{event} for project {project_id}", messages)


def user_sockets_close(*, user_id: int, project_id: int | None = None) -> None:
    """Close the user's sockets of `project_id` (of every project: None) once the transaction
    commits; a browser that connects again is let in by its membership as it is then."""
    message = {"type": "access.ended", "project_id": project_id}
    _send_on_commit(f"the close of user {user_id}'s sockets", [(user_group(user_id), message)])
