"""Message events: envelope rules, per-topic event types, discriminated union, helpers."""

from __future__ import annotations

import json
from typing import Any

import pytest
from platform_events import (
    MESSAGE_CREATED,
    MESSAGE_DELETED,
    MESSAGE_UPDATED,
    MESSAGES_CREATED,
    MESSAGES_DELETED,
    MESSAGES_UPDATED,
    EventDecodeError,
    MessageCreatedEvent,
    MessageCreatedPayload,
    MessageDeletedEvent,
    MessageUpdatedEvent,
    TopicSpec,
    decode,
    decode_message_event,
    encode,
    encode_key,
)

CREATED: dict[str, Any] = {
    "event_type": "message.created",
    "event_id": "evt_001",
    "timestamp": 1697234567890,
    "payload": {
        "message_id": "msg_001",
        "channel_id": "ch_dev",
        "author_id": "user_001",
        "content": "프로젝트 배포 완료",
        "mentions": ["user_002"],
        "attachments": [],
    },
}
UPDATED: dict[str, Any] = {
    "event_type": "message.updated",
    "event_id": "evt_002",
    "timestamp": 1697234567999,
    "payload": {"message_id": "msg_001", "channel_id": "ch_dev", "content": "배포 완료 (수정)"},
}
DELETED: dict[str, Any] = {
    "event_type": "message.deleted",
    "event_id": "evt_003",
    "timestamp": 1697234568000,
    "payload": {"message_id": "msg_001", "channel_id": "ch_dev"},
}
BY_TOPIC: list[tuple[TopicSpec[Any], dict[str, Any]]] = [
    (MESSAGES_CREATED, CREATED),
    (MESSAGES_UPDATED, UPDATED),
    (MESSAGES_DELETED, DELETED),
]


def to_bytes(data: dict[str, Any]) -> bytes:
    return json.dumps(data, ensure_ascii=False).encode()


def with_(base: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    data = json.loads(json.dumps(base))
    *parents, last = path.split(".")
    target = data
    for part in parents:
        target = target[part]
    if value is ...:
        del target[last]
    else:
        target[last] = value
    return data


def decode_error(spec: TopicSpec[Any], data: dict[str, Any]) -> EventDecodeError:
    with pytest.raises(EventDecodeError) as info:
        decode(spec, to_bytes(data))
    return info.value


@pytest.mark.parametrize(("spec", "sample"), BY_TOPIC)
def test_each_topic_decodes_its_event_and_keys_by_channel(
    spec: TopicSpec[Any], sample: dict[str, Any]
) -> None:
    event = decode(spec, to_bytes(sample))
    assert isinstance(event, spec.model)
    assert event.event_type == sample["event_type"]
    assert encode_key(spec, event) == b"ch_dev"
    assert json.loads(encode(event))["event_type"] == sample["event_type"]
    assert decode_message_event(to_bytes(sample)) == event


@pytest.mark.parametrize(("spec", "_sample"), BY_TOPIC)
@pytest.mark.parametrize("other", [CREATED, UPDATED, DELETED])
def test_topic_fixes_the_event_type(spec: TopicSpec[Any], _sample: Any, other: dict[str, Any]) -> None:
    if other["event_type"] == spec.model.EVENT_TYPE:
        return
    # Give `other` every payload field any type needs, so only event_type can be wrong.
    data = with_(other, "payload", {**CREATED["payload"], **other["payload"]})
    error = decode_error(spec, data)
    assert error.kind == "invalid"
    assert error.field == "event_type"
    assert f"'{spec.model.EVENT_TYPE}'" in error.reason


def test_union_rejects_unknown_or_missing_event_type() -> None:
    for data, expected in [
        (with_(CREATED, "event_type", "message.pinned"), "one of"),
        (with_(CREATED, "event_type", ...), "field required"),
    ]:
        with pytest.raises(EventDecodeError) as info:
            decode_message_event(to_bytes(data))
        assert info.value.field == "event_type"
        assert expected in info.value.reason


def test_union_error_paths_do_not_show_the_tag() -> None:
    with pytest.raises(EventDecodeError) as info:
        decode_message_event(to_bytes(with_(UPDATED, "payload.content", ...)))
    assert info.value.field == "payload.content"
    assert info.value.reason == "payload.content: field required"


@pytest.mark.parametrize(
    "path",
    [
        "event_type",
        "event_id",
        "timestamp",
        "payload",
        "payload.message_id",
        "payload.channel_id",
        "payload.author_id",
        "payload.content",
    ],
)
def test_created_required_fields(path: str) -> None:
    error = decode_error(MESSAGES_CREATED, with_(CREATED, path, ...))
    assert error.field == path
    assert error.reason == f"{path}: field required"


@pytest.mark.parametrize("value", ["1697234567890", 1697234567890.0, 0, -1, True, None, 10**20])
def test_timestamp_is_strict_positive_epoch_ms(value: object) -> None:
    error = decode_error(MESSAGES_CREATED, with_(CREATED, "timestamp", value))
    assert error.field == "timestamp"


def test_mentions_and_attachments_default_and_null() -> None:
    minimal = with_(with_(CREATED, "payload.mentions", ...), "payload.attachments", ...)
    event = decode(MESSAGES_CREATED, to_bytes(minimal))
    assert event.payload.mentions == []
    assert event.payload.attachments == []
    nulls = with_(with_(CREATED, "payload.mentions", None), "payload.attachments", None)
    assert decode(MESSAGES_CREATED, to_bytes(nulls)).payload.mentions == []


def test_attachments_are_free_form() -> None:
    attachments = [{"url": "https://x/y.png", "size": 10, "meta": {"w": 1}}, "https://x/z.pdf"]
    event = decode(MESSAGES_CREATED, to_bytes(with_(CREATED, "payload.attachments", attachments)))
    assert event.payload.attachments == attachments
    assert json.loads(encode(event))["payload"]["attachments"] == attachments
    assert (
        decode_error(MESSAGES_CREATED, with_(CREATED, "payload.attachments", [5])).field
        == "payload.attachments[0]"
    )


def test_mentions_must_be_ids() -> None:
    error = decode_error(MESSAGES_CREATED, with_(CREATED, "payload.mentions", ["user_002", 3]))
    assert error.field == "payload.mentions[1]"


def test_mentioned_users_deduplicates_in_order() -> None:
    mentions = ["u2", "u3", "u2", "u4", "u3"]
    event = decode(MESSAGES_CREATED, to_bytes(with_(CREATED, "payload.mentions", mentions)))
    assert event.payload.mentions == mentions  # kept as sent
    assert event.payload.mentioned_users == ("u2", "u3", "u4")


def test_empty_content_is_allowed_but_content_is_required() -> None:
    assert decode(MESSAGES_CREATED, to_bytes(with_(CREATED, "payload.content", ""))).payload.content == ""


def test_updated_optional_fields() -> None:
    event = decode(MESSAGES_UPDATED, to_bytes(UPDATED))
    assert event.payload.author_id is None
    assert event.payload.mentions is None
    full = with_(with_(UPDATED, "payload.author_id", "user_001"), "payload.mentions", ["user_9"])
    event = decode(MESSAGES_UPDATED, to_bytes(full))
    assert event.payload.author_id == "user_001"
    assert event.payload.mentions == ["user_9"]


def test_deleted_needs_only_ids_and_ignores_the_rest() -> None:
    data = with_(DELETED, "payload.content", "whatever")
    event = decode(MESSAGES_DELETED, to_bytes(data))
    assert isinstance(event, MessageDeletedEvent)
    assert json.loads(encode(event))["payload"] == {"message_id": "msg_001", "channel_id": "ch_dev"}
    assert (
        decode_error(MESSAGES_DELETED, with_(DELETED, "payload.channel_id", ...)).field
        == "payload.channel_id"
    )


def test_new_builds_fresh_events() -> None:
    payload = MessageCreatedPayload(message_id="m1", channel_id="c1", author_id="u1", content="안녕하세요")
    event = MessageCreatedEvent.new(payload)
    assert event.event_type == MESSAGE_CREATED
    assert event.event_id.startswith("evt_")
    assert len(event.event_id) == 36
    assert event.timestamp > 1_600_000_000_000
    assert event.payload == payload
    assert MessageCreatedEvent.new(payload).event_id != event.event_id

    updated = MessageUpdatedEvent.new(
        {"message_id": "m1", "channel_id": "c1", "content": "수정"}, timestamp=5
    )
    assert (updated.event_type, updated.timestamp) == (MESSAGE_UPDATED, 5)
    deleted = MessageDeletedEvent.new({"message_id": "m1", "channel_id": "c1"}, event_id="evt_x")
    assert (deleted.event_type, deleted.event_id) == (MESSAGE_DELETED, "evt_x")
    assert (deleted.channel_id, deleted.message_id) == ("c1", "m1")


def test_encode_key_refuses_an_event_of_another_topic() -> None:
    event = decode(MESSAGES_DELETED, to_bytes(DELETED))
    with pytest.raises(TypeError, match="MessageCreatedEvent"):
        encode_key(MESSAGES_CREATED, event)
