"""Queries, forwarded to the service that owns the data (its answer is returned unchanged).

issue-ingestor: issues and chatbot sessions · search-indexer: message search · log-sink: wide events ·
notifier: notifications (list, mark read, live SSE stream, preferences). One handler per operation,
registered from :data:`ROUTES` on each of its paths (a seed path and its ``/api/v1`` twin share it); the
query contracts are the models of :mod:`gateway.api.query_models` (declared for the OpenAPI document and
validated by the owner too), the answers those of :mod:`consumer_runtime.answers` (the owner's own
classes); an owner that is down is a 503 naming it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any
from urllib.parse import quote

from consumer_runtime.answers import (
    NOTIFICATION_STREAM_RESPONSE,
    DeletedOut,
    IssueOut,
    IssuePage,
    LogPage,
    MarkReadResult,
    Message,
    Notification,
    NotificationPage,
    Preferences,
    RebuildStatus,
    SearchPage,
    SessionOut,
    WideEvent,
)
from fastapi import APIRouter, Body, Header, Path, Query, Request
from fastapi.responses import Response, StreamingResponse

from gateway.api.query_models import (
    MAX_ID,
    MAX_STREAM_CURSOR,
    IssueQuery,
    LogQuery,
    MarkRead,
    MutedChannels,
    NotificationQuery,
    SearchQuery,
)
from gateway.auth import Admin
from gateway.deps import UpstreamsDep
from gateway.errors import error_responses

router = APIRouter()

ISSUES = "issue-ingestor"
SEARCH = "search-indexer"
LOGS = "log-sink"
NOTIFIER = "notifier"

IssueId = Annotated[str, Path(min_length=1, max_length=191, examples=["PRESS_001_20250806_001"])]
Id = Annotated[str, Path(min_length=1, max_length=MAX_ID)]
READ = error_responses(404, 422, 502, 503)


def seg(value: str) -> str:
    """One path segment for the upstream URL (ids may contain any character)."""
    return quote(value, safe="")


# ============================================================================================ handlers
async def list_issues(
    upstreams: UpstreamsDep, request: Request, _q: Annotated[IssueQuery, Query()]
) -> Response:
    return await upstreams.forward(ISSUES, "GET", "/issues", request)


async def get_issue(upstreams: UpstreamsDep, issue_id: IssueId) -> Response:
    return await upstreams.forward(ISSUES, "GET", f"/issues/{seg(issue_id)}")


async def delete_issue(upstreams: UpstreamsDep, issue_id: IssueId) -> Response:
    return await upstreams.forward(ISSUES, "DELETE", f"/issues/{seg(issue_id)}")


async def list_sessions(upstreams: UpstreamsDep, issue_id: IssueId) -> Response:
    return await upstreams.forward(ISSUES, "GET", f"/issues/{seg(issue_id)}/sessions")


async def search(upstreams: UpstreamsDep, request: Request, _q: Annotated[SearchQuery, Query()]) -> Response:
    return await upstreams.forward(SEARCH, "GET", "/messages/search", request)


async def get_message(upstreams: UpstreamsDep, message_id: Id) -> Response:
    return await upstreams.forward(SEARCH, "GET", f"/messages/{seg(message_id)}")


async def start_rebuild(upstreams: UpstreamsDep) -> Response:
    # the caller's credentials stay at the gateway: the service gets the gateway's internal token
    return await upstreams.forward(SEARCH, "POST", "/admin/rebuild")


async def rebuild_status(upstreams: UpstreamsDep) -> Response:
    return await upstreams.forward(SEARCH, "GET", "/admin/rebuild")


async def query_logs(upstreams: UpstreamsDep, request: Request, _q: Annotated[LogQuery, Query()]) -> Response:
    return await upstreams.forward(LOGS, "GET", "/logs", request)


async def get_log(upstreams: UpstreamsDep, event_id: Id) -> Response:
    return await upstreams.forward(LOGS, "GET", f"/logs/{seg(event_id)}")


async def list_notifications(
    upstreams: UpstreamsDep, request: Request, user_id: Id, _q: Annotated[NotificationQuery, Query()]
) -> Response:
    return await upstreams.forward(NOTIFIER, "GET", f"/notifications/{seg(user_id)}", request)


async def mark_read(upstreams: UpstreamsDep, user_id: Id, body: Annotated[MarkRead, Body()]) -> Response:
    path = f"/notifications/{seg(user_id)}/read"
    return await upstreams.forward(NOTIFIER, "POST", path, json=body.model_dump(exclude_none=True))


async def mark_one_read(upstreams: UpstreamsDep, user_id: Id, notification_id: Id) -> Response:
    path = f"/notifications/{seg(user_id)}/{seg(notification_id)}/read"
    return await upstreams.forward(NOTIFIER, "POST", path)


async def stream(
    upstreams: UpstreamsDep,
    request: Request,
    user_id: Id,
    last_event_id: Annotated[str | None, Header(max_length=MAX_STREAM_CURSOR)] = None,
    after: Annotated[
        str | None, Query(max_length=MAX_STREAM_CURSOR, description="same as Last-Event-ID")
    ] = None,
) -> StreamingResponse:
    headers = {"last-event-id": last_event_id} if last_event_id else None
    params = {"after": after} if after else None
    return await upstreams.stream(NOTIFIER, f"/notifications/{seg(user_id)}/stream", params, request, headers)


async def get_preferences(upstreams: UpstreamsDep, user_id: Id) -> Response:
    return await upstreams.forward(NOTIFIER, "GET", f"/preferences/{seg(user_id)}")


async def put_preferences(upstreams: UpstreamsDep, user_id: Id, body: MutedChannels) -> Response:
    return await upstreams.forward(NOTIFIER, "PUT", f"/preferences/{seg(user_id)}", json=body.model_dump())


# ============================================================================================ the table
Handler = Callable[..., Awaitable[Response]]
SEED = "seed-compatible"

#: Every path of every query operation: (method, path, handler, summary). A seed path (outside /api/v1,
#: spelt as the seed documents use it) shares the handler, and so the documented parameters, of its twin.
ROUTES: tuple[tuple[str, str, Handler, str], ...] = (
    ("GET", "/api/kafka/issues", list_issues, "ChatbotIssue list (seed 000): ?limit=&offset="),
    ("GET", "/api/kafka/issues/{issue_id}", get_issue, "One ChatbotIssue (seed 000)"),
    (
        "DELETE",
        "/api/kafka/issues/{issue_id}",
        delete_issue,
        "Delete a ChatbotIssue and its sessions (seed 000)",
    ),
    ("GET", "/api/v1/issues", list_issues, "Issues, newest event first, with filters"),
    ("GET", "/api/v1/issues/{issue_id}", get_issue, "One issue"),
    ("DELETE", "/api/v1/issues/{issue_id}", delete_issue, "Delete an issue and its sessions"),
    (
        "GET",
        "/api/v1/issues/{issue_id}/sessions",
        list_sessions,
        "Chatbot sessions of an issue (opened by its first event, closed by isSolved=true)",
    ),
    ("GET", "/messages/search", search, "Full-text search of messages (seed 003): ?q="),
    ("GET", "/api/v1/search/messages", search, "Search messages with filters"),
    ("GET", "/api/v1/messages/{message_id}", get_message, "One indexed message"),
    (
        "POST",
        "/api/v1/search/rebuild",
        start_rebuild,
        "Rebuild the search index from Kafka into a new index, then switch the alias (admin token)",
    ),
    ("GET", "/api/v1/search/rebuild", rebuild_status, "Progress of the current/last rebuild"),
    ("GET", "/api/v1/logs", query_logs, "Wide log events, newest first"),
    ("GET", "/api/v1/logs/{event_id}", get_log, "One wide event by event_id"),
    (
        "GET",
        "/api/v1/notifications/{user_id}",
        list_notifications,
        "A user's notifications (status=unread|all)",
    ),
    (
        "POST",
        "/api/v1/notifications/{user_id}/read",
        mark_read,
        "Mark notifications read: the given ids, or all",
    ),
    (
        "POST",
        "/api/v1/notifications/{user_id}/{notification_id}/read",
        mark_one_read,
        "Mark one notification read (idempotent)",
    ),
    (
        "GET",
        "/api/v1/notifications/{user_id}/stream",
        stream,
        "Live notifications (Server-Sent Events, proxied); resume with Last-Event-ID",
    ),
    (
        "GET",
        "/api/v1/notifications/{user_id}/preferences",
        get_preferences,
        "A user's notification preferences (muted channels)",
    ),
    (
        "PUT",
        "/api/v1/notifications/{user_id}/preferences",
        put_preferences,
        "Replace a user's muted channels",
    ),
)

#: The owner's answer of each operation (documentation only: the answer is forwarded unchanged, and
#: FastAPI does not re-validate a ``Response`` a handler returns). The stream is documented in ``OPTIONS``.
ANSWERS: dict[Handler, Any] = {
    list_issues: IssuePage,
    get_issue: IssueOut,
    delete_issue: DeletedOut,
    list_sessions: list[SessionOut],
    search: SearchPage,
    get_message: Message,
    start_rebuild: RebuildStatus,
    rebuild_status: RebuildStatus,
    query_logs: LogPage,
    get_log: WideEvent,
    list_notifications: NotificationPage,
    mark_read: MarkReadResult,
    mark_one_read: Notification,
    get_preferences: Preferences,
    put_preferences: Preferences,
}

#: Route options of an operation other than a plain read (``READ`` errors documented).
OPTIONS: dict[Handler, dict[str, Any]] = {
    delete_issue: {"responses": error_responses(401, 403, 404, 503)},  # issues:write (gateway.policy)
    start_rebuild: {
        "status_code": 202,
        "dependencies": [Admin],
        "responses": error_responses(401, 403, 409, 503),
    },
    rebuild_status: {},
    stream: {
        "response_class": StreamingResponse,
        "responses": {200: NOTIFICATION_STREAM_RESPONSE, **error_responses(422, 503)},
    },
}

for _method, _path, _handler, _summary in ROUTES:
    _seed = not _path.startswith("/api/v1/")
    router.add_api_route(
        _path,
        _handler,
        methods=[_method],
        name=f"seed_{_handler.__name__}" if _seed else _handler.__name__,
        tags=[SEED if _seed else "queries"],
        summary=_summary,
        response_model=ANSWERS.get(_handler),
        **OPTIONS.get(_handler, {"responses": READ}),
    )


__all__: list[Any] = ["router"]
