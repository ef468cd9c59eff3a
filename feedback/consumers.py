"""Websockets of a project: loop events (new comparisons, run progress, new policy live), and
the annotator's arena stream. Members only; a socket closes when its user's membership ends or
changes, or the user is deactivated (feedback.events.user_sockets_close)."""

from __future__ import annotations

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from feedback.events import arena_group, project_group, staff_group, user_group
from feedback.models import Membership

STAFF_ROLES = (Membership.Role.REVIEWER, Membership.Role.ADMIN)
CLOSED_FOR_ACCESS = 4403  # refused, or closed when the user's access changed


class _MemberSocket(AsyncJsonWebsocketConsumer):
    """A socket of a project's member, in `groups_for(project_id, role)` and its user's
    group; refused to anyone else before the handshake completes."""

    async def connect(self) -> None:
        user = self.scope.get("user")
        slug = self.scope["url_route"]["kwargs"]["slug"]
        membership = await _membership(user, slug)
        if membership is None:
            await self.close(code=CLOSED_FOR_ACCESS)
            return
        self.project_id, role = membership
        self.joined = [*self.groups_for(self.project_id, user.pk, role), user_group(user.pk)]
        for group in self.joined:
            await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()

    def groups_for(self, project_id: int, user_id: int, role: str) -> list[str]:
        raise NotImplementedError

    async def disconnect(self, code: int) -> None:
        await self._leave()

    async def _leave(self) -> None:
        for group in getattr(self, "joined", []):
            await self.channel_layer.group_discard(group, self.channel_name)
        self.joined = []

    async def access_ended(self, message: dict) -> None:
        if message["project_id"] in (None, self.project_id):
            await self._leave()  # nothing more reaches it while the close goes out
            await self.close(code=CLOSED_FOR_ACCESS)


class ProjectEventsConsumer(_MemberSocket):
    """The loop's events: annotators hear what they need (new comparisons, a new policy,
    iterations without their error text), reviewers and admins everything."""

    def groups_for(self, project_id: int, user_id: int, role: str) -> list[str]:
        return [staff_group(project_id) if role in STAFF_ROLES else project_group(project_id)]

    async def loop_event(self, message: dict) -> None:
        await self.send_json({"event": message["event"], "data": message["data"]})


class ArenaConsumer(_MemberSocket):
    """The annotator's own arena stream in one project: tokens of their battles only."""

    def groups_for(self, project_id: int, user_id: int, role: str) -> list[str]:
        return [arena_group(project_id, user_id)]

    async def arena_event(self, message: dict) -> None:
        await self.send_json({"event": message["event"], "data": message["data"]})


@database_sync_to_async
def _membership(user, slug: str) -> tuple[int, str] | None:
    """(project id, role) of an active user's membership of the project `slug`, or None."""
    if user is None or not user.is_authenticated or not user.is_active:
        return None
    return (
        Membership.objects.filter(user=user, project__slug=slug)
        .values_list("project_id", "role")
        .first()
    )
