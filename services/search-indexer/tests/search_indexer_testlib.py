"""Helpers shared by the search-indexer tests (unique basename: tests share one import namespace)."""

from __future__ import annotations

import itertools
import uuid
from typing import Any

from elasticsearch import AsyncElasticsearch
from platform_events import MessageCreatedEvent, MessageDeletedEvent, MessageUpdatedEvent, encode

BASE_TS = 1_700_000_000_000
_seq = itertools.count()


def unique_alias() -> str:
    return f"t-si-{uuid.uuid4().hex[:10]}"


def created(
    mid: str,
    content: str,
    *,
    ts: int,
    channel: str = "ch_dev",
    author: str = "user_001",
    mentions: list[str] | None = None,
    event_id: str | None = None,
) -> MessageCreatedEvent:
    return MessageCreatedEvent.new(
        {
            "message_id": mid,
            "channel_id": channel,
            "author_id": author,
            "content": content,
            "mentions": mentions or [],
            "attachments": [],
        },
        event_id=event_id or f"evt_c_{mid}_{next(_seq)}",
        timestamp=BASE_TS + ts,
    )


def updated(
    mid: str,
    content: str,
    *,
    ts: int,
    channel: str = "ch_dev",
    event_id: str | None = None,
    author: str | None = None,
) -> MessageUpdatedEvent:
    payload: dict[str, Any] = {"message_id": mid, "channel_id": channel, "content": content}
    if author is not None:
        payload["author_id"] = author
    return MessageUpdatedEvent.new(
        payload, event_id=event_id or f"evt_u_{mid}_{next(_seq)}", timestamp=BASE_TS + ts
    )


def deleted(
    mid: str, *, ts: int, channel: str = "ch_dev", event_id: str | None = None
) -> MessageDeletedEvent:
    return MessageDeletedEvent.new(
        {"message_id": mid, "channel_id": channel},
        event_id=event_id or f"evt_d_{mid}_{next(_seq)}",
        timestamp=BASE_TS + ts,
    )


def raw(event: Any) -> bytes:
    return encode(event)


async def drop_alias_indices(es: AsyncElasticsearch, alias: str) -> None:
    """Delete every index a test created for ``alias`` (named ``<alias>-*``), and the alias with them."""
    resp = await es.options(ignore_status=404).indices.get(index=f"{alias}-*", expand_wildcards="all")
    names = [n for n in (resp.body if resp.meta.status == 200 else {}) if n.startswith(f"{alias}-")]
    for name in names:
        await es.options(ignore_status=404).indices.delete(index=name)
