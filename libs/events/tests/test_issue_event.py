"""FactoryIssueEvent: enums, strict isSolved, timestamp rules, lengths, aliases."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from platform_events import (
    CHATBOT_ISSUES,
    MAX_ISSUE_ID_CHARS,
    EventDecodeError,
    FactoryIssueEvent,
    ModeType,
    ProcessType,
    decode,
    encode,
)
from pydantic import ValidationError

BASE: dict[str, Any] = {
    "issue": "WELD_007_20250808_002",
    "processType": "정기점검",
    "modeType": "용접기",
    "modeLogId": "WELD_LOG_007",
}


def raw(**overrides: Any) -> bytes:
    data = {**BASE, **overrides}
    return json.dumps({k: v for k, v in data.items() if v is not ...}, ensure_ascii=False).encode()


def decode_error(data: bytes) -> EventDecodeError:
    with pytest.raises(EventDecodeError) as info:
        decode(CHATBOT_ISSUES, data)
    return info.value


def test_enum_values_and_member_names() -> None:
    assert {m.name: m.value for m in ProcessType} == {
        "FAILURE_REPORT": "장애접수",
        "SCHEDULED_INSPECTION": "정기점검",
    }
    assert {m.name: m.value for m in ModeType} == {
        "PRESS": "프레스",
        "WELDER": "용접기",
        "PAINTING": "도장설비",
        "VEHICLE_ASSEMBLY": "차량조립설비",
    }


@pytest.mark.parametrize("mode", list(ModeType))
@pytest.mark.parametrize("process", list(ProcessType))
def test_every_enum_combination_decodes(process: ProcessType, mode: ModeType) -> None:
    event = decode(CHATBOT_ISSUES, raw(processType=process.value, modeType=mode.value))
    assert (event.process_type, event.mode_type) == (process, mode)


def test_unknown_process_type_reason_names_field_and_choices() -> None:
    error = decode_error(raw(processType="수리"))
    assert error.kind == "invalid"
    assert error.field == "processType"
    assert error.reason.startswith("processType: input should be '장애접수' or '정기점검'")
    assert "'수리'" in error.reason


def test_unknown_mode_type() -> None:
    error = decode_error(raw(modeType="PRESS"))
    assert error.field == "modeType"
    assert "'프레스'" in error.reason
    assert "'차량조립설비'" in error.reason


def test_enum_names_are_not_accepted_on_the_wire() -> None:
    assert decode_error(raw(processType="FAILURE_REPORT")).field == "processType"


@pytest.mark.parametrize("field", ["issue", "processType", "modeType", "modeLogId"])
def test_missing_required_field(field: str) -> None:
    error = decode_error(raw(**{field: ...}))
    assert error.kind == "invalid"
    assert error.field == field
    assert error.reason == f"{field}: field required"


@pytest.mark.parametrize("value", ["", "   ", "\t\n"])
def test_blank_issue_id_is_invalid(value: str) -> None:
    assert decode_error(raw(issue=value)).field == "issue"


def test_issue_id_length_limit() -> None:
    assert decode(CHATBOT_ISSUES, raw(issue="가" * MAX_ISSUE_ID_CHARS)).issue == "가" * MAX_ISSUE_ID_CHARS
    error = decode_error(raw(issue="가" * (MAX_ISSUE_ID_CHARS + 1)))
    assert error.field == "issue"
    assert "191" in error.reason


@pytest.mark.parametrize("value", [123, 1.5, True, None, ["a"], {"a": 1}])
def test_issue_id_must_be_a_string(value: object) -> None:
    assert decode_error(raw(issue=value)).field == "issue"


def test_is_solved_defaults_to_false_and_accepts_booleans() -> None:
    assert decode(CHATBOT_ISSUES, raw()).is_solved is False
    assert decode(CHATBOT_ISSUES, raw(isSolved=True)).is_solved is True
    assert decode(CHATBOT_ISSUES, raw(isSolved=False)).is_solved is False


def test_is_solved_null_means_false() -> None:
    # A Java Boolean that was never set arrives as null.
    assert decode(CHATBOT_ISSUES, raw(isSolved=None)).is_solved is False


@pytest.mark.parametrize("value", ["yes", "true", "false", 1, 0, "1", [], {}])
def test_is_solved_is_strict(value: object) -> None:
    error = decode_error(raw(isSolved=value))
    assert error.field == "isSolved"
    assert error.reason.startswith("isSolved: input should be a valid boolean")


def test_description_optional_nullable_and_korean() -> None:
    assert decode(CHATBOT_ISSUES, raw()).description is None
    assert decode(CHATBOT_ISSUES, raw(description=None)).description is None
    assert decode(CHATBOT_ISSUES, raw(description="")).description == ""
    assert decode(CHATBOT_ISSUES, raw(description="도장 부스 온도 이상")).description == "도장 부스 온도 이상"
    assert decode_error(raw(description=5)).field == "description"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-08-08T17:05:37.123Z", datetime(2025, 8, 8, 17, 5, 37, 123000, tzinfo=UTC)),
        ("2025-08-08T17:05:37Z", datetime(2025, 8, 8, 17, 5, 37, tzinfo=UTC)),
        ("2025-08-08T17:05:37z", datetime(2025, 8, 8, 17, 5, 37, tzinfo=UTC)),
        ("2025-08-08T17:05:37+00:00", datetime(2025, 8, 8, 17, 5, 37, tzinfo=UTC)),
        ("2025-08-08T17:05:37+09:00", datetime(2025, 8, 8, 8, 5, 37, tzinfo=UTC)),
        ("2025-08-08T17:05:37+0900", datetime(2025, 8, 8, 8, 5, 37, tzinfo=UTC)),
        ("2025-08-08T17:05:37-05:30", datetime(2025, 8, 8, 22, 35, 37, tzinfo=UTC)),
        ("2025-08-08T17:05:37", datetime(2025, 8, 8, 17, 5, 37, tzinfo=UTC)),  # naive = UTC
        ("2025-08-08 17:05:37.5", datetime(2025, 8, 8, 17, 5, 37, 500000, tzinfo=UTC)),
        (1754672737123, datetime(2025, 8, 8, 17, 5, 37, 123000, tzinfo=UTC)),  # epoch ms
    ],
)
def test_timestamp_formats(text: object, expected: datetime) -> None:
    event = decode(CHATBOT_ISSUES, raw(timestamp=text))
    assert event.timestamp == expected
    assert event.timestamp.tzinfo is UTC


@pytest.mark.parametrize(
    "value",
    [
        "yesterday",
        "",
        "2025-13-01T00:00:00Z",
        "2025-08-08T25:00:00",
        "1754672737123",
        1754672737,
        True,
        [],
        {},
    ],
)
def test_bad_timestamps_name_the_field(value: object) -> None:
    error = decode_error(raw(timestamp=value))
    assert error.kind == "invalid"
    assert error.field == "timestamp"
    assert error.reason.startswith("timestamp: ")


def test_epoch_seconds_are_refused_with_a_hint() -> None:
    assert "looks like seconds" in decode_error(raw(timestamp=1754672737)).reason


def test_timestamp_absent_or_null_is_the_receive_time() -> None:
    received = datetime(2025, 8, 8, 9, 0, tzinfo=UTC)
    assert decode(CHATBOT_ISSUES, raw(), received_at=received).timestamp == received
    assert decode(CHATBOT_ISSUES, raw(timestamp=None), received_at=received).timestamp == received


def test_receive_time_defaults_to_now_and_is_aware_utc() -> None:
    before = datetime.now(UTC)
    event = decode(CHATBOT_ISSUES, raw())
    assert before <= event.timestamp <= datetime.now(UTC)
    assert event.timestamp.tzinfo is UTC


def test_receive_time_naive_or_offset_is_normalised() -> None:
    kst = timezone(timedelta(hours=9))
    event = decode(CHATBOT_ISSUES, raw(), received_at=datetime(2025, 8, 8, 18, 0, tzinfo=kst))
    assert event.timestamp == datetime(2025, 8, 8, 9, 0, tzinfo=UTC)
    assert event.timestamp.tzinfo is UTC
    naive = decode(CHATBOT_ISSUES, raw(), received_at=datetime(2025, 8, 8, 9, 0))
    assert naive.timestamp == datetime(2025, 8, 8, 9, 0, tzinfo=UTC)


def test_present_timestamp_wins_over_receive_time() -> None:
    event = decode(CHATBOT_ISSUES, raw(timestamp="2025-01-01T00:00:00Z"), received_at=datetime(2030, 1, 1))
    assert event.timestamp == datetime(2025, 1, 1, tzinfo=UTC)


def test_encoded_timestamp_is_utc_z() -> None:
    encoded = encode(decode(CHATBOT_ISSUES, raw(timestamp="2025-08-08T17:05:37+09:00")))
    assert b'"timestamp":"2025-08-08T08:05:37Z"' in encoded


def test_python_construction_by_field_name_or_alias() -> None:
    kst = timezone(timedelta(hours=9))
    by_name = FactoryIssueEvent(
        issue="A",
        process_type=ProcessType.FAILURE_REPORT,
        mode_type=ModeType.PAINTING,
        mode_log_id="L",
        timestamp=datetime(2025, 1, 1, 9, 0, tzinfo=kst),
    )
    by_alias = FactoryIssueEvent.model_validate(
        {
            "issue": "A",
            "processType": "장애접수",
            "modeType": "도장설비",
            "modeLogId": "L",
            "timestamp": "2025-01-01T00:00:00Z",
        }
    )
    assert by_name == by_alias
    assert by_name.timestamp.tzinfo is UTC


def test_python_construction_without_timestamp_uses_now() -> None:
    event = FactoryIssueEvent(
        issue="A", process_type=ProcessType.FAILURE_REPORT, mode_type=ModeType.PRESS, mode_log_id="L"
    )
    assert abs(event.timestamp - datetime.now(UTC)) < timedelta(seconds=5)


def test_serialises_camel_case_only() -> None:
    event = decode(CHATBOT_ISSUES, raw(description="x", isSolved=True, timestamp="2025-01-01T00:00:00Z"))
    data = json.loads(encode(event))
    assert list(data) == [
        "issue",
        "processType",
        "modeType",
        "modeLogId",
        "description",
        "isSolved",
        "timestamp",
    ]
    assert event.to_dict() == data
    assert event.model_dump()["processType"] == "정기점검"


def test_unknown_fields_are_ignored() -> None:
    event = decode(CHATBOT_ISSUES, raw(operator="김철수", priority=3))
    assert "operator" not in json.loads(encode(event))


def test_frozen() -> None:
    event = decode(CHATBOT_ISSUES, raw())
    with pytest.raises(ValidationError):
        event.issue = "other"  # type: ignore[misc]
