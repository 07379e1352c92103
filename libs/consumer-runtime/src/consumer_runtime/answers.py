"""The HTTP answers of the services the gateway forwards to, declared once.

Each service answers with these models (``response_model`` / return type) and the gateway documents its
forwarded operations with the same classes, so the two OpenAPI documents cannot drift apart
(``test_gateway_response_schemas`` compares them). They live here because both sides already depend on
this library and the gateway's image cannot import the services' packages (it installs only its own
slice of the lock; the services' packages would pull their datastore drivers).

A docstring on a model is its schema's description: add one only to say what the answer is. The answers
only a service itself serves (no gateway route forwards them) stay in that service.
"""

from __future__ import annotations

from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from consumer_runtime.status import Counts, LastError

# ======================================================================================= issue-ingestor
#: ``GET /issues`` counts matching rows up to this many and pages no deeper (``issue_ingestor.store``).
ISSUE_COUNT_CAP: Final = 10_000


class IssueOut(BaseModel):
    issue: str
    processType: str
    modeType: str
    modeLogId: str
    description: str | None
    isSolved: bool
    timestamp: str = Field(description="event time, ISO-8601 UTC")
    received_at: str = Field(description="when the service first stored the issue")
    updated_at: str = Field(description="when the row last changed")
    kafka_partition: int
    kafka_offset: int
    session_seq: int = Field(description="number of the current (latest) chatbot session")


class IssuePage(BaseModel):
    total: int = Field(description=f"matching issues, counted up to {ISSUE_COUNT_CAP}")
    total_capped: bool = Field(
        False, description=f"true: more than {ISSUE_COUNT_CAP} match (total is {ISSUE_COUNT_CAP})"
    )
    limit: int
    offset: int
    items: list[IssueOut]


class SessionOut(BaseModel):
    id: int
    issue: str
    seq: int
    status: Literal["open", "closed"]
    opened_at: str
    closed_at: str | None


class DeletedOut(BaseModel):
    deleted: str
    sessions_deleted: int


# ======================================================================================= search-indexer
class Message(BaseModel):
    """A message as the search-indexer holds it (the event's field names); null where no event said yet."""

    message_id: str
    channel_id: str | None
    author_id: str | None
    content: str | None
    mentions: list[str]
    attachments: list[dict[str, Any] | str]
    created_at: str | None = Field(description="time of the message.created event, ISO-8601 UTC")
    updated_at: str | None = Field(description="time of the latest message.updated event, ISO-8601 UTC")
    version: int | None


class SearchHit(Message):
    score: float | None = Field(description="relevance (null when sorted by time)")
    highlights: list[str] = Field(description="content fragments with the matched words marked")


class SearchPage(BaseModel):
    total: int
    offset: int
    limit: int
    hits: list[SearchHit]


class RebuildConsumer(BaseModel):
    state: str
    counts: Counts
    last_error: LastError | None


class RebuildStatus(BaseModel):
    """The current or last rebuild; ``{"state": "idle"}`` before the first one (other fields absent)."""

    state: Literal[
        "idle",
        "starting",
        "creating_index",
        "replaying",
        "swapping",
        "catching_up",
        "cleaning_up",
        "done",
        "failed",
    ]
    id: str | None = None
    alias: str | None = None
    new_index: str | None = None
    old_indices: list[str] | None = None
    group: str | None = Field(None, description="the rebuild's own consumer group")
    topics: list[str] | None = None
    force: bool | None = None
    old_documents: int | None = None
    kept_indices: list[str] | None = None
    phase: Literal["replay", "catch_up"] | None = None
    replayed: int | None = None
    total: int | None = None
    progress: float | None = Field(None, description="replayed / total (0..1)")
    started_at: float | None = Field(None, description="epoch seconds")
    swapped_at: float | None = Field(None, description="when the alias moved (epoch seconds)")
    finished_at: float | None = Field(None, description="epoch seconds")
    rate_eps: float | None = Field(None, description="events per second of the replay")
    documents: int | None = Field(None, description="documents in the new index when done")
    error: str | None = None
    consumer: RebuildConsumer | None = Field(None, description="the rebuild's consumer, while it runs")


# ============================================================================================= log-sink
class WideEvent(BaseModel):
    """A stored wide event as it was sent: these three fields plus any context fields."""

    model_config = ConfigDict(extra="allow")

    event_id: str
    timestamp: str = Field(description="event time, ISO-8601 UTC")
    service: str


class LogPage(BaseModel):
    items: list[WideEvent]
    next_cursor: str | None
    count: int


# ============================================================================================= notifier
class Notification(BaseModel):
    notification_id: str
    user_id: str
    event_id: str = Field(description="event_id of the message event that mentioned the user")
    message_id: str
    channel_id: str
    author_id: str
    title: str
    body: str = Field(description="preview of the message content")
    created_at: int = Field(description="epoch ms when the notification was created (stream order)")
    message_timestamp: int | None = Field(None, description="epoch ms of the message event")
    read: bool
    read_at: int | None = Field(None, description="epoch ms when marked read")


class NotificationPage(BaseModel):
    user_id: str
    status: Literal["unread", "all"]
    items: list[Notification]
    total: int = Field(description="notifications matching status")
    unread: int
    limit: int
    offset: int


class MarkReadResult(BaseModel):
    user_id: str
    updated: int
    unread: int


class Preferences(BaseModel):
    user_id: str
    muted_channels: list[str] = Field(description="no notification is stored for mentions in these channels")


#: The SSE event name of one notification on the live stream.
NOTIFICATION_STREAM_EVENT: Final = "notification"
#: The live stream in the OpenAPI document: Server-Sent Events (no JSON schema describes an endless stream).
NOTIFICATION_STREAM_RESPONSE: Final[dict[str, Any]] = {
    "description": f"Server-Sent Events: `event: {NOTIFICATION_STREAM_EVENT}`, `data:` one Notification as "
    "JSON, `id:` the resume cursor; a `: connected` comment first, `: ping …` comments while idle",
    "content": {"text/event-stream": {"schema": {"type": "string"}}},
}
