"""WideLogEvent: free-form context kept as-is, timestamp rules, size limit."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from platform_events import (
    LOG_EVENTS,
    MAX_WIDE_EVENT_BYTES,
    EventDecodeError,
    EventEncodeError,
    EventTooLargeError,
    WideLogEvent,
    check_size,
    decode,
    encode,
    encode_key,
)
from pydantic import ValidationError

CONTEXT: dict[str, Any] = {
    "request": {"method": "POST", "path": "/api/orders", "headers": {"x-request-id": "r-1"}},
    "user": {"id": "u-42", "name": "홍길동", "roles": ["admin", "운영자"]},
    "timings": {"db_ms": 12.5, "total_ms": 40},
    "error": None,
    "status": 201,
    "sampled": True,
}


def wire(**overrides: Any) -> dict[str, Any]:
    data = {"event_id": "evt_1", "timestamp": "2025-08-08T17:05:37.123Z", "service": "orders", **CONTEXT}
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not ...}


def to_bytes(data: dict[str, Any]) -> bytes:
    return json.dumps(data, ensure_ascii=False).encode()


def decode_error(data: bytes) -> EventDecodeError:
    with pytest.raises(EventDecodeError) as info:
        decode(LOG_EVENTS, data)
    return info.value


def test_context_fields_are_kept_as_is() -> None:
    event = decode(LOG_EVENTS, to_bytes(wire()))
    assert event.event_id == "evt_1"
    assert event.service == "orders"
    assert event.timestamp == datetime(2025, 8, 8, 17, 5, 37, 123000, tzinfo=UTC)
    assert event.context() == CONTEXT
    assert event.model_extra == CONTEXT
    assert json.loads(encode(event)) == wire()


def test_round_trip_preserves_field_order_and_bytes() -> None:
    original = json.dumps(wire(), ensure_ascii=False, separators=(",", ":")).encode()
    assert encode(decode(LOG_EVENTS, original)) == original


def test_key_is_event_id() -> None:
    assert encode_key(LOG_EVENTS, decode(LOG_EVENTS, to_bytes(wire()))) == b"evt_1"


@pytest.mark.parametrize("field", ["event_id", "timestamp", "service"])
def test_required_fields(field: str) -> None:
    error = decode_error(to_bytes(wire(**{field: ...})))
    assert error.kind == "invalid"
    assert error.field == field
    assert error.reason == f"{field}: field required"


@pytest.mark.parametrize(
    ("field", "value"), [("event_id", ""), ("event_id", 7), ("service", " "), ("service", None)]
)
def test_bad_required_values(field: str, value: object) -> None:
    assert decode_error(to_bytes(wire(**{field: value}))).field == field


def test_epoch_millisecond_timestamps_are_accepted() -> None:
    event = decode(LOG_EVENTS, to_bytes(wire(timestamp=1754672737123)))
    assert event.timestamp == datetime(2025, 8, 8, 17, 5, 37, 123000, tzinfo=UTC)
    assert json.loads(encode(event))["timestamp"] == "2025-08-08T17:05:37.123Z"


@pytest.mark.parametrize("value", [1754672737, 1754672737.5, 0, -5])
def test_epoch_seconds_are_refused(value: float) -> None:
    error = decode_error(to_bytes(wire(timestamp=value)))
    assert error.field == "timestamp"
    assert "milliseconds" in error.reason


def test_naive_timestamp_is_utc() -> None:
    event = decode(LOG_EVENTS, to_bytes(wire(timestamp="2025-08-08T17:05:37")))
    assert event.timestamp == datetime(2025, 8, 8, 17, 5, 37, tzinfo=UTC)


def test_new_generates_id_and_time() -> None:
    event = WideLogEvent.new("api", request={"path": "/x"}, duration_ms=3)
    assert event.event_id.startswith("evt_")
    assert len(event.event_id) == 36
    assert abs((datetime.now(UTC) - event.timestamp).total_seconds()) < 5
    assert event.context() == {"request": {"path": "/x"}, "duration_ms": 3}
    assert decode(LOG_EVENTS, encode(event)) == event


def test_nan_from_python_json_dumps_becomes_null() -> None:
    event = decode(LOG_EVENTS, b'{"event_id":"e","timestamp":1754672737123,"service":"s","latency":NaN}')
    assert json.loads(encode(event))["latency"] is None


# ------------------------------------------------------------------------------------------------ size limit
def padded(size: int) -> bytes:
    """An encoded wide event of exactly ``size`` bytes (ASCII padding)."""
    head = {"event_id": "e", "timestamp": "2025-01-01T00:00:00Z", "service": "s", "pad": ""}
    overhead = len(json.dumps(head, separators=(",", ":")))
    head["pad"] = "x" * (size - overhead)
    data = json.dumps(head, separators=(",", ":")).encode()
    assert len(data) == size
    return data


def test_event_at_the_limit_is_accepted() -> None:
    event = decode(LOG_EVENTS, padded(MAX_WIDE_EVENT_BYTES))
    assert check_size(event) == MAX_WIDE_EVENT_BYTES


def test_oversize_record_is_rejected_before_parsing() -> None:
    error = decode_error(padded(MAX_WIDE_EVENT_BYTES + 1))
    assert error.kind == "too_large"
    assert str(MAX_WIDE_EVENT_BYTES) in error.reason
    assert decode_error(b"[" + b" " * MAX_WIDE_EVENT_BYTES + b"]").kind == "too_large"


def test_size_is_measured_in_utf8_bytes_not_characters() -> None:
    chars = MAX_WIDE_EVENT_BYTES // 3 + 10  # fewer characters than the limit, but Hangul is 3 bytes each
    assert chars < MAX_WIDE_EVENT_BYTES
    with pytest.raises(ValidationError, match="256 KiB"):
        WideLogEvent.new("s", m="가" * chars)
    data = {"event_id": "e", "timestamp": 1754672737123, "service": "s", "m": "가" * chars}
    assert decode_error(to_bytes(data)).kind == "too_large"


def test_input_that_grows_past_the_limit_when_reencoded_is_too_large() -> None:
    # Small on the wire, but a non-standard NaN becomes null (+1 byte each) when re-encoded.
    count = (MAX_WIDE_EVENT_BYTES - 100) // 4
    head = b'{"event_id":"e","timestamp":"2025-01-01T00:00:00Z","service":"s","n":['
    body = b",".join([b"NaN"] * count) + b"]}"
    data = head + body
    assert len(data) <= MAX_WIDE_EVENT_BYTES
    assert decode_error(data).kind == "too_large"


def test_construction_over_the_limit_fails_with_a_reason() -> None:
    with pytest.raises(ValidationError) as info:
        WideLogEvent.new("api", body="x" * MAX_WIDE_EVENT_BYTES)
    assert "limit is 262144 bytes" in str(info.value)


def test_encode_checks_the_size_again_after_nested_mutation() -> None:
    event = WideLogEvent.new("api", items=[])
    event.context()  # copies: mutating it does not change the event
    items = event.model_extra["items"] if event.model_extra else []
    items.append("x" * MAX_WIDE_EVENT_BYTES)  # nested values are plain (mutable) JSON containers
    with pytest.raises(EventTooLargeError) as info:
        encode(event)
    assert info.value.limit == MAX_WIDE_EVENT_BYTES
    assert info.value.size > MAX_WIDE_EVENT_BYTES
    with pytest.raises(EventTooLargeError):
        check_size(event)


def test_non_json_context_is_refused() -> None:
    with pytest.raises(ValidationError, match="JSON-serialisable"):
        WideLogEvent.new("api", handle=object())


def test_encode_error_is_a_value_error() -> None:
    assert issubclass(EventTooLargeError, EventEncodeError)
    assert issubclass(EventEncodeError, ValueError)
