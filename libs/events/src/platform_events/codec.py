"""Bytes ⇄ events. Every decoding failure is an :class:`EventDecodeError` with a kind and a reason."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Final, Literal, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails, PydanticSerializationError

from platform_events._common import MAX_EVENT_BYTES, parse_timestamp, utc_now
from platform_events.issues import RECEIVED_AT_CONTEXT_KEY
from platform_events.messages import (
    MESSAGE_EVENT_ADAPTER,
    MessageCreatedEvent,
    MessageDeletedEvent,
    MessageUpdatedEvent,
)
from platform_events.topics import TopicSpec

__all__ = [
    "DecodeErrorKind",
    "EventDecodeError",
    "EventEncodeError",
    "EventTooLargeError",
    "check_size",
    "decode",
    "decode_message_event",
    "encode",
    "encode_key",
    "max_bytes_for",
]

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")

DecodeErrorKind = Literal[
    "not_json", "not_object", "invalid", "too_large", "not_utf8", "empty", "future_timestamp"
]

_BOM: Final = b"\xef\xbb\xbf"
_MAX_REASONS: Final = 5
_MAX_SHOWN_INPUT: Final = 60
_MESSAGE_TAGS: Final = frozenset({"message.created", "message.updated", "message.deleted"})


class EventDecodeError(ValueError):
    """Bytes that are not a valid event.

    ``kind``: ``empty`` (no bytes / null record), ``too_large``, ``not_utf8``, ``not_json``,
    ``not_object`` (valid JSON but not an object), ``invalid`` (an object failing the schema),
    ``future_timestamp`` (valid except for an event time beyond now + ``MAX_CLOCK_SKEW``; the reason starts
    with ``timestamp: future_timestamp:``).
    ``reason``: human-readable, starts with the field path when one is at fault
    (``"processType: input should be '장애접수' or '정기점검', got '수리'"``).
    ``field``: the (first) offending field path on the wire (``"payload.channel_id"``), else None.
    ``details``: one reason per schema error (``reason`` joins the first few).
    """

    def __init__(
        self,
        kind: DecodeErrorKind,
        reason: str,
        field: str | None = None,
        *,
        target: str | None = None,
        details: Sequence[str] = (),
    ) -> None:
        self.kind: DecodeErrorKind = kind
        self.reason = reason
        self.field = field
        self.target = target
        self.details: tuple[str, ...] = tuple(details) or (reason,)
        prefix = f"cannot decode {target} ({kind})" if target else f"cannot decode event ({kind})"
        super().__init__(f"{prefix}: {reason}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_decode_error, (self.kind, self.reason, self.field, self.target, self.details))


def _rebuild_decode_error(
    kind: DecodeErrorKind, reason: str, field: str | None, target: str | None, details: tuple[str, ...]
) -> EventDecodeError:
    return EventDecodeError(kind, reason, field, target=target, details=details)


class EventEncodeError(ValueError):
    """An event that cannot be encoded (e.g. a context value that is not JSON-serialisable)."""


class EventTooLargeError(EventEncodeError):
    """The encoded event exceeds its model's size limit."""

    def __init__(self, model: str, size: int, limit: int) -> None:
        self.model = model
        self.size = size
        self.limit = limit
        super().__init__(f"{model} is {size} bytes encoded; the limit is {limit} bytes")


def max_bytes_for(model: type[BaseModel]) -> int:
    """Largest encoded size accepted for ``model`` (its ``MAX_BYTES``, else 1 MiB)."""
    limit = getattr(model, "MAX_BYTES", MAX_EVENT_BYTES)
    return limit if isinstance(limit, int) else MAX_EVENT_BYTES


# -------------------------------------------------------------------------------------------------- decode
def decode(
    target: TopicSpec[M] | type[M],
    data: bytes | bytearray | memoryview | str | None,
    *,
    received_at: datetime | None = None,
) -> M:
    """Decode one record value into ``target``'s model (a :class:`TopicSpec` or a model class).

    ``received_at`` fills a missing ``timestamp`` of events that allow it (the factory issue event); pass the
    Kafka record timestamp to make redeliveries decode identically. Default: now (UTC).
    Raises :class:`EventDecodeError` only.
    """
    if isinstance(target, TopicSpec):
        model: type[M] = target.model
        label = f"{model.__name__} from topic {target.name!r}"
    else:
        model = target
        label = model.__name__

    def validate(raw: bytes, context: dict[str, Any]) -> M:
        return model.model_validate_json(raw, context=context)

    return _decode(validate, data, max_bytes=max_bytes_for(model), label=label, received_at=received_at)


def decode_message_event(
    data: bytes | bytearray | memoryview | str | None,
    *,
    received_at: datetime | None = None,
) -> MessageCreatedEvent | MessageUpdatedEvent | MessageDeletedEvent:
    """Decode any message event, choosing the model by ``event_type`` (a consumer of all message topics).

    Per-topic decoding (``decode(MESSAGES_CREATED, data)``) is stricter: the topic fixes the event type.
    """

    def validate(
        raw: bytes, context: dict[str, Any]
    ) -> MessageCreatedEvent | MessageUpdatedEvent | MessageDeletedEvent:
        return MESSAGE_EVENT_ADAPTER.validate_json(raw, context=context)

    return _decode(validate, data, max_bytes=MAX_EVENT_BYTES, label="message event", received_at=received_at)


def _decode(
    validate: Callable[[bytes, dict[str, Any]], T],
    data: bytes | bytearray | memoryview | str | None,
    *,
    max_bytes: int,
    label: str,
    received_at: datetime | None,
) -> T:
    if data is None:
        raise EventDecodeError("empty", "record has no value (null / tombstone)", target=label)
    if isinstance(data, str):
        try:
            raw = data.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise EventDecodeError(
                "not_utf8", f"text contains an unpaired surrogate at index {exc.start}", target=label
            ) from None
    elif isinstance(data, bytes | bytearray | memoryview):
        raw = bytes(data)
    else:
        raise TypeError(f"decode() expects bytes, got {type(data).__name__}")

    if raw.startswith(_BOM):  # some Windows tools prepend one; it is not part of the JSON text
        raw = raw[len(_BOM) :]
    if not raw.strip():
        raise EventDecodeError("empty", "record value is empty", target=label)
    if len(raw) > max_bytes:
        raise EventDecodeError(
            "too_large", f"record value is {len(raw)} bytes; the limit is {max_bytes} bytes", target=label
        )

    try:
        when = utc_now() if received_at is None else parse_timestamp(received_at)
    except ValueError as exc:
        raise TypeError(f"received_at must be a datetime: {exc}") from None
    try:
        return validate(raw, {RECEIVED_AT_CONTEXT_KEY: when})
    except ValidationError as exc:
        raise _classify(exc, raw, label) from None
    except RecursionError:
        raise EventDecodeError("not_json", "JSON nested too deeply", target=label) from None


def _json_type(raw: bytes) -> str:
    first = raw.lstrip()[:1]
    return {b"[": "an array", b'"': "a string", b"t": "a boolean", b"f": "a boolean", b"n": "null"}.get(
        first, "a number"
    )


def _classify(exc: ValidationError, raw: bytes, label: str) -> EventDecodeError:
    errors = exc.errors(include_url=False)
    if errors and errors[0]["type"] == "json_invalid":
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as bad:
            return EventDecodeError("not_utf8", f"not valid UTF-8 (byte {bad.start})", target=label)
        ctx = errors[0].get("ctx") or {}
        return EventDecodeError(
            "not_json", f"not valid JSON: {ctx.get('error', errors[0]['msg'])}", target=label
        )
    if not raw.lstrip().startswith(b"{"):
        return EventDecodeError("not_object", f"expected a JSON object, got {_json_type(raw)}", target=label)
    if any(error["type"] == "too_large" for error in errors):
        reason = next(_message(error) for error in errors if error["type"] == "too_large")
        return EventDecodeError("too_large", reason, target=label)

    details = [_describe(error) for error in errors]
    field = next((path for path in (_field_path(error) for error in errors) if path), None)
    reason = "; ".join(details[:_MAX_REASONS])
    if len(details) > _MAX_REASONS:
        reason += f" (+{len(details) - _MAX_REASONS} more)"
    # an otherwise valid event whose only fault is its producer's clock
    kind: DecodeErrorKind = (
        "future_timestamp" if all(error["type"] == "future_timestamp" for error in errors) else "invalid"
    )
    return EventDecodeError(kind, reason, field, target=label, details=details)


def _field_path(error: ErrorDetails) -> str | None:
    if error["type"] in {"union_tag_invalid", "union_tag_not_found"}:
        return "event_type"
    loc = list(error["loc"])
    if loc and loc[0] in _MESSAGE_TAGS:  # a discriminated union puts the tag first
        loc = loc[1:]
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or None


def _message(error: ErrorDetails) -> str:
    if error["type"] == "union_tag_not_found":
        return "field required"
    if error["type"] == "union_tag_invalid":
        expected = (error.get("ctx") or {}).get("expected_tags", "")
        return f"input should be one of {expected}"
    msg = error["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        msg = msg.removeprefix(prefix)
    return msg[:1].lower() + msg[1:]


def _describe(error: ErrorDetails) -> str:
    message = _message(error)
    value = error.get("input")
    if error["type"] not in {"missing", "union_tag_not_found"} and isinstance(
        value, str | int | float | bool
    ):
        shown = repr(value)
        if len(shown) > _MAX_SHOWN_INPUT:
            shown = shown[: _MAX_SHOWN_INPUT - 1] + "…"
        if shown not in message:
            message = f"{message}, got {shown}"
    elif error["type"] not in {"missing", "union_tag_not_found"} and value is None:
        message = f"{message}, got null"
    path = _field_path(error)
    return f"{path}: {message}" if path else message


# -------------------------------------------------------------------------------------------------- encode
def encode(event: BaseModel) -> bytes:
    """Compact UTF-8 JSON with the wire field names; Korean text is kept readable (not ``\\u``-escaped);
    datetimes are ISO-8601 UTC with ``Z``. Raises :class:`EventTooLargeError` above the model's limit and
    :class:`EventEncodeError` for values that cannot be JSON.
    """
    try:
        raw = event.model_dump_json(by_alias=True).encode("utf-8")
    except (PydanticSerializationError, UnicodeEncodeError) as exc:
        raise EventEncodeError(f"cannot encode {type(event).__name__}: {exc}") from None
    limit = max_bytes_for(type(event))
    if len(raw) > limit:
        raise EventTooLargeError(type(event).__name__, len(raw), limit)
    return raw


def check_size(event: BaseModel) -> int:
    """The encoded size of ``event`` in bytes; :class:`EventTooLargeError` if above its model's limit."""
    return len(encode(event))


def encode_key(spec: TopicSpec[M], event: M) -> bytes:
    """The Kafka key of ``event`` on ``spec``'s topic, UTF-8 (TypeError if the event belongs elsewhere)."""
    return spec.key_for(event).encode("utf-8")
