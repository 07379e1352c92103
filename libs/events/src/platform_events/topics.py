"""Topic registry: every topic of the platform, its model, key, consumer groups and DLQ, in one place."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterator, Mapping
from types import MappingProxyType
from typing import Any, Final, Generic, TypeVar

from pydantic import BaseModel

from platform_events.activity import UserActivityEvent
from platform_events.issues import FactoryIssueEvent
from platform_events.logs import WideLogEvent
from platform_events.messages import MessageCreatedEvent, MessageDeletedEvent, MessageUpdatedEvent
from platform_events.notifications import NotificationSentEvent

__all__ = [
    "CHATBOT_ISSUES",
    "DEFAULT_PARTITIONS",
    "DLQ_SUFFIX",
    "GROUP_CHATBOT_ISSUES",
    "GROUP_LOGS",
    "GROUP_NOTIFICATION_SERVICE",
    "GROUP_SEARCH_INDEXER",
    "LOG_EVENTS",
    "MESSAGES_CREATED",
    "MESSAGES_DELETED",
    "MESSAGES_UPDATED",
    "NOTIFICATIONS_SENT",
    "TOPICS",
    "TOPIC_CHATBOT_ISSUES",
    "TOPIC_LOG_EVENTS",
    "TOPIC_MESSAGES_CREATED",
    "TOPIC_MESSAGES_DELETED",
    "TOPIC_MESSAGES_UPDATED",
    "TOPIC_NOTIFICATIONS_SENT",
    "TOPIC_USERS_ACTIVITY",
    "USERS_ACTIVITY",
    "TopicSpec",
    "UnknownTopicError",
    "base_topic",
    "dlq_topic_for",
    "find_spec",
    "get_spec",
    "is_dlq_topic",
    "resolve_topics",
    "validate_topic_name",
]

M = TypeVar("M", bound=BaseModel)

DLQ_SUFFIX: Final = ".dlq"
DEFAULT_PARTITIONS: Final = 3

# Default topic names (a compatibility promise; deployments may rename some through env vars).
TOPIC_CHATBOT_ISSUES: Final = "chatbot-issue-events"
TOPIC_LOG_EVENTS: Final = "log-events"
TOPIC_MESSAGES_CREATED: Final = "platform.messages.created"
TOPIC_MESSAGES_UPDATED: Final = "platform.messages.updated"
TOPIC_MESSAGES_DELETED: Final = "platform.messages.deleted"
TOPIC_NOTIFICATIONS_SENT: Final = "platform.notifications.sent"
TOPIC_USERS_ACTIVITY: Final = "platform.users.activity"

# Default consumer groups.
GROUP_CHATBOT_ISSUES: Final = "chatbot-issue-consumer-group"
GROUP_LOGS: Final = "log-consumer-group"
GROUP_SEARCH_INDEXER: Final = "search-indexer"
GROUP_NOTIFICATION_SERVICE: Final = "notification-service"

# Kafka: [a-zA-Z0-9._-], at most 249 characters, not "." or "..". The DLQ name must fit too.
_TOPIC_NAME_RE: Final = re.compile(r"[A-Za-z0-9._-]+")
_MAX_TOPIC_CHARS: Final = 249


def validate_topic_name(name: str) -> str:
    """Return ``name`` if it is a legal Kafka topic name whose DLQ name is legal too, else ValueError."""
    limit = _MAX_TOPIC_CHARS - len(DLQ_SUFFIX)
    if not isinstance(name, str) or not _TOPIC_NAME_RE.fullmatch(name) or name in {".", ".."}:
        raise ValueError(f"invalid topic name {name!r}: use only letters, digits, '.', '_' and '-'")
    if len(name) > limit:
        raise ValueError(f"invalid topic name {name[:40]!r}...: longer than {limit} characters")
    return name


def dlq_topic_for(topic_name: str) -> str:
    """``<topic>.dlq``."""
    return f"{topic_name}{DLQ_SUFFIX}"


def is_dlq_topic(topic_name: str) -> bool:
    return topic_name.endswith(DLQ_SUFFIX) and len(topic_name) > len(DLQ_SUFFIX)


def base_topic(topic_name: str) -> str:
    """The original topic of a DLQ topic (``x.dlq`` → ``x``); other names are returned unchanged."""
    return topic_name[: -len(DLQ_SUFFIX)] if is_dlq_topic(topic_name) else topic_name


@dataclasses.dataclass(frozen=True, slots=True)
class TopicSpec(Generic[M]):
    """One topic: its name, event model, how its Kafka key is derived, and who consumes it.

    ``key(event)`` gives the message key (events with the same key stay ordered in one partition).
    ``consumer_groups`` are the default groups reading the topic (the first one is ``consumer_group``).
    ``env_var`` renames the topic in a deployment (every service reads it the same way).
    The DLQ ``<name>.dlq`` carries the original key and the original bytes.
    """

    name: str
    model: type[M]
    key: Callable[[M], str]
    description: str
    consumer_groups: tuple[str, ...] = ()
    partitions: int = DEFAULT_PARTITIONS
    env_var: str | None = None

    def __post_init__(self) -> None:
        validate_topic_name(self.name)
        if self.partitions < 1:
            raise ValueError(f"topic {self.name!r}: partitions must be >= 1, got {self.partitions}")

    @property
    def dlq_topic(self) -> str:
        return dlq_topic_for(self.name)

    @property
    def consumer_group(self) -> str | None:
        """The default (first) consumer group, or None when nothing in the platform consumes the topic."""
        return self.consumer_groups[0] if self.consumer_groups else None

    def renamed(self, new_name: str) -> TopicSpec[M]:
        """A copy under another name (e.g. from ``KAFKA_TOPIC_CHATBOT_ISSUES``); ValueError if illegal."""
        return dataclasses.replace(self, name=validate_topic_name(new_name))

    def with_partitions(self, partitions: int) -> TopicSpec[M]:
        return dataclasses.replace(self, partitions=partitions)

    def key_for(self, event: M) -> str:
        """The Kafka key of ``event`` (TypeError if it is not an instance of ``model``)."""
        if not isinstance(event, self.model):
            raise TypeError(f"topic {self.name!r} carries {self.model.__name__}, not {type(event).__name__}")
        return self.key(event)


def _issue_key(event: FactoryIssueEvent) -> str:
    return event.issue


def _log_key(event: WideLogEvent) -> str:
    return event.event_id


def _created_key(event: MessageCreatedEvent) -> str:
    return event.payload.channel_id


def _updated_key(event: MessageUpdatedEvent) -> str:
    return event.payload.channel_id


def _deleted_key(event: MessageDeletedEvent) -> str:
    return event.payload.channel_id


def _notification_key(event: NotificationSentEvent) -> str:
    return event.user_id


def _activity_key(event: UserActivityEvent) -> str:
    return event.user_id


CHATBOT_ISSUES: Final = TopicSpec(
    name=TOPIC_CHATBOT_ISSUES,
    model=FactoryIssueEvent,
    key=_issue_key,
    description="Factory failure reports / inspections (camelCase JSON) → MySQL ChatbotIssue + sessions",
    consumer_groups=(GROUP_CHATBOT_ISSUES,),
    env_var="KAFKA_TOPIC_CHATBOT_ISSUES",
)
LOG_EVENTS: Final = TopicSpec(
    name=TOPIC_LOG_EVENTS,
    model=WideLogEvent,
    key=_log_key,
    description="Wide log events, one per finished request/job → MongoDB wide_events",
    consumer_groups=(GROUP_LOGS,),
    env_var="KAFKA_LOG_TOPIC",
)
MESSAGES_CREATED: Final = TopicSpec(
    name=TOPIC_MESSAGES_CREATED,
    model=MessageCreatedEvent,
    key=_created_key,
    description="New collaboration messages → search index + mention notifications",
    consumer_groups=(GROUP_SEARCH_INDEXER, GROUP_NOTIFICATION_SERVICE),
    env_var="KAFKA_TOPIC_MESSAGES_CREATED",
)
MESSAGES_UPDATED: Final = TopicSpec(
    name=TOPIC_MESSAGES_UPDATED,
    model=MessageUpdatedEvent,
    key=_updated_key,
    description="Edited collaboration messages (new content) → search index",
    consumer_groups=(GROUP_SEARCH_INDEXER,),
    env_var="KAFKA_TOPIC_MESSAGES_UPDATED",
)
MESSAGES_DELETED: Final = TopicSpec(
    name=TOPIC_MESSAGES_DELETED,
    model=MessageDeletedEvent,
    key=_deleted_key,
    description="Deleted collaboration messages → removed from the search index",
    consumer_groups=(GROUP_SEARCH_INDEXER,),
    env_var="KAFKA_TOPIC_MESSAGES_DELETED",
)
NOTIFICATIONS_SENT: Final = TopicSpec(
    name=TOPIC_NOTIFICATIONS_SENT,
    model=NotificationSentEvent,
    key=_notification_key,
    description="Notifications delivered to users (observable through the gateway)",
    env_var="KAFKA_TOPIC_NOTIFICATIONS_SENT",
)
USERS_ACTIVITY: Final = TopicSpec(
    name=TOPIC_USERS_ACTIVITY,
    model=UserActivityEvent,
    key=_activity_key,
    description="User activity log (retained; browsable through the admin API)",
    env_var="KAFKA_TOPIC_USERS_ACTIVITY",
)

#: Every topic, keyed by its *default* name.
TOPICS: Final[Mapping[str, TopicSpec[Any]]] = MappingProxyType(
    {
        spec.name: spec
        for spec in (
            CHATBOT_ISSUES,
            LOG_EVENTS,
            MESSAGES_CREATED,
            MESSAGES_UPDATED,
            MESSAGES_DELETED,
            NOTIFICATIONS_SENT,
            USERS_ACTIVITY,
        )
    }
)


class UnknownTopicError(KeyError):
    """Raised by :func:`get_spec` for a topic that is not in the registry."""

    def __init__(self, topic_name: str, known: Iterator[str] | tuple[str, ...]) -> None:
        self.topic_name = topic_name
        self.known = tuple(known)
        super().__init__(topic_name)

    def __str__(self) -> str:
        return (
            f"unknown topic {self.topic_name!r}: known topics are {', '.join(self.known)} "
            f"(and their {DLQ_SUFFIX} dead-letter topics)"
        )


def find_spec(topic_name: str, topics: Mapping[str, TopicSpec[Any]] | None = None) -> TopicSpec[Any] | None:
    """The spec for ``topic_name`` (its current, possibly renamed, name), or None.

    A DLQ name ``<name>.dlq`` resolves to the spec of ``<name>``: DLQ records carry the original bytes and
    key, so they decode with the original model.
    """
    registry = TOPICS if topics is None else topics
    by_name = {spec.name: spec for spec in registry.values()}
    spec = by_name.get(topic_name)
    if spec is None and is_dlq_topic(topic_name):
        spec = by_name.get(base_topic(topic_name))
    return spec


def get_spec(topic_name: str, topics: Mapping[str, TopicSpec[Any]] | None = None) -> TopicSpec[Any]:
    """Like :func:`find_spec` but raises :class:`UnknownTopicError` (a KeyError) naming the known topics."""
    spec = find_spec(topic_name, topics)
    if spec is None:
        registry = TOPICS if topics is None else topics
        raise UnknownTopicError(topic_name, tuple(s.name for s in registry.values()))
    return spec


def resolve_topics(env: Mapping[str, str]) -> dict[str, TopicSpec[Any]]:
    """The registry with the renames configured in ``env`` applied (pass ``os.environ``; read nothing).

    Keys stay the *default* names so code can look specs up stably; values carry the configured names.
    ValueError names the variable when its value is not a legal topic name.
    """
    resolved: dict[str, TopicSpec[Any]] = {}
    for default_name, spec in TOPICS.items():
        override = env.get(spec.env_var, "").strip() if spec.env_var else ""
        if override:
            try:
                spec = spec.renamed(override)
            except ValueError as exc:
                raise ValueError(f"{spec.env_var}: {exc}") from None
        resolved[default_name] = spec
    names = [spec.name for spec in resolved.values()]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"topic names must be distinct; configured twice: {', '.join(duplicates)}")
    return resolved
