"""Wide log event (topic ``log-events``): one JSON object per finished request/job."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar, Final, Self

from pydantic import AfterValidator, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError, PydanticSerializationError

from platform_events._common import (
    NON_BLANK_SCHEMA,
    EventModel,
    Id,
    UtcDatetime,
    new_event_id,
    non_blank,
    utc_now,
)

__all__ = ["MAX_SERVICE_CHARS", "MAX_WIDE_EVENT_BYTES", "WideLogEvent"]

#: Largest encoded wide event (UTF-8 JSON bytes). A wide event is the context of *one* request/job; anything
#: bigger is almost always a bug (a dumped request body, an unbounded list). 256 KiB also stays under Azure
#: Event Hubs' smallest tier (256 KB) and well under Kafka's default 1 MiB ``max.message.bytes``, so a
#: producer never builds an event the broker or the log-sink would refuse.
MAX_WIDE_EVENT_BYTES: Final = 256 * 1024

MAX_SERVICE_CHARS: Final = 128

ServiceName = Annotated[
    str, Field(min_length=1, max_length=MAX_SERVICE_CHARS), AfterValidator(non_blank), NON_BLANK_SCHEMA
]


class WideLogEvent(EventModel):
    """``{"event_id": ..., "timestamp": ..., "service": ..., <any context fields>}``.

    - Context fields are kept as-is (``extra="allow"``) and round-trip unchanged; read them with
      :meth:`context` or as attributes.
    - ``timestamp``: ISO-8601 string (naive = UTC) **or** a JSON number of epoch *milliseconds*
      (``Date.now()``); numbers that look like epoch seconds are refused rather than misread.
      Held as aware UTC, written back as ISO-8601 ``...Z``.
    - The encoded event may not exceed :data:`MAX_WIDE_EVENT_BYTES`; checked at construction, in ``decode``
      and in ``encode``.
    """

    model_config = ConfigDict(extra="allow")

    MAX_BYTES: ClassVar[int] = MAX_WIDE_EVENT_BYTES

    event_id: Id
    timestamp: UtcDatetime
    service: ServiceName

    @model_validator(mode="after")
    def _check_size(self) -> Self:
        try:
            size = len(self.model_dump_json().encode("utf-8"))
        except PydanticSerializationError as exc:
            raise PydanticCustomError(
                "not_json_serializable",
                "context fields must be JSON-serialisable: {error}",
                {"error": str(exc)},
            ) from None
        except UnicodeEncodeError:
            raise PydanticCustomError(
                "not_json_serializable", "context fields contain text that is not valid Unicode"
            ) from None
        if size > MAX_WIDE_EVENT_BYTES:
            raise PydanticCustomError(
                "too_large",
                "wide event is {size} bytes encoded; the limit is {limit} bytes (256 KiB): "
                "trim large context fields (bodies, stack traces, lists)",
                {"size": size, "limit": MAX_WIDE_EVENT_BYTES},
            )
        return self

    @classmethod
    def new(
        cls,
        service: str,
        *,
        event_id: str | None = None,
        timestamp: datetime | None = None,
        **context: Any,
    ) -> Self:
        """Build a wide event with a generated ``event_id`` (``evt_<uuid4 hex>``) and the current time."""
        return cls.model_validate(
            {
                **context,
                "event_id": event_id or new_event_id(),
                "timestamp": timestamp or utc_now(),
                "service": service,
            }
        )

    def context(self) -> dict[str, Any]:
        """The context fields (everything except ``event_id``, ``timestamp``, ``service``), as a copy."""
        return dict(self.model_extra or {})
