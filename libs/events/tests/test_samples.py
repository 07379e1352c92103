"""The sample events (docs/contracts.md, libs/events/README.md) decode exactly and re-encode byte for byte."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from platform_events import (
    CHATBOT_ISSUES,
    MESSAGES_CREATED,
    FactoryIssueEvent,
    MessageCreatedEvent,
    ModeType,
    ProcessType,
    decode,
    decode_message_event,
    encode,
    encode_key,
)

SPEC_ISSUE = """{"issue": "PRESS_001_20250808_001", "processType": "장애접수", "modeType": "프레스",
 "modeLogId": "PRESS_LOG_001", "description": "100톤 프레스 유압 이상", "isSolved": false,
 "timestamp": "2025-08-08T17:05:37.123Z"}"""

SPEC_MESSAGE = """{"event_type": "message.created", "event_id": "evt_001", "timestamp": 1697234567890,
 "payload": {"message_id": "msg_001", "channel_id": "ch_dev", "author_id": "user_001",
             "content": "프로젝트 배포 완료", "mentions": ["user_002"], "attachments": []}}"""

# seed 000: the documented schema (naive timestamp) and the hand-written producer (no timestamp at all).
SEED_ISSUE_NAIVE = {
    "issue": "PRESS_001_20250806_001",
    "processType": "장애접수",
    "modeType": "프레스",
    "modeLogId": "PRESS_LOG_20250806_001",
    "timestamp": "2025-08-06T10:30:00",
}
SEED_ISSUE_MINIMAL = {
    "issue": "TEST_001_20250806_001",
    "processType": "장애접수",
    "modeType": "프레스",
    "modeLogId": "TEST_LOG_001",
}


def compact(text: str) -> bytes:
    """What the seed producers emit: ``json.dumps(x, ensure_ascii=False)``, here without spaces."""
    return json.dumps(json.loads(text), ensure_ascii=False, separators=(",", ":")).encode()


def test_spec_issue_event_decodes_exactly() -> None:
    event = decode(CHATBOT_ISSUES, SPEC_ISSUE.encode())
    assert event == FactoryIssueEvent(
        issue="PRESS_001_20250808_001",
        process_type=ProcessType.FAILURE_REPORT,
        mode_type=ModeType.PRESS,
        mode_log_id="PRESS_LOG_001",
        description="100톤 프레스 유압 이상",
        is_solved=False,
        timestamp=datetime(2025, 8, 8, 17, 5, 37, 123000, tzinfo=UTC),
    )
    assert event.process_type == "장애접수"
    assert event.mode_type == "프레스"


def test_spec_issue_event_reencodes_byte_for_byte() -> None:
    event = decode(CHATBOT_ISSUES, SPEC_ISSUE.encode())
    assert encode(event) == compact(SPEC_ISSUE)
    assert encode_key(CHATBOT_ISSUES, event) == b"PRESS_001_20250808_001"


def test_spec_message_event_decodes_exactly() -> None:
    event = decode(MESSAGES_CREATED, SPEC_MESSAGE.encode())
    assert isinstance(event, MessageCreatedEvent)
    assert event.event_type == "message.created"
    assert event.event_id == "evt_001"
    assert event.timestamp == 1697234567890
    assert event.occurred_at == datetime(2023, 10, 13, 22, 2, 47, 890000, tzinfo=UTC)
    payload = event.payload
    assert (payload.message_id, payload.channel_id, payload.author_id) == ("msg_001", "ch_dev", "user_001")
    assert payload.content == "프로젝트 배포 완료"
    assert payload.mentions == ["user_002"]
    assert payload.attachments == []
    assert decode_message_event(SPEC_MESSAGE.encode()) == event


def test_spec_message_event_reencodes_byte_for_byte() -> None:
    event = decode(MESSAGES_CREATED, SPEC_MESSAGE.encode())
    assert encode(event) == compact(SPEC_MESSAGE)
    assert encode_key(MESSAGES_CREATED, event) == b"ch_dev"


def test_seed_naive_timestamp_is_utc() -> None:
    event = decode(CHATBOT_ISSUES, json.dumps(SEED_ISSUE_NAIVE, ensure_ascii=False).encode())
    assert event.timestamp == datetime(2025, 8, 6, 10, 30, tzinfo=UTC)
    assert event.description is None
    assert event.is_solved is False


def test_seed_minimal_event_gets_receive_time() -> None:
    received = datetime(2025, 8, 6, 1, 2, 3, tzinfo=UTC)
    raw = json.dumps(SEED_ISSUE_MINIMAL, ensure_ascii=False).encode()
    assert decode(CHATBOT_ISSUES, raw, received_at=received).timestamp == received


@pytest.mark.parametrize("ascii_escaped", [True, False])
def test_python_json_dumps_producers_are_understood(ascii_escaped: bool) -> None:
    # aiokafka scripts use json.dumps with or without ensure_ascii: both must decode the same.
    raw = json.dumps(json.loads(SPEC_ISSUE), ensure_ascii=ascii_escaped).encode()
    assert decode(CHATBOT_ISSUES, raw) == decode(CHATBOT_ISSUES, SPEC_ISSUE.encode())


def test_spring_instant_with_microseconds() -> None:
    # Java's Instant.now().toString() can carry 6 or 9 fractional digits.
    sample = json.loads(SPEC_ISSUE)
    sample["timestamp"] = "2025-08-08T17:05:37.123456789Z"
    event = decode(CHATBOT_ISSUES, json.dumps(sample).encode())
    assert event.timestamp == datetime(2025, 8, 8, 17, 5, 37, 123456, tzinfo=UTC)
    assert b'"timestamp":"2025-08-08T17:05:37.123456Z"' in encode(event)
