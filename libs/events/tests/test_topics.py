"""The topic registry matches docs/contracts.md; renames, DLQ names and look-ups."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from platform_events import (
    CHATBOT_ISSUES,
    LOG_EVENTS,
    MESSAGES_CREATED,
    NOTIFICATIONS_SENT,
    TOPICS,
    USERS_ACTIVITY,
    FactoryIssueEvent,
    MessageCreatedEvent,
    MessageDeletedEvent,
    MessageUpdatedEvent,
    NotificationSentEvent,
    TopicSpec,
    UnknownTopicError,
    UserActivityEvent,
    WideLogEvent,
    base_topic,
    dlq_topic_for,
    find_spec,
    get_spec,
    is_dlq_topic,
    resolve_topics,
    validate_topic_name,
)

# (topic, model, consumer groups, env var) as docs/contracts.md lists them
EXPECTED = [
    (
        "chatbot-issue-events",
        FactoryIssueEvent,
        ("chatbot-issue-consumer-group",),
        "KAFKA_TOPIC_CHATBOT_ISSUES",
    ),
    ("log-events", WideLogEvent, ("log-consumer-group",), "KAFKA_LOG_TOPIC"),
    (
        "platform.messages.created",
        MessageCreatedEvent,
        ("search-indexer", "notification-service"),
        "KAFKA_TOPIC_MESSAGES_CREATED",
    ),
    ("platform.messages.updated", MessageUpdatedEvent, ("search-indexer",), "KAFKA_TOPIC_MESSAGES_UPDATED"),
    ("platform.messages.deleted", MessageDeletedEvent, ("search-indexer",), "KAFKA_TOPIC_MESSAGES_DELETED"),
    ("platform.notifications.sent", NotificationSentEvent, (), "KAFKA_TOPIC_NOTIFICATIONS_SENT"),
    ("platform.users.activity", UserActivityEvent, (), "KAFKA_TOPIC_USERS_ACTIVITY"),
]


def test_registry_matches_the_spec() -> None:
    assert list(TOPICS) == [name for name, *_ in EXPECTED]
    for name, model, groups, env_var in EXPECTED:
        spec = TOPICS[name]
        assert spec.name == name
        assert spec.model is model
        assert spec.consumer_groups == groups
        assert spec.consumer_group == (groups[0] if groups else None)
        assert spec.env_var == env_var
        assert spec.partitions == 3
        assert spec.dlq_topic == f"{name}.dlq"
        assert spec.description
        assert "\n" not in spec.description


def test_registry_is_read_only() -> None:
    with pytest.raises(TypeError):
        TOPICS["x"] = CHATBOT_ISSUES  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        CHATBOT_ISSUES.name = "x"  # type: ignore[misc]


def test_keys(issue_event: FactoryIssueEvent, created_event: MessageCreatedEvent) -> None:
    assert CHATBOT_ISSUES.key_for(issue_event) == issue_event.issue
    assert MESSAGES_CREATED.key_for(created_event) == created_event.payload.channel_id
    log = WideLogEvent.new("svc", event_id="evt_log")
    assert LOG_EVENTS.key_for(log) == "evt_log"
    activity = UserActivityEvent.new("user_7", "login")
    assert USERS_ACTIVITY.key_for(activity) == "user_7"
    with pytest.raises(TypeError):
        NOTIFICATIONS_SENT.key_for(activity)  # type: ignore[arg-type]


def test_renamed_is_a_copy() -> None:
    renamed = CHATBOT_ISSUES.renamed("factory.issues.v1")
    assert renamed.name == "factory.issues.v1"
    assert renamed.dlq_topic == "factory.issues.v1.dlq"
    assert (renamed.model, renamed.key, renamed.consumer_groups) == (
        CHATBOT_ISSUES.model,
        CHATBOT_ISSUES.key,
        CHATBOT_ISSUES.consumer_groups,
    )
    assert CHATBOT_ISSUES.name == "chatbot-issue-events"
    assert CHATBOT_ISSUES.with_partitions(6).partitions == 6


@pytest.mark.parametrize("name", ["", ".", "..", "has space", "한글토픽", "a/b", "x" * 246])
def test_illegal_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="invalid topic name"):
        CHATBOT_ISSUES.renamed(name)


def test_longest_legal_name_leaves_room_for_the_dlq() -> None:
    assert validate_topic_name("x" * 245) == "x" * 245


def test_partitions_must_be_positive() -> None:
    with pytest.raises(ValueError, match="partitions"):
        CHATBOT_ISSUES.with_partitions(0)


def test_dlq_name_helpers() -> None:
    assert dlq_topic_for("log-events") == "log-events.dlq"
    assert is_dlq_topic("log-events.dlq")
    assert not is_dlq_topic("log-events")
    assert not is_dlq_topic(".dlq")
    assert base_topic("log-events.dlq") == "log-events"
    assert base_topic("log-events") == "log-events"


def test_get_spec_and_dlq_resolution() -> None:
    for name, spec in TOPICS.items():
        assert get_spec(name) is spec
        assert get_spec(f"{name}.dlq") is spec  # DLQ records carry the original bytes and key
    assert find_spec("nope") is None
    assert find_spec("nope.dlq") is None


def test_unknown_topic_is_a_clear_key_error() -> None:
    with pytest.raises(KeyError) as info:
        get_spec("platform.messages.pinned")
    assert isinstance(info.value, UnknownTopicError)
    message = str(info.value)
    assert "unknown topic 'platform.messages.pinned'" in message
    assert "chatbot-issue-events" in message
    assert "platform.users.activity" in message


def test_resolve_topics_applies_env_renames() -> None:
    env = {"KAFKA_TOPIC_CHATBOT_ISSUES": "factory.issues", "KAFKA_LOG_TOPIC": " app-logs ", "OTHER": "x"}
    resolved = resolve_topics(env)
    assert list(resolved) == list(TOPICS)  # keyed by default names
    assert resolved["chatbot-issue-events"].name == "factory.issues"
    assert resolved["log-events"].name == "app-logs"
    assert resolved["platform.messages.created"] is TOPICS["platform.messages.created"]
    assert get_spec("factory.issues", resolved).model is FactoryIssueEvent
    assert get_spec("factory.issues.dlq", resolved).model is FactoryIssueEvent
    with pytest.raises(UnknownTopicError):
        get_spec("chatbot-issue-events", resolved)


def test_resolve_topics_empty_env_is_the_default() -> None:
    assert resolve_topics({}) == dict(TOPICS)
    assert resolve_topics({"KAFKA_LOG_TOPIC": ""}) == dict(TOPICS)


def test_resolve_topics_names_the_bad_variable() -> None:
    with pytest.raises(ValueError, match=r"^KAFKA_LOG_TOPIC: invalid topic name"):
        resolve_topics({"KAFKA_LOG_TOPIC": "bad topic"})


def test_resolve_topics_refuses_duplicate_names() -> None:
    with pytest.raises(ValueError, match="distinct"):
        resolve_topics({"KAFKA_LOG_TOPIC": "chatbot-issue-events"})


def test_specs_are_generic_over_their_model() -> None:
    spec: TopicSpec[Any] = TopicSpec(
        name="custom.topic", model=WideLogEvent, key=lambda e: e.service, description="x"
    )
    assert spec.consumer_group is None
    assert spec.key_for(WideLogEvent.new("svc")) == "svc"
