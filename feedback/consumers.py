"""Websocket of a project: loop events (new comparisons, run progress, new policy live)."""

from __future__ import annotations

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from feedback.events import arena_group, project_group
from feedback.models import Membership


class ProjectEventsConsumer(AsyncJsonWebsocketConsumer):
    """Members of the project only; anyone else is refused before the handshake completes."""

    async def connect(self) -> None:
        user = self.scope.get("user")
        slug = self.scope["url_route"]["kwargs"]["slug"]
        project_id = await self._project_id(user, slug)
        if project_id is None:
            await self.close(code=4403)
            return
        self.group = project_group(project_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def loop_event(self, message: dict) -> None:
        await self.send_json({"event": message["event"], "data": message["data"]})

    @database_sync_to_async
    def _project_id(self, user, slug: str) -> int | None:
        if user is None or not user.is_authenticated:
            return None
        return (
            Membership.objects.filter(user=user, project__slug=slug)
            .values_list("project_id", flat=True)
            .first()
        )


class ArenaConsumer(AsyncJsonWebsocketConsumer):
    """The annotator's own arena stream in one project: tokens of their battles only."""

    async def connect(self) -> None:
        user = self.scope.get("user")
        slug = self.scope["url_route"]["kwargs"]["slug"]
        project_id = await _member_project_id(user, slug)
        if project_id is None:
            await self.close(code=4403)
            return
        self.group = arena_group(project_id, user.pk)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def arena_event(self, message: dict) -> None:
        await self.send_json({"event": message["event"], "data": message["data"]})


@database_sync_to_async
def _member_project_id(user, slug: str) -> int | None:
    if user is None or not user.is_authenticated:
        return None
    return (
        Membership.objects.filter(user=user, project__slug=slug)
        .values_list("project_id", flat=True)
        .first()
    )
