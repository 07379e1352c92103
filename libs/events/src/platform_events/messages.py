"""Collaboration message events (topics ``platform.messages.created|updated|deleted``)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, ClassVar, Final, Literal, Self

from pydantic import Field, PlainValidator, TypeAdapter, field_validator
from pydantic_core import PydanticCustomError

from platform_events._common import EventModel, EventTimeMillis, Id, ms_to_datetime, new_event_id, now_ms

__all__ = [
    "MAX_CONTENT_CHARS",
    "MESSAGE_CREATED",
    "MESSAGE_DELETED",
    "MESSAGE_EVENT_ADAPTER",
    "MESSAGE_UPDATED",
    "Attachment",
    "MessageCreatedEvent",
    "MessageCreatedPayload",
    "MessageDeletedEvent",
    "MessageDeletedPayload",
    "MessageEvent",
    "MessageEventType",
    "MessageUpdatedEvent",
    "MessageUpdatedPayload",
]

MESSAGE_CREATED: Final = "message.created"
MESSAGE_UPDATED: Final = "message.updated"
MESSAGE_DELETED: Final = "message.deleted"

MessageEventType = Literal["message.created", "message.updated", "message.deleted"]

#: Longest message text accepted (characters), the limit chat products commonly use.
MAX_CONTENT_CHARS: Final = 40_000

Content = Annotated[str, Field(max_length=MAX_CONTENT_CHARS)]


def _attachment(value: Any) -> dict[str, Any] | str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and all(isinstance(key, str) for key in value):
        return value
    raise PydanticCustomError("attachment_type", "an attachment should be an object or a string")


#: An attachment is free-form: an object (e.g. ``{"url": ..., "name": ...}``) or a string (e.g. a URL),
#: kept exactly as sent.
Attachment = Annotated[
    dict[str, Any] | str,
    PlainValidator(_attachment, json_schema_input_type=dict[str, Any] | str),
]


# -------------------------------------------------------------------------------------------------- payloads
class _MessagePayload(EventModel):
    message_id: Id
    channel_id: Id


class MessageCreatedPayload(_MessagePayload):
    """A new message. ``mentions`` and ``attachments`` default to ``[]`` (``null`` is read as ``[]``)."""

    author_id: Id
    content: Content
    mentions: list[Id] = Field(default_factory=list)
    attachments: list[Attachment] = Field(default_factory=list)

    @field_validator("mentions", "attachments", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        # Producers written like ``mentions || []`` may send null for "none".
        return [] if value is None else value

    @property
    def mentioned_users(self) -> tuple[str, ...]:
        """Mentioned user ids, duplicates removed, in first-mention order."""
        return tuple(dict.fromkeys(self.mentions))


class MessageUpdatedPayload(_MessagePayload):
    """New content of an existing message. ``author_id``/``mentions``: ``None`` = not sent (unchanged)."""

    content: Content
    author_id: Id | None = None
    mentions: list[Id] | None = None


class MessageDeletedPayload(_MessagePayload):
    """A removed message: ``message_id`` and ``channel_id`` are all that is needed."""


# ------------------------------------------------------------------------------------------------ envelopes
class _MessageEvent(EventModel):
    EVENT_TYPE: ClassVar[str]

    event_type: str
    event_id: Id
    timestamp: EventTimeMillis = Field(
        description="Epoch milliseconds; at most MAX_CLOCK_SKEW (default 5 minutes) ahead of the receiver"
    )
    payload: _MessagePayload

    @property
    def occurred_at(self) -> datetime:
        """``timestamp`` as an aware UTC datetime."""
        return ms_to_datetime(self.timestamp)

    @property
    def channel_id(self) -> str:
        """The Kafka key of every message topic."""
        return self.payload.channel_id

    @property
    def message_id(self) -> str:
        return self.payload.message_id

    @classmethod
    def new(
        cls,
        payload: _MessagePayload | Mapping[str, Any],
        *,
        event_id: str | None = None,
        timestamp: int | None = None,
    ) -> Self:
        """Build an event of this type with a generated ``event_id`` and the current epoch-ms time."""
        data = payload.model_dump(mode="json") if isinstance(payload, EventModel) else dict(payload)
        return cls.model_validate(
            {
                "event_type": cls.EVENT_TYPE,
                "event_id": event_id or new_event_id(),
                "timestamp": now_ms() if timestamp is None else timestamp,
                "payload": data,
            }
        )


class MessageCreatedEvent(_MessageEvent):
    """``{"event_type": "message.created", "event_id", "timestamp" (epoch ms), "payload": {...}}``."""

    EVENT_TYPE: ClassVar[str] = MESSAGE_CREATED

    event_type: Literal["message.created"]
    payload: MessageCreatedPayload


class MessageUpdatedEvent(_MessageEvent):
    """``event_type`` ``message.updated``; the payload carries the new content."""

    EVENT_TYPE: ClassVar[str] = MESSAGE_UPDATED

    event_type: Literal["message.updated"]
    payload: MessageUpdatedPayload


class MessageDeletedEvent(_MessageEvent):
    """``event_type`` ``message.deleted``; the payload carries at least ``message_id`` and ``channel_id``."""

    EVENT_TYPE: ClassVar[str] = MESSAGE_DELETED

    event_type: Literal["message.deleted"]
    payload: MessageDeletedPayload


#: Any message event, discriminated by ``event_type`` (e.g. for a consumer of all three topics).
MessageEvent = Annotated[
    MessageCreatedEvent | MessageUpdatedEvent | MessageDeletedEvent,
    Field(discriminator="event_type"),
]

MESSAGE_EVENT_ADAPTER: TypeAdapter[MessageCreatedEvent | MessageUpdatedEvent | MessageDeletedEvent] = (
    TypeAdapter(MessageEvent)
)
