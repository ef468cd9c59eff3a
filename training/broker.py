"""What the broker still holds: the task messages that wait in a queue, and those delivered to
a worker that has not acknowledged them yet (with acks_late, a job's message until the job
ends; a killed worker's until the broker's visibility timeout hands it out again).

The loop's recovery (training/services/recovery.py) asks before it sends work again, so that
work is sent again only when the broker lost its message (a Redis that keeps nothing on disk
restarted, a failover), never twice while the first message is still on its way.
"""

from __future__ import annotations

import ast
import json
import logging
from typing import Any

from celery import current_app as celery_app

logger = logging.getLogger(__name__)

# A held message: (task name, its positional arguments).
Held = tuple[str, tuple]


def broker_queues() -> set[str]:
    """The queues Hone's tasks go to (config/settings/base.py, CELERY_TASK_ROUTES)."""
    routes = celery_app.conf.task_routes or {}
    return {celery_app.conf.task_default_queue} | {r["queue"] for r in routes.values()}


def broker_messages_held() -> set[Held] | None:
    """Every task message the broker holds, waiting or unacknowledged; None when the broker
    cannot be read this way (the in-process broker of a shell or of the unit tests)."""
    with celery_app.connection_for_read() as connection:
        if connection.transport.driver_type != "redis":
            return None
        channel = connection.default_channel
        client = channel.client
        # Kombu's Redis transport: one list per queue and priority step (the queue's own name
        # for priority 0), and a hash of the messages delivered but not acknowledged, each
        # stored as [message, exchange, routing key].
        keys = [
            queue if step == 0 else f"{queue}{channel.sep}{step}"
            for queue in sorted(broker_queues())
            for step in channel.priority_steps
        ]
        waiting = [json.loads(m) for key in keys for m in client.lrange(key, 0, -1)]
        delivered = [json.loads(v)[0] for v in client.hvals(channel.unacked_key)]
    return {held for m in waiting + delivered if (held := _task_of(m)) is not None}


def _task_of(message: dict[str, Any]) -> Held | None:
    """A Celery message (protocol 2) names its task and the repr of its arguments in its
    headers; Hone's tasks take ids, which that repr gives back exactly."""
    try:
        headers = message["headers"]
        return headers["task"], tuple(ast.literal_eval(headers["argsrepr"]))
    except (ValueError, KeyError, TypeError, SyntaxError):
        logger.warning("A broker message that is not a Celery task: %.200r", message)
        return None
