"""The project websocket tells annotators what they need, staff the rest, and closes when
the user's membership ends, changes, or the user is deactivated.

Events come from the real services (training runs, iterations, comparisons) through the
channel layer to consumers driven by channels' WebsocketCommunicator."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator

from feedback import services
from feedback.models import Membership
from feedback.routing import websocket_urlpatterns
from feedback.services import membership_set
from tests.factories import make_comparisons
from training.models import LoopIteration, TrainingRun
from training.services import iteration_advance, run_fail, run_record_metrics

pytestmark = pytest.mark.django_db(transaction=True)

TRACEBACK = 'Traceback (most recent call last):\n  File "/srv/hone/secret.py", line 1'


def communicator_for(user, path: str = "/ws/projects/demo/") -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(URLRouter(websocket_urlpatterns), path)
    communicator.scope["user"] = user
    return communicator


async def received(communicator: WebsocketCommunicator) -> list[dict]:
    messages = []
    while not await communicator.receive_nothing(timeout=0.5):
        messages.append(await communicator.receive_json_from())
    return messages


def test_annotators_hear_no_training_internals_and_staff_hear_everything(
    project, annotator, reviewer
):
    run = TrainingRun.objects.create(project=project, kind="reward", status="running")
    iteration = LoopIteration.objects.create(project=project, number=1, trigger="manual")

    def loop_events() -> None:
        run_record_metrics(run=run, values={"step": 3, "loss": 0.25})
        run_fail(run=run, error=TRACEBACK)
        iteration_advance(iteration=iteration, status="failed", error=TRACEBACK)
        make_comparisons(project, [("x", "y")])

    async def scenario():
        sockets = [communicator_for(annotator), communicator_for(reviewer)]
        for socket in sockets:
            assert (await socket.connect())[0] is True
        await sync_to_async(loop_events)()
        heard = [await received(socket) for socket in sockets]
        for socket in sockets:
            await socket.disconnect()
        return heard

    annotator_heard, reviewer_heard = async_to_sync(scenario)()

    assert annotator_heard == [
        {"event": "iteration_status", "data": {"iteration": 1, "status": "failed"}},
        {"event": "comparisons_added", "data": {"count": 1}},
    ]
    assert reviewer_heard == [
        {
            "event": "run_progress",
            "data": {
                "run_id": run.pk,
                "kind": "reward",
                "step": 3,
                "values": {"step": 3, "loss": 0.25},
            },
        },
        {
            "event": "run_status",
            "data": {"run_id": run.pk, "kind": "reward", "status": "failed", "error": TRACEBACK},
        },
        {
            "event": "iteration_status",
            "data": {"iteration": 1, "status": "failed", "error": TRACEBACK},
        },
        {"event": "comparisons_added", "data": {"count": 1}},
    ]


def _closed_by(change, user, path: str = "/ws/projects/demo/"):
    """Connect `user`, run `change` (sync), and return what the socket got next, then what
    a loop event sent afterwards brought it."""
    run = TrainingRun.objects.create(project=Membership.objects.first().project, kind="ppo")

    async def scenario():
        socket = communicator_for(user, path)
        connected, _ = await socket.connect()
        assert connected is True
        await sync_to_async(change)()
        closed = await socket.receive_output(timeout=5)
        await sync_to_async(lambda: run_record_metrics(run=run, values={"step": 1}))()
        after = await socket.receive_nothing(timeout=0.5)
        return closed, after

    return async_to_sync(scenario)()


@pytest.mark.parametrize("path", ["/ws/projects/demo/", "/ws/projects/demo/arena/"])
def test_ending_a_membership_closes_the_members_sockets(path, project, reviewer):
    membership = Membership.objects.get(user=reviewer, project=project)

    closed, nothing_after = _closed_by(
        lambda: services.membership_remove(project=membership.project, user=membership.user),
        reviewer,
        path,
    )

    assert closed == {"type": "websocket.close", "code": 4403}
    assert nothing_after is True


def test_deactivating_a_user_closes_their_sockets(project, reviewer):
    def deactivate() -> None:
        reviewer.is_active = False
        reviewer.save()

    closed, nothing_after = _closed_by(deactivate, reviewer)

    assert closed == {"type": "websocket.close", "code": 4403}
    assert nothing_after is True


def test_a_role_change_closes_the_socket_so_that_it_joins_again_with_the_new_role(
    project, reviewer
):
    closed, nothing_after = _closed_by(
        lambda: membership_set(project=project, user=reviewer, role="annotator"), reviewer
    )

    assert closed == {"type": "websocket.close", "code": 4403}
    assert nothing_after is True


def test_another_projects_membership_leaves_the_socket_open(project, reviewer):
    other = services.project_create(slug="other", name="Other", base_model="unused")
    membership_set(project=other, user=reviewer, role="annotator")

    async def scenario():
        socket = communicator_for(reviewer)
        await socket.connect()
        membership = await sync_to_async(Membership.objects.get)(user=reviewer, project=other)
        await sync_to_async(
            lambda: services.membership_remove(project=membership.project, user=membership.user)
        )()
        still_open = await socket.receive_nothing(timeout=0.5)
        await socket.disconnect()
        return still_open

    assert async_to_sync(scenario)() is True
