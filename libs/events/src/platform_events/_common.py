"""Shared building blocks of the event models: base model, field types, time helpers.

Nothing here performs I/O. Reading the clock (``utc_now``/``now_ms``) and generating random ids
(``new_event_id``) are the only side effects.
"""

from __future__ import annotations

import functools
import os
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, ClassVar, Final

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    PlainSerializer,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError

__all__ = [
    "DEFAULT_MAX_CLOCK_SKEW",
    "MAX_CLOCK_SKEW_ENV",
    "MAX_EPOCH_MS",
    "MAX_EVENT_BYTES",
    "MAX_ID_CHARS",
    "MIN_EPOCH_NUMBER_MS",
    "NON_BLANK_PATTERN",
    "NON_BLANK_SCHEMA",
    "EpochMillis",
    "EventModel",
    "EventTime",
    "EventTimeMillis",
    "Id",
    "UtcDatetime",
    "datetime_to_ms",
    "format_timestamp",
    "max_clock_skew",
    "ms_to_datetime",
    "new_event_id",
    "non_blank",
    "not_in_future",
    "not_in_future_ms",
    "now_ms",
    "parse_timestamp",
    "to_utc",
    "utc_now",
]

#: Default upper bound for one encoded event (bytes). Kafka's default ``max.message.bytes`` is ~1 MiB, so
#: anything bigger would be refused by the broker anyway; ``WideLogEvent`` uses a smaller limit.
MAX_EVENT_BYTES: Final = 1024 * 1024

#: Identifiers (event/message/channel/user ids): at most 128 characters, i.e. at most 512 UTF-8 bytes, which
#: is Elasticsearch's ``_id`` limit and comfortably fits an indexed utf8mb4 VARCHAR and a Kafka key.
MAX_ID_CHARS: Final = 128

#: Epoch milliseconds of 9999-12-31T23:59:59.999Z, the last instant a Python ``datetime`` can hold.
MAX_EPOCH_MS: Final = 253_402_300_799_999

#: JSON numbers given where an ISO-8601 timestamp is expected are read as epoch *milliseconds*. Values below
#: this (1973-03-03T09:46:40Z in ms, but 5138 AD if they were seconds) are refused as "probably seconds".
MIN_EPOCH_NUMBER_MS: Final = 100_000_000_000

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_TIMESTAMP_CHARS: Final = 64
_NOT_ISO: Final = "input should be an ISO-8601 datetime string (e.g. 2025-08-08T17:05:37.123Z)"


# --------------------------------------------------------------------------------------------- time helpers
def utc_now() -> datetime:
    """The current time as an aware UTC datetime."""
    return datetime.now(UTC)


def now_ms() -> int:
    """The current time in epoch milliseconds (what JavaScript's ``Date.now()`` returns)."""
    return time.time_ns() // 1_000_000


def new_event_id() -> str:
    """A fresh, globally unique event id: ``evt_<uuid4 hex>``."""
    return f"evt_{uuid.uuid4().hex}"


def to_utc(value: datetime) -> datetime:
    """Normalise a datetime to aware UTC. A naive datetime is *interpreted* as UTC (not local time)."""
    if value.tzinfo is None or value.utcoffset() is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def ms_to_datetime(ms: int) -> datetime:
    """Epoch milliseconds → aware UTC datetime (exact, no float rounding)."""
    return _EPOCH + timedelta(milliseconds=ms)


def datetime_to_ms(value: datetime) -> int:
    """Aware (or naive = UTC) datetime → epoch milliseconds, truncating sub-millisecond digits."""
    return (to_utc(value) - _EPOCH) // timedelta(milliseconds=1)


def format_timestamp(value: datetime) -> str:
    """ISO-8601 in UTC with a ``Z`` suffix, as short as exact: seconds, milliseconds or microseconds.

    ``2025-08-08T17:05:37.123Z`` (what Java's ``Instant.toString()`` and JavaScript's ``toISOString()`` send)
    is reproduced byte for byte.
    """
    value = to_utc(value)
    micros = value.microsecond
    timespec = "seconds" if micros == 0 else "milliseconds" if micros % 1000 == 0 else "microseconds"
    return value.replace(tzinfo=None).isoformat(timespec=timespec) + "Z"


def _timestamp_error(message: str) -> PydanticCustomError:
    return PydanticCustomError("timestamp_parsing", message)


def parse_timestamp(value: object) -> datetime:
    """Read a timestamp into an aware UTC datetime.

    Accepted: ISO-8601 strings with ``Z``, an offset (``+09:00``/``+0900``) or no zone (naive = **UTC**);
    ``datetime`` objects (naive = UTC); JSON numbers as epoch **milliseconds** ≥ ``MIN_EPOCH_NUMBER_MS``.
    Rejected with a clear message: booleans, other types, numbers that look like epoch seconds, strings that
    are not ISO-8601 (including numeric strings), instants outside the datetime range.
    """
    if isinstance(value, datetime):
        try:
            return to_utc(value)
        except OverflowError:
            raise _timestamp_error("timestamp is out of the supported range (years 1-9999 in UTC)") from None
    if isinstance(value, bool):
        raise _timestamp_error("input should be an ISO-8601 datetime string, not a boolean")
    if isinstance(value, int | float):
        if value != value or value in (float("inf"), float("-inf")):
            raise _timestamp_error(_NOT_ISO + " or epoch milliseconds")
        if value < MIN_EPOCH_NUMBER_MS:
            raise PydanticCustomError(
                "timestamp_epoch_seconds",
                "epoch numbers must be milliseconds; {value} looks like seconds (or is before 1973)",
                {"value": value},
            )
        if value > MAX_EPOCH_MS:
            raise _timestamp_error("epoch milliseconds beyond year 9999")
        whole = int(value)
        return ms_to_datetime(whole) + timedelta(microseconds=round((value - whole) * 1000))
    if isinstance(value, str):
        text = value.strip()
        if not text or len(text) > _MAX_TIMESTAMP_CHARS or text.lstrip("+-").isdigit():
            raise _timestamp_error(_NOT_ISO)
        try:
            parsed = datetime.fromisoformat(text.upper())
            return to_utc(parsed)
        except OverflowError:
            raise _timestamp_error("timestamp is out of the supported range (years 1-9999 in UTC)") from None
        except ValueError:
            raise _timestamp_error(_NOT_ISO) from None
    raise _timestamp_error(_NOT_ISO)


# ------------------------------------------------------------------------------------------------ clock rule
#: Environment variable: how far ahead of the receiver's clock an event time may be. Seconds (``300``) or a
#: duration with a unit (``500ms``, ``30s``, ``5m``, ``1h``).
MAX_CLOCK_SKEW_ENV: Final = "MAX_CLOCK_SKEW"
DEFAULT_MAX_CLOCK_SKEW: Final = timedelta(minutes=5)
_SKEW_UNITS: Final = (("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0))


@functools.lru_cache(maxsize=8)
def _parse_skew(raw: str) -> timedelta:
    text = raw.strip().lower()
    factor = 1.0
    for unit, seconds in _SKEW_UNITS:
        if text.endswith(unit) and not (unit == "s" and text.endswith("ms")):
            text, factor = text[: -len(unit)].strip(), seconds
            break
    try:
        value = float(text) * factor
    except ValueError:
        value = -1.0
    if not 0 <= value <= 366 * 86400:
        raise ValueError(
            f"{MAX_CLOCK_SKEW_ENV}: expected seconds (e.g. 300) or a duration such as 5m, got {raw!r}"
        )
    return timedelta(seconds=value)


def max_clock_skew() -> timedelta:
    """How far ahead of this process's clock an event time may be (``MAX_CLOCK_SKEW``, default 5 minutes).

    Read from the environment on each call (cached per value), so a bad value names the variable.
    """
    raw = os.environ.get(MAX_CLOCK_SKEW_ENV, "")
    return _parse_skew(raw) if raw.strip() else DEFAULT_MAX_CLOCK_SKEW


# A bad MAX_CLOCK_SKEW stops the process at start (importing the event models), naming the variable, instead
# of making every event fail validation (and be dead-lettered) later.
max_clock_skew()


def _future_error(when: datetime, now: datetime, skew: timedelta) -> PydanticCustomError:
    return PydanticCustomError(
        "future_timestamp",
        "future_timestamp: {timestamp} is {ahead} s ahead of the receiver's clock ({now}); "
        "at most {skew} s (MAX_CLOCK_SKEW) is accepted, check the producer's clock",
        {
            "timestamp": format_timestamp(when),
            "ahead": round((when - now).total_seconds(), 3),
            "now": format_timestamp(now),
            "skew": skew.total_seconds(),
        },
    )


def not_in_future(value: datetime) -> datetime:
    """Refuse an event time more than :func:`max_clock_skew` ahead of now (error type
    ``future_timestamp``): one event dated 2099 would otherwise make every later real event "older"."""
    now = utc_now()
    skew = max_clock_skew()
    if value - now > skew:
        raise _future_error(value, now, skew)
    return value


def not_in_future_ms(value: int) -> int:
    """:func:`not_in_future` for epoch milliseconds."""
    now = now_ms()
    skew = max_clock_skew()
    if value - now > skew // timedelta(milliseconds=1):
        raise _future_error(ms_to_datetime(value), ms_to_datetime(now), skew)
    return value


def non_blank(value: str) -> str:
    """Refuse strings made only of whitespace (the value itself is kept unchanged, never stripped)."""
    if not value.strip():
        raise PydanticCustomError("string_blank", "string should not be blank")
    return value


# ---------------------------------------------------------------------------------------------- field types
#: JSON Schema ``pattern`` of a non-blank string: at least one non-whitespace character (what
#: :func:`non_blank` checks), so the published schemas say what the models refuse.
NON_BLANK_PATTERN: Final = r"\S"


class _JsonSchemaPattern:
    """Annotation that adds a ``pattern`` to the JSON Schema only (validation stays with the validators)."""

    __slots__ = ("pattern",)

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        schema["pattern"] = self.pattern
        return schema

    def __repr__(self) -> str:
        return f"JsonSchemaPattern({self.pattern!r})"


#: Put next to ``AfterValidator(non_blank)``: the schema's ``pattern`` for it.
NON_BLANK_SCHEMA: Final = _JsonSchemaPattern(NON_BLANK_PATTERN)

#: Aware UTC datetime read by :func:`parse_timestamp`, written by :func:`format_timestamp` in JSON.
UtcDatetime = Annotated[
    datetime,
    BeforeValidator(parse_timestamp),
    PlainSerializer(format_timestamp, return_type=str, when_used="json"),
]

#: Epoch milliseconds: a JSON integer (strict: no strings, floats or booleans), 1 ≤ value ≤ year 9999.
EpochMillis = Annotated[int, Field(strict=True, gt=0, le=MAX_EPOCH_MS)]

#: An event time: a :data:`UtcDatetime` no more than ``MAX_CLOCK_SKEW`` ahead of the receiver's clock.
EventTime = Annotated[UtcDatetime, AfterValidator(not_in_future)]

#: An event time in epoch milliseconds: :data:`EpochMillis` no more than ``MAX_CLOCK_SKEW`` ahead.
EventTimeMillis = Annotated[EpochMillis, AfterValidator(not_in_future_ms)]

#: Identifier: non-blank string, at most ``MAX_ID_CHARS`` characters. Strict: a JSON number is refused.
Id = Annotated[str, Field(min_length=1, max_length=MAX_ID_CHARS), AfterValidator(non_blank), NON_BLANK_SCHEMA]


# ----------------------------------------------------------------------------------------------- base model
class EventModel(BaseModel):
    """Base of every platform event: immutable; unknown fields ignored unless a model says otherwise.

    ``MAX_BYTES`` is the largest encoded size :func:`platform_events.decode` accepts and
    :func:`platform_events.encode` produces for the model.
    """

    model_config = ConfigDict(
        frozen=True,
        extra="ignore",
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        str_strip_whitespace=False,
        ser_json_inf_nan="null",
    )

    MAX_BYTES: ClassVar[int] = MAX_EVENT_BYTES

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible dict with the wire field names (camelCase where the contract says so)."""
        return self.model_dump(mode="json", by_alias=True)
