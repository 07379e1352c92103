"""The clock rule: an event time beyond now + MAX_CLOCK_SKEW (default 5 minutes) is refused, so one event
from a producer whose clock says 2099 cannot make every later real event "older" (issue 18, item 2)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from platform_events import (
    CHATBOT_ISSUES,
    DEFAULT_MAX_CLOCK_SKEW,
    MESSAGES_CREATED,
    EventDecodeError,
    FactoryIssueEvent,
    MessageCreatedEvent,
    decode,
    decode_message_event,
    format_timestamp,
    max_clock_skew,
    now_ms,
)
from pydantic import ValidationError


def issue(**fields: Any) -> bytes:
    body = {"issue": "P1", "processType": "장애접수", "modeType": "프레스", "modeLogId": "L1", **fields}
    return json.dumps(body, ensure_ascii=False).encode()


def message(timestamp: int) -> bytes:
    payload = {"message_id": "m1", "channel_id": "c1", "author_id": "u1", "content": "배포 완료"}
    body = {"event_type": "message.created", "event_id": "e1", "timestamp": timestamp, "payload": payload}
    return json.dumps(body, ensure_ascii=False).encode()


def in_(delta: timedelta) -> str:
    return format_timestamp(datetime.now(UTC) + delta)


def test_default_is_five_minutes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MAX_CLOCK_SKEW", raising=False)
    assert max_clock_skew() == DEFAULT_MAX_CLOCK_SKEW == timedelta(minutes=5)


def test_issue_event_from_2099_is_refused_naming_the_field() -> None:
    with pytest.raises(EventDecodeError) as caught:
        decode(CHATBOT_ISSUES, issue(timestamp="2099-01-01T00:00:00Z"))
    error = caught.value
    assert error.kind == "future_timestamp"
    assert error.field == "timestamp"
    assert error.reason.startswith("timestamp: future_timestamp: 2099-01-01T00:00:00Z is ")
    # what the gateway's publish validation sees (model_validate): a 422 naming `timestamp`
    with pytest.raises(ValidationError) as invalid:
        FactoryIssueEvent.model_validate(json.loads(issue(timestamp="2099-01-01T00:00:00Z")))
    assert [(e["loc"], e["type"]) for e in invalid.value.errors()] == [(("timestamp",), "future_timestamp")]


def test_within_the_skew_is_accepted_beyond_it_refused() -> None:
    assert decode(CHATBOT_ISSUES, issue(timestamp=in_(timedelta(minutes=4)))).issue == "P1"
    with pytest.raises(EventDecodeError, match="future_timestamp"):
        decode(CHATBOT_ISSUES, issue(timestamp=in_(timedelta(minutes=6))))
    old = decode(CHATBOT_ISSUES, issue(timestamp="1999-01-01T00:00:00Z"))  # a backfill is fine
    assert old.timestamp.year == 1999


def test_missing_timestamp_filled_from_a_skewed_record_time_is_refused() -> None:
    skewed = datetime.now(UTC) + timedelta(days=365)
    with pytest.raises(EventDecodeError, match="future_timestamp"):
        decode(CHATBOT_ISSUES, issue(), received_at=skewed)


def test_skew_is_configurable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAX_CLOCK_SKEW", "1h")
    assert decode(CHATBOT_ISSUES, issue(timestamp=in_(timedelta(minutes=50)))).issue == "P1"
    monkeypatch.setenv("MAX_CLOCK_SKEW", "0")
    with pytest.raises(EventDecodeError, match="future_timestamp"):
        decode(CHATBOT_ISSUES, issue(timestamp=in_(timedelta(seconds=30))))
    for good, seconds in (("300", 300), ("30s", 30), ("500ms", 0.5), ("5m", 300), ("2h", 7200)):
        monkeypatch.setenv("MAX_CLOCK_SKEW", good)
        assert max_clock_skew() == timedelta(seconds=seconds)
    for bad in ("soon", "-5", "5d"):
        monkeypatch.setenv("MAX_CLOCK_SKEW", bad)
        with pytest.raises(ValueError, match="MAX_CLOCK_SKEW"):
            max_clock_skew()


def test_message_events_follow_the_same_rule() -> None:
    ahead = now_ms() + 10 * 60 * 1000
    for decoder in (lambda raw: decode(MESSAGES_CREATED, raw), decode_message_event):
        with pytest.raises(EventDecodeError) as caught:
            decoder(message(ahead))
        assert caught.value.kind == "future_timestamp"
        assert caught.value.field == "timestamp"
    assert decode(MESSAGES_CREATED, message(now_ms() + 60_000)).payload.message_id == "m1"
    with pytest.raises(ValidationError) as invalid:
        MessageCreatedEvent.model_validate(json.loads(message(ahead)))
    assert invalid.value.errors()[0]["loc"] == ("timestamp",)


def test_a_bad_value_stops_the_process_at_start_naming_the_variable() -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "MAX_CLOCK_SKEW": "soon"}
    done = subprocess.run(
        [sys.executable, "-c", "import platform_events"], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode != 0
    assert "MAX_CLOCK_SKEW: expected seconds (e.g. 300) or a duration such as 5m, got 'soon'" in done.stderr
