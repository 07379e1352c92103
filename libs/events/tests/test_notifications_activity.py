"""NotificationSentEvent and UserActivityEvent."""

from __future__ import annotations

import json

import pytest
from platform_events import (
    NOTIFICATIONS_SENT,
    USERS_ACTIVITY,
    EventDecodeError,
    MessageCreatedEvent,
    NotificationSentEvent,
    UserActivityEvent,
    decode,
    encode,
    encode_key,
    new_mention_notification,
    notification_id_for,
)


def test_mention_notification_from_a_message(created_event: MessageCreatedEvent) -> None:
    notification = new_mention_notification(created_event, "user_002", created_at=1697234567999)
    assert notification.event_type == "notification.sent"
    assert notification.event_id == created_event.event_id
    assert (notification.message_id, notification.channel_id, notification.author_id) == (
        "msg_100",
        "ch_ops",
        "user_001",
    )
    assert notification.title == "새 멘션"
    assert notification.body == created_event.payload.content
    assert notification.created_at == 1697234567999
    assert encode_key(NOTIFICATIONS_SENT, notification) == b"user_002"
    assert decode(NOTIFICATIONS_SENT, encode(notification)) == notification
    assert "새 멘션".encode() in encode(notification)


def test_notification_ids_are_deterministic_per_event_and_user(created_event: MessageCreatedEvent) -> None:
    first = notification_id_for(created_event.event_id, "user_002")
    assert first == notification_id_for(created_event.event_id, "user_002")
    assert first != notification_id_for(created_event.event_id, "user_003")
    assert first != notification_id_for("evt_other", "user_002")
    assert notification_id_for("a", "b/c") != notification_id_for("a/b", "c")
    assert first.startswith("ntf_")
    assert len(first) == 36
    # one notification per mentioned user, even when mentioned twice
    ids = {new_mention_notification(created_event, u).notification_id for u in created_event.payload.mentions}
    assert len(ids) == len(created_event.payload.mentioned_users) == 2


def test_notification_wire_format() -> None:
    data = {
        "event_type": "notification.sent",
        "notification_id": "ntf_1",
        "event_id": "evt_001",
        "user_id": "user_002",
        "message_id": "msg_001",
        "channel_id": "ch_dev",
        "author_id": "user_001",
        "title": "새 멘션",
        "body": "프로젝트 배포 완료",
        "created_at": 1697234567890,
    }
    raw = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
    event = decode(NOTIFICATIONS_SENT, raw)
    assert isinstance(event, NotificationSentEvent)
    assert encode(event) == raw
    with pytest.raises(EventDecodeError) as info:
        decode(NOTIFICATIONS_SENT, json.dumps({**data, "event_type": "notification.read"}).encode())
    assert info.value.field == "event_type"
    with pytest.raises(EventDecodeError) as info:
        decode(NOTIFICATIONS_SENT, json.dumps({**data, "created_at": "yesterday"}).encode())
    assert info.value.field == "created_at"


def test_activity_event() -> None:
    event = UserActivityEvent.new("user_7", "login", {"ip": "10.0.0.1", "agent": {"os": "리눅스"}})
    assert event.event_id.startswith("evt_")
    assert encode_key(USERS_ACTIVITY, event) == b"user_7"
    assert decode(USERS_ACTIVITY, encode(event)) == event
    assert event.occurred_at.timestamp() * 1000 == pytest.approx(event.timestamp, abs=1)


def test_activity_attributes_optional() -> None:
    raw = b'{"event_id":"e1","user_id":"u1","activity":"logout","timestamp":1697234567890}'
    assert decode(USERS_ACTIVITY, raw).attributes == {}
    raw_null = (
        b'{"event_id":"e1","user_id":"u1","activity":"logout","timestamp":1697234567890,"attributes":null}'
    )
    assert decode(USERS_ACTIVITY, raw_null).attributes == {}


@pytest.mark.parametrize(
    ("field", "value"),
    [("activity", ""), ("activity", 3), ("user_id", None), ("timestamp", -1), ("attributes", [])],
)
def test_activity_rejections(field: str, value: object) -> None:
    data = {"event_id": "e1", "user_id": "u1", "activity": "login", "timestamp": 1697234567890, field: value}
    with pytest.raises(EventDecodeError) as info:
        decode(USERS_ACTIVITY, json.dumps(data).encode())
    assert info.value.field == field
