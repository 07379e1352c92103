"""Pure functions: message events → notification documents, publish decisions, source positions.

Nothing here performs I/O; the store and the sink call these and the unit tests check them without servers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from platform_events import MessageCreatedEvent, NotificationSentEvent, notification_id_for

_NUMBER: Final = re.compile(r"[0-9]{1,18}")

#: Characters kept from the message text in the notification body (an ellipsis marks a cut).
ELLIPSIS: Final = "…"


@dataclass(frozen=True, slots=True)
class Source:
    """Where a message event was read: its Kafka topic, partition and offset."""

    topic: str
    partition: int
    offset: int

    @property
    def partition_key(self) -> tuple[str, int]:
        return (self.topic, self.partition)


def recipients(event: MessageCreatedEvent) -> list[str]:
    """Users to notify: mentions deduplicated in first-mention order, the author excluded."""
    author = event.payload.author_id
    return [user for user in event.payload.mentioned_users if user != author]


def preview(content: str, limit: int) -> str:
    """The notification body: the message text, cut to ``limit`` characters (ending in ``…`` when cut)."""
    text = " ".join(content.split())  # newlines/tabs collapse: a preview is one line
    if len(text) <= limit:
        return text
    return text[: max(0, limit - 1)].rstrip() + ELLIPSIS


def plan(
    event: MessageCreatedEvent,
    source: Source,
    *,
    muted: Mapping[str, frozenset[str]],
    created_at: int,
    title: str,
    preview_chars: int,
) -> tuple[list[dict[str, Any]], list[str]]:
    """Documents to insert for one event, and the recipients skipped because they muted the channel.

    ``_id`` is :func:`platform_events.notification_id_for` (event_id, user): the same event always yields
    the same ids, so the store's unique keys turn a redelivery into "already stored".
    """
    payload = event.payload
    docs: list[dict[str, Any]] = []
    skipped: list[str] = []
    for user in recipients(event):
        if payload.channel_id in muted.get(user, frozenset()):
            skipped.append(user)
            continue
        docs.append(
            {
                "_id": notification_id_for(event.event_id, user),
                "user_id": user,
                "event_id": event.event_id,
                "message_id": payload.message_id,
                "channel_id": payload.channel_id,
                "author_id": payload.author_id,
                "title": title,
                "body": preview(payload.content, preview_chars),
                "created_at": created_at,
                "message_timestamp": event.timestamp,
                "read": False,
                "read_at": None,
                "source": {"topic": source.topic, "partition": source.partition, "offset": source.offset},
            }
        )
    return docs, skipped


#: Headers of a ``platform.notifications.sent`` record: the position of the message event it came from
#: (the stream cursor of every replica, see cursor.py). Headers, not event fields: the schema is a contract.
SOURCE_TOPIC_HEADER: Final = "notifier.source.topic"
SOURCE_PARTITION_HEADER: Final = "notifier.source.partition"
SOURCE_OFFSET_HEADER: Final = "notifier.source.offset"


def source_of(doc: Mapping[str, Any]) -> Source | None:
    """Where a stored notification's message event was read (None when the document does not say)."""
    src = doc.get("source")
    if not isinstance(src, Mapping):
        return None
    topic, partition, offset = src.get("topic"), src.get("partition"), src.get("offset")
    if not isinstance(topic, str) or not isinstance(partition, int) or not isinstance(offset, int):
        return None
    if isinstance(partition, bool) or isinstance(offset, bool) or partition < 0 or offset < 0:
        return None
    return Source(topic, partition, offset)


def source_headers(source: Source | None) -> list[tuple[str, bytes]] | None:
    """The position headers of a published notification (None when its position is unknown)."""
    if source is None:
        return None
    return [
        (SOURCE_TOPIC_HEADER, source.topic.encode()),
        (SOURCE_PARTITION_HEADER, str(source.partition).encode()),
        (SOURCE_OFFSET_HEADER, str(source.offset).encode()),
    ]


def source_from_headers(headers: Sequence[tuple[str, bytes]] | None) -> Source | None:
    """The position a live record carries in its headers, or None (older records have none)."""
    values: dict[str, bytes] = {}
    for name, value in headers or ():
        if name in (SOURCE_TOPIC_HEADER, SOURCE_PARTITION_HEADER, SOURCE_OFFSET_HEADER):
            values[name] = value
    try:
        topic = values[SOURCE_TOPIC_HEADER].decode()
        partition = values[SOURCE_PARTITION_HEADER].decode()
        offset = values[SOURCE_OFFSET_HEADER].decode()
    except (KeyError, UnicodeDecodeError):
        return None
    if not topic or not _NUMBER.fullmatch(partition) or not _NUMBER.fullmatch(offset):
        return None
    return Source(topic, int(partition), int(offset))


def publish_order(docs: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Documents to publish in source position order (so every partition's notifications are published,
    and so streamed live, in offset order — the stream cursor relies on it); unplaceable ones last."""

    def key(doc: Mapping[str, Any]) -> tuple[int, str, int, int]:
        src = source_of(doc)
        return (1, "", 0, 0) if src is None else (0, src.topic, src.partition, src.offset)

    return sorted(docs, key=key)


def to_event(doc: Mapping[str, Any]) -> NotificationSentEvent:
    """The ``platform.notifications.sent`` event for a stored notification document."""
    return NotificationSentEvent(
        notification_id=doc["_id"],
        event_id=doc["event_id"],
        user_id=doc["user_id"],
        message_id=doc["message_id"],
        channel_id=doc["channel_id"],
        author_id=doc["author_id"],
        title=doc["title"],
        body=doc["body"],
        created_at=doc["created_at"],
    )


def already_published(doc: Mapping[str, Any], checkpoints: Mapping[tuple[str, int], int]) -> bool:
    """Whether a notification found already stored was published before.

    The sink advances a per-(topic, partition) checkpoint to the last offset whose notifications were all
    published; a stored notification whose source offset is at or below it has been published. One without
    a source position (written by something else) counts as published: never republish what we cannot place.
    """
    src = source_of(doc)
    if src is None:
        return True
    done = checkpoints.get(src.partition_key)
    return done is not None and src.offset <= done


def checkpoint_advances(sources: Iterable[Source]) -> dict[tuple[str, int], int]:
    """The highest offset per (topic, partition) in a batch: what the publish checkpoint moves to."""
    out: dict[tuple[str, int], int] = {}
    for src in sources:
        key = src.partition_key
        out[key] = max(out.get(key, -1), src.offset)
    return out


def public(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A stored notification as the HTTP API and the stream show it."""
    return {
        "notification_id": doc["_id"],
        "user_id": doc["user_id"],
        "event_id": doc["event_id"],
        "message_id": doc["message_id"],
        "channel_id": doc["channel_id"],
        "author_id": doc["author_id"],
        "title": doc["title"],
        "body": doc["body"],
        "created_at": doc["created_at"],
        "message_timestamp": doc.get("message_timestamp"),
        "read": bool(doc.get("read", False)),
        "read_at": doc.get("read_at"),
    }


def public_from_event(event: NotificationSentEvent) -> dict[str, Any]:
    """A live ``notification.sent`` event in the same shape as :func:`public` (a new one is unread)."""
    return {
        "notification_id": event.notification_id,
        "user_id": event.user_id,
        "event_id": event.event_id,
        "message_id": event.message_id,
        "channel_id": event.channel_id,
        "author_id": event.author_id,
        "title": event.title,
        "body": event.body,
        "created_at": event.created_at,
        "message_timestamp": None,
        "read": False,
        "read_at": None,
    }


class SeenIds:
    """The ids a stream connection already sent, bounded (oldest forgotten first)."""

    def __init__(self, limit: int = 10_000) -> None:
        self._limit = limit
        self._ids: dict[str, None] = {}

    def add(self, notification_id: str) -> bool:
        """Remember the id; False when it was already sent (the caller skips it)."""
        if notification_id in self._ids:
            return False
        self._ids[notification_id] = None
        if len(self._ids) > self._limit:
            del self._ids[next(iter(self._ids))]
        return True

    def __contains__(self, notification_id: object) -> bool:
        return notification_id in self._ids


def split_bulk_errors(count: int, errors: Sequence[Mapping[str, Any]]) -> tuple[set[int], dict[int, str]]:
    """From a bulk insert's write errors: the indexes that were duplicates, and the other failures."""
    duplicates: set[int] = set()
    failures: dict[int, str] = {}
    for err in errors:
        index = err.get("index")
        if not isinstance(index, int) or not 0 <= index < count:
            continue
        if err.get("code") == 11000:
            duplicates.add(index)
        else:
            failures[index] = str(err.get("errmsg") or err)
    return duplicates, failures
