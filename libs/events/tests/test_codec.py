"""The codec: error kinds and reasons, input types, encoding format."""

from __future__ import annotations

import json
import pickle
from typing import Any

import pytest
from platform_events import (
    CHATBOT_ISSUES,
    LOG_EVENTS,
    MAX_EVENT_BYTES,
    MESSAGES_CREATED,
    EventDecodeError,
    FactoryIssueEvent,
    MessageCreatedEvent,
    WideLogEvent,
    decode,
    decode_message_event,
    encode,
    max_bytes_for,
)

ISSUE = '{"issue":"P-1","processType":"장애접수","modeType":"프레스","modeLogId":"L-1"}'


def error_of(target: Any, data: Any) -> EventDecodeError:
    with pytest.raises(EventDecodeError) as info:
        decode(target, data)
    return info.value


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (None, "empty"),
        (b"", "empty"),
        (b"   \n", "empty"),
        (b"\xef\xbb\xbf", "empty"),
        (b"\xff\xfe{}", "not_utf8"),
        (b'{"issue": "\xc3\x28"}', "not_utf8"),
        (b"{", "not_json"),
        (b"{'issue': 'x'}", "not_json"),
        (b'{"issue":"x"} {"issue":"y"}', "not_json"),
        (b'{"issue":"\\ud800"}', "not_json"),  # lone surrogate escape
        (b"[" * 10_000 + b"]" * 10_000, "not_json"),
        (b"[]", "not_object"),
        (b"[1, 2]", "not_object"),
        (b'"text"', "not_object"),
        (b"42", "not_object"),
        (b"-1.5e3", "not_object"),
        (b"true", "not_object"),
        (b"null", "not_object"),
        (b"{}", "invalid"),
    ],
)
def test_error_kinds(data: Any, kind: str) -> None:
    error = error_of(CHATBOT_ISSUES, data)
    assert error.kind == kind
    assert error.reason
    assert isinstance(error, ValueError)
    assert error.__cause__ is None  # the pydantic/json error is not chained into logs


def test_not_object_reason_names_the_json_type() -> None:
    assert error_of(CHATBOT_ISSUES, b"[]").reason == "expected a JSON object, got an array"
    assert error_of(CHATBOT_ISSUES, b"null").reason == "expected a JSON object, got null"
    assert error_of(CHATBOT_ISSUES, b"3").field is None


def test_invalid_reason_lists_every_problem() -> None:
    error = error_of(CHATBOT_ISSUES, b"{}")
    assert error.field == "issue"
    assert error.details == (
        "issue: field required",
        "processType: field required",
        "modeType: field required",
        "modeLogId: field required",
    )
    assert error.reason == "; ".join(error.details)


def test_long_reasons_are_truncated() -> None:
    data = json.dumps(
        {
            "event_type": "message.created",
            "event_id": "e",
            "timestamp": 1,
            "payload": {"mentions": list(range(20))},
        }
    )
    error = error_of(MESSAGES_CREATED, data.encode())
    assert "more)" in error.reason
    assert len(error.details) > 5


def test_shown_input_is_truncated() -> None:
    data = json.loads(ISSUE)
    data["processType"] = "x" * 500
    error = error_of(CHATBOT_ISSUES, json.dumps(data).encode())
    assert len(error.reason) < 200


def test_error_message_includes_target_and_kind() -> None:
    error = error_of(CHATBOT_ISSUES, b"[]")
    assert str(error) == (
        "cannot decode FactoryIssueEvent from topic 'chatbot-issue-events' (not_object): "
        "expected a JSON object, got an array"
    )
    assert "cannot decode FactoryIssueEvent (not_object)" in str(error_of(FactoryIssueEvent, b"[]"))


def test_decode_error_pickles() -> None:
    error = error_of(CHATBOT_ISSUES, b"{}")
    clone = pickle.loads(pickle.dumps(error))
    assert (clone.kind, clone.reason, clone.field, clone.details) == (
        error.kind,
        error.reason,
        error.field,
        error.details,
    )


def test_accepts_str_bytearray_memoryview_and_bom() -> None:
    expected = decode(CHATBOT_ISSUES, ISSUE.encode(), received_at=None).issue
    for data in (
        ISSUE,
        bytearray(ISSUE.encode()),
        memoryview(ISSUE.encode()),
        b"\xef\xbb\xbf" + ISSUE.encode(),
    ):
        assert decode(CHATBOT_ISSUES, data).issue == expected


def test_str_with_lone_surrogate_is_not_utf8() -> None:
    assert error_of(CHATBOT_ISSUES, '{"issue": "\ud800"}').kind == "not_utf8"


def test_wrong_input_type_is_a_programming_error() -> None:
    with pytest.raises(TypeError):
        decode(CHATBOT_ISSUES, 123)  # type: ignore[arg-type]


def test_model_class_or_spec() -> None:
    assert decode(FactoryIssueEvent, ISSUE.encode()).issue == "P-1"
    assert decode(CHATBOT_ISSUES, ISSUE.encode()).issue == "P-1"


def test_default_size_limit_applies_to_every_topic() -> None:
    assert max_bytes_for(FactoryIssueEvent) == MAX_EVENT_BYTES == 1024 * 1024
    assert max_bytes_for(WideLogEvent) == 256 * 1024
    big = b'{"issue":"' + b"x" * MAX_EVENT_BYTES + b'"}'
    assert error_of(CHATBOT_ISSUES, big).kind == "too_large"
    with pytest.raises(EventDecodeError) as info:
        decode_message_event(big)
    assert info.value.kind == "too_large"


def test_encode_is_compact_utf8_with_readable_korean(created_event: MessageCreatedEvent) -> None:
    raw = encode(created_event)
    assert raw.decode("utf-8")
    assert b"\\u" not in raw
    assert "배포 확인 부탁드립니다".encode() in raw
    assert b": " not in raw
    assert b", " not in raw.replace("확인 부탁".encode(), b"")
    assert raw == json.dumps(json.loads(raw), ensure_ascii=False, separators=(",", ":")).encode()


def test_encode_escapes_control_characters_only() -> None:
    event = WideLogEvent.new("svc", message='줄1\n줄2\t"인용"')
    assert json.loads(encode(event))["message"] == '줄1\n줄2\t"인용"'
    assert "줄1\\n줄2".encode() in encode(event)


def test_encode_uses_z_for_every_datetime() -> None:
    decoded = decode(LOG_EVENTS, b'{"event_id":"e","service":"s","timestamp":"2025-08-08T17:05:37.5+09:00"}')
    assert json.loads(encode(decoded))["timestamp"] == "2025-08-08T08:05:37.500Z"
