"""The query contracts of the services the gateway forwards to, declared once for the OpenAPI document.

The owning service validates every query again (its answer is returned unchanged); the gateway declares
them so its OpenAPI documents every parameter and refuses an out-of-range one before a round trip. The
services' own packages are not importable here (the gateway's image installs only its own slice of the
lock, and importing them would pull their datastore drivers), so each bound below names the service
constant it mirrors — one place per bound in the gateway. The answers are not declared here: the services
and the gateway share them (:mod:`consumer_runtime.answers`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from consumer_runtime.answers import ISSUE_COUNT_CAP
from platform_events import ModeType, ProcessType
from pydantic import BaseModel, Field

#: issue-ingestor ``MAX_PAGE``: most issues (and log events) in one page.
MAX_PAGE = 1000
#: issue-ingestor's deepest page offset (a huge OFFSET breaks its SQL; no one pages that far).
MAX_ISSUE_OFFSET = ISSUE_COUNT_CAP  # the issue-ingestor counts and pages up to its COUNT_CAP
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
