"""Queries, forwarded to the service that owns the data (its answer is returned unchanged).

issue-ingestor: issues and chatbot sessions · search-indexer: message search · log-sink: wide events ·
notifier: notifications (list, mark read, live SSE stream, preferences). Parameters are declared here for
the OpenAPI document and validated by the owner too; an owner that is down is a 503 naming it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import quote

from fastapi import APIRouter, Body, Header, Path, Query, Request
from fastapi.responses import Response, StreamingResponse
from platform_events import ModeType, ProcessType
from pydantic import BaseModel, Field

from gateway.auth import Admin, AppKey
from gateway.deps import UpstreamsDep
from gateway.errors import error_responses

router = APIRouter(dependencies=[AppKey])

ISSUES = "issue-ingestor"
SEARCH = "search-indexer"
LOGS = "log-sink"
NOTIFIER = "notifier"

IssueId = Annotated[str, Path(min_length=1, max_length=191, examples=["PRESS_001_20250806_001"])]
Id = Annotated[str, Path(min_length=1, max_length=128)]
Limit = Annotated[int, Query(ge=1, le=1000)]
READ = error_responses(404, 422, 502, 503)
#: Deepest page offset forwarded (a huge OFFSET breaks the owner's SQL; no one pages that far).
MAX_OFFSET = 10_000_000


def seg(value: str) -> str:
    """One path segment for the upstream URL (ids may contain any character)."""
    return quote(value, safe="")


# ============================================================================================ issues
async def _issues(
    upstreams: UpstreamsDep,
    request: Request,
) -> Response:
    return await upstreams.forward(ISSUES, "GET", "/issues", request)


@router.get(
    "/api/kafka/issues",
    tags=["seed-compatible"],
    summary="ChatbotIssue list (seed 000): ?limit=&offset=",
    responses=READ,
)
async def seed_list_issues(
    upstreams: UpstreamsDep,
    request: Request,
    limit: Limit = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> Response:
    return await _issues(upstreams, request)


@router.get(
    "/api/kafka/issues/{issue_id}",
    tags=["seed-compatible"],
    summary="One ChatbotIssue (seed 000)",
    responses=READ,
)
async def seed_get_issue(upstreams: UpstreamsDep, issue_id: IssueId) -> Response:
    return await upstreams.forward(ISSUES, "GET", f"/issues/{seg(issue_id)}")


@router.delete(
    "/api/kafka/issues/{issue_id}",
    tags=["seed-compatible"],
    summary="Delete a ChatbotIssue and its sessions (seed 000; admin token)",
    dependencies=[Admin],
    responses=error_responses(401, 403, 404, 503),
)
async def seed_delete_issue(upstreams: UpstreamsDep, issue_id: IssueId) -> Response:
    return await upstreams.forward(ISSUES, "DELETE", f"/issues/{seg(issue_id)}")


@router.get(
    "/api/v1/issues",
    tags=["queries"],
    summary="Issues, newest event first, with filters",
    responses=READ,
)
async def list_issues(
    upstreams: UpstreamsDep,
    request: Request,
    limit: Limit = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    process_type: Annotated[ProcessType | None, Query(alias="processType")] = None,
    mode_type: Annotated[ModeType | None, Query(alias="modeType")] = None,
    is_solved: Annotated[bool | None, Query(alias="isSolved")] = None,
    since: Annotated[
        str | None, Query(alias="from", max_length=64, description="event time ≥ (ISO-8601)")
    ] = None,
    until: Annotated[
        str | None, Query(alias="to", max_length=64, description="event time < (ISO-8601)")
    ] = None,
) -> Response:
    return await _issues(upstreams, request)


@router.get("/api/v1/issues/{issue_id}", tags=["queries"], summary="One issue", responses=READ)
async def get_issue(upstreams: UpstreamsDep, issue_id: IssueId) -> Response:
    return await upstreams.forward(ISSUES, "GET", f"/issues/{seg(issue_id)}")


@router.delete(
    "/api/v1/issues/{issue_id}",
    tags=["queries"],
    summary="Delete an issue and its sessions (admin token)",
    dependencies=[Admin],
    responses=error_responses(401, 403, 404, 503),
)
async def delete_issue(upstreams: UpstreamsDep, issue_id: IssueId) -> Response:
    return await upstreams.forward(ISSUES, "DELETE", f"/issues/{seg(issue_id)}")


@router.get(
    "/api/v1/issues/{issue_id}/sessions",
    tags=["queries"],
    summary="Chatbot sessions of an issue (opened by its first event, closed by isSolved=true)",
    responses=READ,
)
async def list_sessions(upstreams: UpstreamsDep, issue_id: IssueId) -> Response:
    return await upstreams.forward(ISSUES, "GET", f"/issues/{seg(issue_id)}/sessions")


# ============================================================================================ search
async def _search(
    upstreams: UpstreamsDep,
    request: Request,
) -> Response:
    return await upstreams.forward(SEARCH, "GET", "/messages/search", request)


SearchQ = Annotated[
    str | None, Query(max_length=1000, description="Words matched in content", examples=["배포"])
]


@router.get(
    "/messages/search",
    tags=["seed-compatible"],
    summary="Full-text search of messages (seed 003): ?q=",
    responses=READ,
)
async def seed_search(upstreams: UpstreamsDep, request: Request, q: SearchQ = None) -> Response:
    return await _search(upstreams, request)


@router.get(
    "/api/v1/search/messages", tags=["queries"], summary="Search messages with filters", responses=READ
)
async def search(
    upstreams: UpstreamsDep,
    request: Request,
    q: SearchQ = None,
    channel_id: Annotated[str | None, Query(max_length=128)] = None,
    author_id: Annotated[str | None, Query(max_length=128)] = None,
    since: Annotated[datetime | None, Query(alias="from", description="created at or after")] = None,
    until: Annotated[datetime | None, Query(alias="to", description="created at or before")] = None,
    sort: Literal["relevance", "newest", "oldest"] | None = None,
    offset: Annotated[int, Query(ge=0, le=10_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    highlight: bool = True,
) -> Response:
    return await _search(upstreams, request)


@router.get("/api/v1/messages/{message_id}", tags=["queries"], summary="One indexed message", responses=READ)
async def get_message(upstreams: UpstreamsDep, message_id: Id) -> Response:
    return await upstreams.forward(SEARCH, "GET", f"/messages/{seg(message_id)}")


@router.post(
    "/api/v1/search/rebuild",
    tags=["queries"],
    status_code=202,
    summary="Rebuild the search index from Kafka into a new index, then switch the alias (admin token)",
    dependencies=[Admin],
    responses=error_responses(401, 403, 409, 503),
)
async def start_rebuild(
    upstreams: UpstreamsDep, authorization: Annotated[str | None, Header(include_in_schema=False)] = None
) -> Response:
    headers = {"authorization": authorization} if authorization else None
    return await upstreams.forward(SEARCH, "POST", "/admin/rebuild", headers=headers)


@router.get("/api/v1/search/rebuild", tags=["queries"], summary="Progress of the current/last rebuild")
async def rebuild_status(upstreams: UpstreamsDep) -> Response:
    return await upstreams.forward(SEARCH, "GET", "/admin/rebuild")


# ============================================================================================ logs
@router.get("/api/v1/logs", tags=["queries"], summary="Wide log events, newest first", responses=READ)
async def query_logs(
    upstreams: UpstreamsDep,
    request: Request,
    since: Annotated[
        str | None, Query(max_length=64, description="from (inclusive): ISO-8601 or epoch ms")
    ] = None,
    until: Annotated[
        str | None, Query(max_length=64, description="to (exclusive): ISO-8601 or epoch ms")
    ] = None,
    service: Annotated[str | None, Query(max_length=128)] = None,
    level: Annotated[str | None, Query(max_length=32)] = None,
    field: Annotated[
        list[str] | None, Query(description="equality on any field, repeatable: path:value (e.g. status:500)")
    ] = None,
    limit: Limit = 100,
    cursor: Annotated[
        str | None, Query(max_length=2048, description="next_cursor of the previous page")
    ] = None,
) -> Response:
    return await upstreams.forward(LOGS, "GET", "/logs", request)


@router.get("/api/v1/logs/{event_id}", tags=["queries"], summary="One wide event by event_id", responses=READ)
async def get_log(upstreams: UpstreamsDep, event_id: Id) -> Response:
    return await upstreams.forward(LOGS, "GET", f"/logs/{seg(event_id)}")


# ============================================================================================ notifications
class MarkRead(BaseModel):
    model_config = {"json_schema_extra": {"examples": [{"all": True}, {"ids": ["ntf_0123"]}]}}

    ids: (
        Annotated[list[Annotated[str, Field(min_length=1, max_length=128)]], Field(max_length=1000)] | None
    ) = None
    all: bool = False


class MutedChannels(BaseModel):
    muted_channels: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=128)]], Field(max_length=10_000)
    ]


@router.get(
    "/api/v1/notifications/{user_id}",
    tags=["queries"],
    summary="A user's notifications (status=unread|all)",
    responses=READ,
)
async def list_notifications(
    upstreams: UpstreamsDep,
    request: Request,
    user_id: Id,
    status: Literal["unread", "all"] = "all",
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> Response:
    return await upstreams.forward(NOTIFIER, "GET", f"/notifications/{seg(user_id)}", request)


@router.post(
    "/api/v1/notifications/{user_id}/read",
    tags=["queries"],
    summary="Mark notifications read: the given ids, or all",
    responses=READ,
)
async def mark_read(upstreams: UpstreamsDep, user_id: Id, body: Annotated[MarkRead, Body()]) -> Response:
    return await upstreams.forward(
        NOTIFIER, "POST", f"/notifications/{seg(user_id)}/read", json=body.model_dump(exclude_none=True)
    )


@router.post(
    "/api/v1/notifications/{user_id}/{notification_id}/read",
    tags=["queries"],
    summary="Mark one notification read (idempotent)",
    responses=READ,
)
async def mark_one_read(upstreams: UpstreamsDep, user_id: Id, notification_id: Id) -> Response:
    return await upstreams.forward(
        NOTIFIER, "POST", f"/notifications/{seg(user_id)}/{seg(notification_id)}/read"
    )


@router.get(
    "/api/v1/notifications/{user_id}/stream",
    tags=["queries"],
    summary="Live notifications (Server-Sent Events, proxied); resume with Last-Event-ID",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}, **error_responses(422, 503)},
)
async def stream(
    upstreams: UpstreamsDep,
    request: Request,
    user_id: Id,
    last_event_id: Annotated[str | None, Header(max_length=128)] = None,
    after: Annotated[str | None, Query(max_length=128, description="same as Last-Event-ID")] = None,
) -> StreamingResponse:
    headers = {"last-event-id": last_event_id} if last_event_id else None
    params = {"after": after} if after else None
    return await upstreams.stream(NOTIFIER, f"/notifications/{seg(user_id)}/stream", params, request, headers)


@router.get(
    "/api/v1/notifications/{user_id}/preferences",
    tags=["queries"],
    summary="A user's notification preferences (muted channels)",
    responses=READ,
)
async def get_preferences(upstreams: UpstreamsDep, user_id: Id) -> Response:
    return await upstreams.forward(NOTIFIER, "GET", f"/preferences/{seg(user_id)}")


@router.put(
    "/api/v1/notifications/{user_id}/preferences",
    tags=["queries"],
    summary="Replace a user's muted channels",
    responses=READ,
)
async def put_preferences(upstreams: UpstreamsDep, user_id: Id, body: MutedChannels) -> Response:
    return await upstreams.forward(NOTIFIER, "PUT", f"/preferences/{seg(user_id)}", json=body.model_dump())


__all__: list[Any] = ["router"]
