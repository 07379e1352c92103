"""Pure logic of the log-sink: documents, query building, cursors, settings."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from consumer_runtime import ConfigError, load_settings
from log_sink.config import Settings
from log_sink.handlers import (
    InvalidQuery,
    LogQuery,
    build_filter,
    decode_cursor,
    encode_cursor,
    parse_field_filters,
    parse_time,
    to_document,
    to_public,
)
from platform_events import LOG_EVENTS, decode

T0 = datetime(2026, 11, 23, 10, 0, 0, 123000, tzinfo=UTC)


def test_document_is_the_event_as_sent_with_id_and_date() -> None:
    raw = (
        b'{"event_id":"e1","timestamp":"2026-11-23T10:00:00.123Z","service":"api",'
        b'"status":500,"user":{"id":"u1"}}'
    )
    doc = to_document(decode(LOG_EVENTS, raw))
    assert doc == {"_id": "e1", "event_id": "e1", "timestamp": T0, "service": "api", "status": 500,
                   "user": {"id": "u1"}}  # fmt: skip
    assert to_public(doc) == {"event_id": "e1", "timestamp": "2026-11-23T10:00:00.123Z", "service": "api",
                              "status": 500, "user": {"id": "u1"}}  # fmt: skip


def test_epoch_ms_timestamp_becomes_a_date() -> None:
    doc = to_document(decode(LOG_EVENTS, b'{"event_id":"e","timestamp":1795432800123,"service":"s"}'))
    assert doc["timestamp"] == datetime(2026, 11, 23, 11, 20, 0, 123000, tzinfo=UTC)


def test_field_filters_match_text_and_json_scalar() -> None:
    assert parse_field_filters(["status:500"]) == {"status": ["500", 500]}
    assert parse_field_filters(["user.id:u1"]) == {"user.id": ["u1"]}
    assert parse_field_filters(["ok:true", "path:/a:b"]) == {"ok": ["true", True], "path": ["/a:b"]}
    assert parse_field_filters(['name:"x"']) == {"name": ['"x"', "x"]}


@pytest.mark.parametrize("bad", ["status", ":x", "$where:1", "a..b:1", "_id:x", "a.$gt:1"])
def test_bad_field_filters_name_the_parameter(bad: str) -> None:
    with pytest.raises(InvalidQuery, match=r"^field"):
        parse_field_filters([bad])


def test_filter_combines_every_clause() -> None:
    q = LogQuery(
        since=T0, until=T0, service="api", level="error", fields={"status": ["500", 500]}, cursor=(T0, "e9")
    )
    assert build_filter(q) == {
        "$and": [
            {"timestamp": {"$gte": T0, "$lt": T0}},
            {"service": "api"},
            {"level": "error"},
            {"status": {"$in": ["500", 500]}},
            {"$or": [{"timestamp": {"$lt": T0}}, {"timestamp": T0, "_id": {"$lt": "e9"}}]},
        ]
    }
    assert build_filter(LogQuery()) == {}
    assert build_filter(LogQuery(service="api")) == {"service": "api"}
    assert build_filter(LogQuery(trace_id="ab" * 16)) == {"trace_id": "ab" * 16}


def test_cursor_round_trip_and_garbage() -> None:
    cursor = encode_cursor({"_id": "evt_1", "timestamp": T0})
    assert decode_cursor(cursor) == (T0, "evt_1")
    with pytest.raises(InvalidQuery, match=r"^cursor"):
        decode_cursor("not-a-cursor!")


def test_time_parameters() -> None:
    assert parse_time("since", "2026-11-23T10:00:00.123Z") == T0
    assert parse_time("since", "1795432800123") == datetime(2026, 11, 23, 11, 20, 0, 123000, tzinfo=UTC)
    assert parse_time("since", None) is None
    with pytest.raises(InvalidQuery, match=r"^until"):
        parse_time("until", "yesterday")


def test_settings_defaults_and_seed_broker_name(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("KAFKA_BOOTSTRAP_SERVERS", "KAFKA_BROKER", "KAFKA_CONSUMER_GROUP", "KAFKA_LOG_TOPIC"):
        monkeypatch.delenv(var, raising=False)
    s = load_settings(Settings)
    assert (s.kafka_consumer_group, s.kafka_log_topic, s.http_port) == (
        "log-consumer-group",
        "log-events",
        8102,
    )
    assert (s.mq_batch_size, s.mq_batch_timeout_ms, s.retention_s) == (100, 1000, 30 * 86_400)
    monkeypatch.setenv("KAFKA_BROKER", "broker:9092")
    assert load_settings(Settings).kafka_bootstrap_servers == "broker:9092"
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "other:9092")
    assert load_settings(Settings).kafka_bootstrap_servers == "other:9092"
    monkeypatch.setenv("LOG_RETENTION_DAYS", "0")
    assert load_settings(Settings).retention_s is None


@pytest.mark.parametrize(
    ("var", "value"),
    [("MONGO_URL", "http://x"), ("KAFKA_LOG_TOPIC", "bad topic"), ("LOG_RETENTION_DAYS", "-1"),
     ("LOG_MONGO_DB", "a/b"), ("MQ_BATCH_SIZE", "0")],
)  # fmt: skip
def test_bad_settings_name_the_variable(monkeypatch: pytest.MonkeyPatch, var: str, value: str) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError, match=var):
        load_settings(Settings)
