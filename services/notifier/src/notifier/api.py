"""The notifier's own HTTP API: list, mark read, live stream (SSE), preferences, live-tail status."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from consumer_runtime.answers import (
    NOTIFICATION_STREAM_EVENT,
    NOTIFICATION_STREAM_RESPONSE,
    MarkReadResult,
    Notification,
    NotificationPage,
    Preferences,
)
from fastapi import APIRouter, Body, Header, HTTPException, Path, Query, Request
from platform_events import TOPIC_MESSAGES_CREATED
from pydantic import BaseModel, Field
from sse_starlette import EventSourceResponse, ServerSentEvent

from notifier import metrics as m
from notifier.config import Settings
from notifier.cursor import MAX_CURSOR_CHARS, LegacyResume, StreamCursor, parse_resume
from notifier.handlers import SeenIds, Source, public, source_of
from notifier.live import RESYNC, LiveHub, LiveItem, NotificationTail
from notifier.store import NotificationStore

UserId = Annotated[str, Path(min_length=1, max_length=128, description="user id")]
ChannelId = Annotated[str, Path(min_length=1, max_length=128, description="channel id")]

STREAM_RETRY_MS = 3000
#: Live notifications that cannot be placed by position (from another topic than the one consumed here)
#: are sent if created at most this long before the stream connected.
FRESH_GRACE_MS = 5000


class MarkRead(BaseModel):
    ids: list[Annotated[str, Field(min_length=1, max_length=128)]] | None = Field(
        None, max_length=1000, description="notification ids to mark read"
    )
    all: bool = Field(False, description="mark every unread notification of the user read")


class LiveStatus(BaseModel):
    """The live tail (disabled: only ``enabled``, ``connections`` and ``at``)."""

    enabled: bool
    connections: int = Field(description="open stream connections on this replica")
    at: float | None = Field(None, description="epoch seconds of the answer (tail disabled)")
    topic: str | None = Field(None, description="the topic the tail reads (tail enabled)")
    connected: bool | None = None
    records: int | None = Field(None, description="records the tail has read")
    last_error: str | None = None


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
        description="Every `id` is an opaque cursor (the positions of the message events sent so far); "
        "reconnecting with it (`Last-Event-ID`, or `?after=`) sends exactly what came after it, on any "
        "replica. A notification id of the earlier stream is still accepted (approximate resume).",
        response_class=EventSourceResponse,
        responses={200: NOTIFICATION_STREAM_RESPONSE},
    )
    async def stream(
        request: Request,
        user_id: UserId,
        last_event_id: Annotated[str | None, Header(max_length=MAX_CURSOR_CHARS)] = None,
        after: Annotated[
            str | None,
            Query(
                max_length=MAX_CURSOR_CHARS, description="same as Last-Event-ID (for clients without headers)"
            ),
        ] = None,
    ) -> EventSourceResponse:
        topic = settings.topic(TOPIC_MESSAGES_CREATED).name
        resume = parse_resume(last_event_id or after)
        sub = hub.subscribe(user_id)  # before any store read: nothing published from here on is missed
        try:
            legacy_from: tuple[int, str | None] | None = None
            if isinstance(resume, StreamCursor):
                cursor = resume
            else:  # a fresh stream starts after everything already published (the publish checkpoints)
                checkpoints = await store.get_checkpoints([topic])
                cursor = StreamCursor({p: o for (t, p), o in checkpoints.items() if t == topic})
                if isinstance(resume, LegacyResume):
                    legacy_from = await legacy_start(user_id, resume)
        except BaseException:
            hub.unsubscribe(sub)
            raise
        overlap_us = settings.stream_resume_overlap_ms * 1000
        # live items that cannot be placed by position (another topic's): not older than this
        floor_ms = sub.created_ms - FRESH_GRACE_MS

        def sse(item: dict[str, Any], event_id: str) -> ServerSentEvent:
            m.LIVE_DELIVERED.inc()
            return ServerSentEvent(
                data=Notification(**item).model_dump_json(), event=NOTIFICATION_STREAM_EVENT, id=event_id
            )

        async def catch_up(seen: SeenIds) -> AsyncIterator[ServerSentEvent]:
            """Everything stored strictly after the cursor, in (partition, offset) order; moves the cursor."""
            while True:
                docs = await store.after_cursor(
                    user_id, topic, cursor.as_dict(), limit=settings.stream_page_size
                )
                moved = False
                for doc in docs:
                    src = source_of(doc)
                    if src is None or not cursor.advance(src.partition, src.offset):
                        continue
                    moved = True
                    if seen.add(doc["_id"]):
                        yield sse(public(doc), cursor.encode())
                if len(docs) < settings.stream_page_size or not moved:
                    return

        async def legacy_catch_up(
            seen: SeenIds, seq: int, last_id: str | None
        ) -> AsyncIterator[ServerSentEvent]:
            """The earlier resume (by ``seq``, this replica's clock): sent with their own ids, as before."""
            after_key = None if overlap_us or last_id is None else (seq, last_id)
            seq_from = seq - overlap_us if overlap_us or last_id is not None else seq + 1
            if last_id is not None:
                seen.add(last_id)
            while True:
                docs = await store.since(
                    user_id, seq_from=seq_from, after=after_key, limit=settings.stream_page_size
                )
                for doc in docs:
                    if seen.add(doc["_id"]):
                        yield sse(public(doc), doc["_id"])
                if len(docs) < settings.stream_page_size:
                    return
                after_key = (docs[-1]["seq"], docs[-1]["_id"])

        async def place(entry: LiveItem) -> Source | None:
            if entry.source is not None:
                return entry.source
            # a record published without a position (before this version): the stored document has it
            doc = await store.get(user_id, entry.item["notification_id"])
            return source_of(doc) if doc is not None else None

        async def events() -> AsyncIterator[ServerSentEvent]:
            seen = SeenIds()
            try:
                # the cursor as the first id: a client that reconnects before any notification resumes here
                yield ServerSentEvent(
                    comment="connected", retry=STREAM_RETRY_MS, id=None if legacy_from else cursor.encode()
                )
                if legacy_from is not None:
                    async for event in legacy_catch_up(seen, *legacy_from):
                        yield event
                    yield ServerSentEvent(id=cursor.encode())  # from here on: the exact cursor
                async for event in catch_up(seen):
                    yield event
                while True:
                    entry = await sub.queue.get()
                    if sub.overflowed:  # items may have been missed: read them back from the store
                        sub.overflowed = False
                        async for event in catch_up(seen):
                            yield event
                    if entry is None:
                        return
                    if entry is RESYNC:
                        continue
                    item = entry.item
                    src = await place(entry)
                    if src is not None and src.topic == topic:
                        # strictly after the cursor in its partition, or already sent (catch-up, an earlier
                        # connection, a stale record the tail read at start)
                        if not cursor.advance(src.partition, src.offset) or not seen.add(
                            item["notification_id"]
                        ):
                            continue
                    elif item["created_at"] < floor_ms or not seen.add(item["notification_id"]):
                        continue
                    yield sse(item, cursor.encode())
            finally:
                hub.unsubscribe(sub)

        return EventSourceResponse(events(), ping=settings.stream_ping_s, send_timeout=30)

    async def legacy_start(user_id: str, resume: LegacyResume) -> tuple[int, str | None] | None:
        """Where a legacy resume id starts: (seq, notification id) of a stored notification, or a bare seq."""
        if resume.seq is not None:
            return (resume.seq, None)
        if resume.notification_id is None:
            return None
        doc = await store.get(user_id, resume.notification_id)
        if doc is None or not isinstance(doc.get("seq"), int):
            return None  # unknown id: a fresh stream
        return (doc["seq"], doc["_id"])

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
    @router.get(
        "/live/status",
        tags=["operations"],
        summary="The live tail and open stream connections",
        response_model=LiveStatus,
        response_model_exclude_unset=True,
    )
    async def live_status() -> dict[str, Any]:
        if tail is None:
            return {"enabled": False, "connections": hub.connections, "at": time.time()}
        return {"enabled": True, **tail.status()}

    return router
