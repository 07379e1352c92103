"""User activity event (topic ``platform.users.activity``, key = user id)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, Final, Self

from pydantic import AfterValidator, Field, field_validator

from platform_events._common import (
    NON_BLANK_SCHEMA,
    EpochMillis,
    EventModel,
    Id,
    ms_to_datetime,
    new_event_id,
    non_blank,
    now_ms,
)

__all__ = ["MAX_ACTIVITY_CHARS", "UserActivityEvent"]

MAX_ACTIVITY_CHARS: Final = 128

ActivityName = Annotated[
    str, Field(min_length=1, max_length=MAX_ACTIVITY_CHARS), AfterValidator(non_blank), NON_BLANK_SCHEMA
]


class UserActivityEvent(EventModel):
    """Something a user did (``"login"``, ``"message.sent"``, ...) with free-form ``attributes``."""

    event_id: Id
    user_id: Id
    activity: ActivityName
    timestamp: EpochMillis = Field(description="Epoch milliseconds")
    attributes: dict[str, Any] = Field(default_factory=dict)

    @field_validator("attributes", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return {} if value is None else value

    @property
    def occurred_at(self) -> datetime:
        return ms_to_datetime(self.timestamp)

    @classmethod
    def new(
        cls,
        user_id: str,
        activity: str,
        attributes: Mapping[str, Any] | None = None,
        *,
        event_id: str | None = None,
        timestamp: int | None = None,
    ) -> Self:
        """Build an activity event with a generated ``event_id`` and the current epoch-ms time."""
        return cls(
            event_id=event_id or new_event_id(),
            user_id=user_id,
            activity=activity,
            timestamp=now_ms() if timestamp is None else timestamp,
            attributes=dict(attributes or {}),
        )
