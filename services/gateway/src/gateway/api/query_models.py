"""The query contracts of the services the gateway forwards to, and their answers, declared once for the
OpenAPI document.

The owning service validates every query again (its answer is returned unchanged); the gateway declares
them so its OpenAPI documents every parameter and refuses an out-of-range one before a round trip. The
services' own packages are not importable here (the gateway's image installs only its own slice of the
lock, and importing them would pull their datastore drivers), so each bound below names the service
constant it mirrors — one place per bound in the gateway — and each answer model names the service model
it mirrors, field for field (``test_gateway_response_schemas`` compares the two OpenAPI schemas, and the
stack test validates real answers against them). No docstrings on the mirrors unless the service's model
has the same one: a docstring is the schema's description.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from consumer_runtime.status import Counts, LastError
from platform_events import ModeType, ProcessType
from pydantic import BaseModel, ConfigDict, Field

#: issue-ingestor ``MAX_PAGE``: most issues (and log events) in one page.
MAX_PAGE = 1000
#: issue-ingestor's deepest page offset (a huge OFFSET breaks its SQL; no one pages that far).
MAX_ISSUE_OFFSET = 10_000  # the issue-ingestor counts and pages up to its COUNT_CAP
#: search-indexer ``MAX_RESULT_WINDOW``: offset + limit of a search stays within it.
SEARCH_WINDOW = 10_000
#: search-indexer: most hits in one page.
MAX_SEARCH_PAGE = 100
#: notifier: most notifications in one page, and the deepest offset.
MAX_NOTIFICATION_PAGE = 500
MAX_NOTIFICATION_OFFSET = 1_000_000
#: An id (user, channel, author, message, event) as the services accept it.
MAX_ID = 128
#: A notification stream's resume cursor (Last-Event-ID / ``after``): the notifier's opaque SSE id, one
#: position per partition of the message topic (the notifier accepts the same length).
MAX_STREAM_CURSOR = 1024
#: Free-text search words.
MAX_SEARCH_TEXT = 1000
#: A time bound given as text (ISO-8601 or epoch ms).
MAX_TIME_TEXT = 64

Limit = Annotated[int, Field(ge=1, le=MAX_PAGE)]
SearchText = Annotated[
    str | None, Field(max_length=MAX_SEARCH_TEXT, description="Words matched in content", examples=["배포"])
]


class IssueQuery(BaseModel):
    """issue-ingestor ``GET /issues``."""

    limit: Limit = 100
    offset: Annotated[int, Field(ge=0, le=MAX_ISSUE_OFFSET)] = 0
    process_type: ProcessType | None = Field(None, alias="processType")
    mode_type: ModeType | None = Field(None, alias="modeType")
    is_solved: bool | None = Field(None, alias="isSolved")
    since: str | None = Field(
        None, alias="from", max_length=MAX_TIME_TEXT, description="event time ≥ (ISO-8601)"
    )
    until: str | None = Field(
        None, alias="to", max_length=MAX_TIME_TEXT, description="event time < (ISO-8601)"
    )


class SearchQuery(BaseModel):
    """search-indexer ``GET /messages/search``."""

    q: SearchText = None
    channel_id: str | None = Field(None, max_length=MAX_ID)
    author_id: str | None = Field(None, max_length=MAX_ID)
    since: datetime | None = Field(None, alias="from", description="created at or after")
    until: datetime | None = Field(None, alias="to", description="created at or before")
    sort: Literal["relevance", "newest", "oldest"] | None = None
    offset: Annotated[int, Field(ge=0, le=SEARCH_WINDOW)] = 0
    limit: Annotated[int, Field(ge=1, le=MAX_SEARCH_PAGE)] = 20
    highlight: bool = True


class LogQuery(BaseModel):
    """log-sink ``GET /logs``."""

    since: str | None = Field(
        None, max_length=MAX_TIME_TEXT, description="from (inclusive): ISO-8601 or epoch ms"
    )
    until: str | None = Field(
        None, max_length=MAX_TIME_TEXT, description="to (exclusive): ISO-8601 or epoch ms"
    )
    service: str | None = Field(None, max_length=128)
    level: str | None = Field(None, max_length=32)
    trace_id: str | None = Field(
        None,
        pattern="^[0-9a-f]{32}$",
        description="only the events of this trace (W3C trace id: 32 lowercase hex digits)",
    )
    field: list[str] | None = Field(
        None, description="equality on any field, repeatable: path:value (e.g. status:500)"
    )
    limit: Limit = 100
    cursor: str | None = Field(None, max_length=2048, description="next_cursor of the previous page")


class NotificationQuery(BaseModel):
    """notifier ``GET /notifications/{user_id}``."""

    status: Literal["unread", "all"] = "all"
    limit: Annotated[int, Field(ge=1, le=MAX_NOTIFICATION_PAGE)] = 50
    offset: Annotated[int, Field(ge=0, le=MAX_NOTIFICATION_OFFSET)] = 0


# notifier ``POST /notifications/{user_id}/read`` (a docstring would change the OpenAPI schema)
class MarkRead(BaseModel):
    model_config = {"json_schema_extra": {"examples": [{"all": True}, {"ids": ["ntf_0123"]}]}}

    ids: (
        Annotated[list[Annotated[str, Field(min_length=1, max_length=MAX_ID)]], Field(max_length=1000)] | None
    ) = None
    all: bool = False


# notifier ``PUT /preferences/{user_id}``
class MutedChannels(BaseModel):
    muted_channels: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=MAX_ID)]], Field(max_length=10_000)
    ]


# ============================================================================================ answers
# issue-ingestor ``issue_ingestor.api.IssueOut``
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


# issue-ingestor ``IssuePage`` (COUNT_CAP = MAX_ISSUE_OFFSET)
class IssuePage(BaseModel):
    total: int = Field(description=f"matching issues, counted up to {MAX_ISSUE_OFFSET}")
    total_capped: bool = Field(
        False, description=f"true: more than {MAX_ISSUE_OFFSET} match (total is {MAX_ISSUE_OFFSET})"
    )
    limit: int
    offset: int
    items: list[IssueOut]


# issue-ingestor ``SessionOut``
class SessionOut(BaseModel):
    id: int
    issue: str
    seq: int
    status: Literal["open", "closed"]
    opened_at: str
    closed_at: str | None


# issue-ingestor ``DeletedOut``
class DeletedOut(BaseModel):
    deleted: str
    sessions_deleted: int


# search-indexer ``search_indexer.api.Message``
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


# search-indexer ``SearchHit``
class SearchHit(Message):
    score: float | None = Field(description="relevance (null when sorted by time)")
    highlights: list[str] = Field(description="content fragments with the matched words marked")


# search-indexer ``SearchPage``
class SearchPage(BaseModel):
    total: int
    offset: int
    limit: int
    hits: list[SearchHit]


# search-indexer ``RebuildConsumer``
class RebuildConsumer(BaseModel):
    state: str
    counts: Counts
    last_error: LastError | None


# search-indexer ``RebuildStatus``
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


# log-sink ``log_sink.api.WideEvent``
class WideEvent(BaseModel):
    """A stored wide event as it was sent: these three fields plus any context fields."""

    model_config = ConfigDict(extra="allow")

    event_id: str
    timestamp: str = Field(description="event time, ISO-8601 UTC")
    service: str


# log-sink ``LogPage``
class LogPage(BaseModel):
    items: list[WideEvent]
    next_cursor: str | None
    count: int


# notifier ``notifier.api.Notification``
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


# notifier ``NotificationPage``
class NotificationPage(BaseModel):
    user_id: str
    status: Literal["unread", "all"]
    items: list[Notification]
    total: int = Field(description="notifications matching status")
    unread: int
    limit: int
    offset: int


# notifier ``MarkReadResult``
class MarkReadResult(BaseModel):
    user_id: str
    updated: int
    unread: int


# notifier ``Preferences``
class Preferences(BaseModel):
    user_id: str
    muted_channels: list[str] = Field(description="no notification is stored for mentions in these channels")


#: notifier ``STREAM_RESPONSE``: the live stream in the OpenAPI document (Server-Sent Events, no JSON schema).
STREAM_RESPONSE: dict[str, Any] = {
    "description": "Server-Sent Events: `event: notification`, `data:` one Notification as JSON, `id:` "
    "the resume cursor; a `: connected` comment first, `: ping …` comments while idle",
    "content": {"text/event-stream": {"schema": {"type": "string"}}},
}
