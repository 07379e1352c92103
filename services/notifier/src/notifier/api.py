"""The notifier's own HTTP API: list, mark read, live stream (SSE), preferences, live-tail status."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Header, HTTPException, Path, Query, Request
from pydantic import BaseModel, Field
from sse_starlette import EventSourceResponse, ServerSentEvent

from notifier import metrics as m
from notifier.config import Settings
from notifier.handlers import SeenIds, public
from notifier.live import LiveHub, NotificationTail
from notifier.store import NotificationStore

UserId = Annotated[str, Path(min_length=1, max_length=128, description="user id")]
ChannelId = Annotated[str, Path(min_length=1, max_length=128, description="channel id")]

STREAM_EVENT = "notification"
STREAM_RETRY_MS = 3000
#: A fresh connection also gets live notifications created this long before it connected.
FRESH_GRACE_MS = 5000


class Notification(BaseModel):
    notification_id: str
    user_id: str
    event_id: str = Field(description="event_id of the message event that mentioned the user")
    message_id: str
    channel_id: str
    author_id: str
    title: str
    body: str = Field(description="preview of the message content")
    created_at: int = Field(description="epoch ms when the notification was created (stream order)")
    message_timestamp: int | None = Field(None, description="epoch ms of the message event")
    read: bool
    read_at: int | None = Field(None, description="epoch ms when marked read")


class NotificationPage(BaseModel):
    user_id: str
    status: Literal["unread", "all"]
    items: list[Notification]
    total: int = Field(description="notifications matching status")
    unread: int
    limit: int
    offset: int


class MarkRead(BaseModel):
    ids: list[Annotated[str, Field(min_length=1, max_length=128)]] | None = Field(
        None, max_length=1000, description="notification ids to mark read"
    )
    all: bool = Field(False, description="mark every unread notification of the user read")


class MarkReadResult(BaseModel):
    user_id: str
    updated: int
    unread: int


class Preferences(BaseModel):
    user_id: str
    muted_channels: list[str] = Field(description="no notification is stored for mentions in these channels")


class PreferencesIn(BaseModel):
    muted_channels: list[Annotated[str, Field(min_length=1, max_length=128)]] = Field(max_length=10_000)


def api_router(
    *, settings: Settings, store: NotificationStore, hub: LiveHub, tail: NotificationTail | None
) -> APIRouter:
    router = APIRouter()

    # ------------------------------------------------------------------ notifications
    @router.get("/notifications/{user_id}", tags=["notifications"], summary="List a user's notifications")
    async def list_notifications(
        user_id: UserId,
        status: Annotated[Literal["unread", "all"], Query()] = "all",
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    ) -> NotificationPage:
        unread_only = status == "unread"
        docs = await store.page(user_id, unread_only=unread_only, limit=limit, offset=offset)
        unread = await store.count(user_id, unread_only=True)
        total = unread if unread_only else await store.count(user_id, unread_only=False)
        return NotificationPage(
            user_id=user_id,
            status=status,
            items=[Notification(**public(d)) for d in docs],
            total=total,
            unread=unread,
            limit=limit,
            offset=offset,
        )

    @router.post(
        "/notifications/{user_id}/read",
        tags=["notifications"],
        summary="Mark notifications read: the given ids, or all",
    )
    async def mark_many_read(user_id: UserId, body: Annotated[MarkRead, Body()]) -> MarkReadResult:
        if body.all == (body.ids is not None):
            raise HTTPException(422, "give either ids or all=true")
        updated = await store.mark_read(user_id, None if body.all else body.ids)
        return MarkReadResult(
            user_id=user_id, updated=updated, unread=await store.count(user_id, unread_only=True)
        )

    @router.post(
        "/notifications/{user_id}/{notification_id}/read",
        tags=["notifications"],
        summary="Mark one notification read (idempotent)",
    )
    async def mark_one_read(
        user_id: UserId, notification_id: Annotated[str, Path(max_length=128)]
    ) -> Notification:
        await store.mark_read(user_id, [notification_id])
        doc = await store.get(user_id, notification_id)
        if doc is None:
            raise HTTPException(404, f"notification {notification_id!r} of user {user_id!r} not found")
        return Notification(**public(doc))

    @router.get(
        "/notifications/{user_id}/stream",
        tags=["notifications"],
        summary="Live stream (Server-Sent Events); resume with the Last-Event-ID header",
        response_class=EventSourceResponse,
        responses={200: {"content": {"text/event-stream": {}}}},
    )
    async def stream(
        request: Request,
        user_id: UserId,
        last_event_id: Annotated[str | None, Header(max_length=128)] = None,
        after: Annotated[
            str | None,
            Query(max_length=128, description="same as Last-Event-ID (for clients without headers)"),
        ] = None,
    ) -> EventSourceResponse:
        resume_id = last_event_id or after
        cursor = await store.get(user_id, resume_id) if resume_id else None
        sub = hub.subscribe(user_id)  # before the catch-up query: nothing falls between the two
        overlap_ms = settings.stream_resume_overlap_ms
        # Live items older than this are not for this connection (already covered by the catch-up, or a
        # stale record the tail read at start).
        floor_ms = (
            cursor["created_at"] - overlap_ms if cursor else sub.created_ms - FRESH_GRACE_MS - overlap_ms
        )

        async def catch_up(
            seen: SeenIds, seq_from: int, after_key: tuple[int, str] | None
        ) -> AsyncIterator[dict[str, Any]]:
            while True:
                docs = await store.since(
                    user_id, seq_from=seq_from, after=after_key, limit=settings.stream_page_size
                )
                for doc in docs:
                    if seen.add(doc["_id"]):
                        yield doc
                if len(docs) < settings.stream_page_size:
                    return
                after_key = (docs[-1]["seq"], docs[-1]["_id"])

        def sse(item: dict[str, Any]) -> ServerSentEvent:
            m.LIVE_DELIVERED.inc()
            return ServerSentEvent(
                data=Notification(**item).model_dump_json(), event=STREAM_EVENT, id=item["notification_id"]
            )

        async def events() -> AsyncIterator[ServerSentEvent]:
            seen = SeenIds()
            newest_seq = sub.created_ms * 1000  # a lower bound of the seq of anything sent from here on
            try:
                yield ServerSentEvent(comment="connected", retry=STREAM_RETRY_MS)
                if cursor is not None:
                    seen.add(cursor["_id"])
                    if overlap_ms:  # several replicas: re-check a window before the cursor
                        first = catch_up(seen, cursor["seq"] - overlap_ms * 1000, None)
                    else:  # strictly after the cursor in stream order
                        first = catch_up(seen, cursor["seq"], (cursor["seq"], cursor["_id"]))
                    newest_seq = cursor["seq"]
                    async for doc in first:
                        newest_seq = max(newest_seq, doc["seq"])
                        yield sse(public(doc))
                while True:
                    item = await sub.queue.get()
                    if sub.overflowed:  # items were dropped: read them back from the store
                        sub.overflowed = False
                        async for doc in catch_up(seen, newest_seq - overlap_ms * 1000, None):
                            newest_seq = max(newest_seq, doc["seq"])
                            yield sse(public(doc))
                    if item is None:
                        return
                    if item["created_at"] < floor_ms or not seen.add(item["notification_id"]):
                        continue
                    # created_at (ms, taken before seq was assigned) bounds this item's seq from below
                    newest_seq = max(newest_seq, item["created_at"] * 1000)
                    yield sse(item)
            finally:
                hub.unsubscribe(sub)

        return EventSourceResponse(events(), ping=settings.stream_ping_s, send_timeout=30)

    # ------------------------------------------------------------------ preferences
    @router.get("/preferences/{user_id}", tags=["preferences"], summary="A user's notification preferences")
    async def get_preferences(user_id: UserId) -> Preferences:
        return Preferences(user_id=user_id, muted_channels=await store.get_preferences(user_id))

    @router.put("/preferences/{user_id}", tags=["preferences"], summary="Replace a user's muted channels")
    async def put_preferences(user_id: UserId, body: PreferencesIn) -> Preferences:
        return Preferences(
            user_id=user_id, muted_channels=await store.set_muted(user_id, body.muted_channels)
        )

    @router.put(
        "/preferences/{user_id}/muted-channels/{channel_id}",
        tags=["preferences"],
        summary="Mute a channel: mentions there create no notification",
    )
    async def mute(user_id: UserId, channel_id: ChannelId) -> Preferences:
        return Preferences(user_id=user_id, muted_channels=await store.mute(user_id, channel_id))

    @router.delete(
        "/preferences/{user_id}/muted-channels/{channel_id}", tags=["preferences"], summary="Unmute a channel"
    )
    async def unmute(user_id: UserId, channel_id: ChannelId) -> Preferences:
        return Preferences(user_id=user_id, muted_channels=await store.unmute(user_id, channel_id))

    # ------------------------------------------------------------------ live status
    @router.get("/live/status", tags=["operations"], summary="The live tail and open stream connections")
    async def live_status() -> dict[str, Any]:
        if tail is None:
            return {"enabled": False, "connections": hub.connections, "at": time.time()}
        return {"enabled": True, **tail.status()}

    return router
