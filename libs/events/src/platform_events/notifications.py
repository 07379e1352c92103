"""Notification sent event (topic ``platform.notifications.sent``, key = user id)."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Annotated, Final, Literal

from pydantic import Field

from platform_events._common import EpochMillis, EventModel, Id, ms_to_datetime, now_ms
from platform_events.messages import MAX_CONTENT_CHARS, MessageCreatedEvent

__all__ = [
    "DEFAULT_MENTION_TITLE",
    "MAX_TITLE_CHARS",
    "NOTIFICATION_SENT",
    "NotificationSentEvent",
    "new_mention_notification",
    "notification_id_for",
]

NOTIFICATION_SENT: Final = "notification.sent"
#: Title of a mention notification (the seed's ``'새 멘션'``, "new mention").
DEFAULT_MENTION_TITLE: Final = "새 멘션"
MAX_TITLE_CHARS: Final = 256

_NOTIFICATION_NAMESPACE: Final = uuid.UUID("6f1c3a52-5d0e-4c1e-9a43-2b7e8f0d9c11")


class NotificationSentEvent(EventModel):
    """A notification delivered to ``user_id`` because of message event ``event_id``."""

    event_type: Literal["notification.sent"] = NOTIFICATION_SENT
    notification_id: Id
    event_id: Id = Field(description="event_id of the source message event")
    user_id: Id
    message_id: Id
    channel_id: Id
    author_id: Id
    title: Annotated[str, Field(max_length=MAX_TITLE_CHARS)]
    body: Annotated[str, Field(max_length=MAX_CONTENT_CHARS)]
    created_at: EpochMillis = Field(description="Epoch milliseconds")

    @property
    def created_at_datetime(self) -> datetime:
        return ms_to_datetime(self.created_at)


def notification_id_for(event_id: str, user_id: str) -> str:
    """Deterministic notification id for (source event, user): ``ntf_<uuid5 hex>``.

    The same pair always yields the same id, so a redelivered message event produces the same notification
    (one notification per (event_id, user)) and the store can deduplicate on it.
    """
    name = json.dumps([event_id, user_id], ensure_ascii=False)
    return f"ntf_{uuid.uuid5(_NOTIFICATION_NAMESPACE, name).hex}"


def new_mention_notification(
    source: MessageCreatedEvent,
    user_id: str,
    *,
    title: str = DEFAULT_MENTION_TITLE,
    created_at: int | None = None,
) -> NotificationSentEvent:
    """The notification for ``user_id`` mentioned in ``source`` (id from :func:`notification_id_for`)."""
    payload = source.payload
    return NotificationSentEvent(
        notification_id=notification_id_for(source.event_id, user_id),
        event_id=source.event_id,
        user_id=user_id,
        message_id=payload.message_id,
        channel_id=payload.channel_id,
        author_id=payload.author_id,
        title=title,
        body=payload.content,
        created_at=now_ms() if created_at is None else created_at,
    )
