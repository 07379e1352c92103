"""Queries, forwarded to the service that owns the data (its answer is returned unchanged).

issue-ingestor: issues and chatbot sessions · search-indexer: message search · log-sink: wide events ·
notifier: notifications (list, mark read, live SSE stream, preferences). One handler per operation,
registered from :data:`ROUTES` on each of its paths (a seed path and its ``/api/v1`` twin share it); the
query contracts are the models of :mod:`gateway.api.query_models` (declared for the OpenAPI document and
validated by the owner too); an owner that is down is a 503 naming it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Body, Header, Path, Query, Request
from fastapi.responses import Response, StreamingResponse

from gateway.api.query_models import (
    MAX_ID,
    IssueQuery,
    LogQuery,
    MarkRead,
    MutedChannels,
    NotificationQuery,
    SearchQuery,
)
from gateway.auth import Admin, AppKey
from gateway.deps import UpstreamsDep
from gateway.errors import error_responses

router = APIRouter(dependencies=[AppKey])

ISSUES = "issue-ingestor"
SEARCH = "search-indexer"
LOGS = "log-sink"
NOTIFIER = "notifier"

IssueId = Annotated[str, Path(min_length=1, max_length=191, examples=["PRESS_001_20250806_001"])]
Id = Annotated[str, Path(min_length=1, max_length=MAX_ID)]
READ = error_responses(404, 422, 502, 503)
WRITE = {"dependencies": [Admin], "responses": error_responses(401, 403, 404, 503)}


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


async def start_rebuild(
    upstreams: UpstreamsDep, authorization: Annotated[str | None, Header(include_in_schema=False)] = None
) -> Response:
    headers = {"authorization": authorization} if authorization else None
    return await upstreams.forward(SEARCH, "POST", "/admin/rebuild", headers=headers)


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
    last_event_id: Annotated[str | None, Header(max_length=MAX_ID)] = None,
    after: Annotated[str | None, Query(max_length=MAX_ID, description="same as Last-Event-ID")] = None,
) -> StreamingResponse:
    headers = {"last-event-id": last_event_id} if last_event_id else None
    params = {"after": after} if after else None
    return await upstreams.stream(NOTIFIER, f"/notifications/{seg(user_id)}/stream", params, request, headers)


async def get_preferences(upstreams: UpstreamsDep, user_id: Id) -> Response:
    return await upstreams.forward(NOTIFIER, "GET", f"/preferences/{seg(user_id)}")


async def put_preferences(upstreams: UpstreamsDep, user_id: Id, body: MutedChannels) -> Response:
    return await upstreams.forward(NOTIFIER, "PUT", f"/preferences/{seg(user_id)}", json=body.model_dump())


# ============================================================================================ the table
@dataclass(frozen=True, slots=True)
class Alias:
    """One path of an operation: its route name (the operationId's stem), tag and summary."""

    name: str
    path: str
    summary: str
    tag: str = "queries"


def seed(name: str, path: str, summary: str) -> Alias:
    """A path of the seed documents, kept as they use it."""
    return Alias(name, path, summary, "seed-compatible")


@dataclass(frozen=True, slots=True)
class Proxy:
    method: str
    handler: Callable[..., Awaitable[Response]]
    aliases: tuple[Alias, ...]
    options: dict[str, Any] = field(default_factory=lambda: {"responses": READ})


ROUTES: tuple[Proxy, ...] = (
    Proxy(
        "GET",
        list_issues,
        (
            seed("seed_list_issues", "/api/kafka/issues", "ChatbotIssue list (seed 000): ?limit=&offset="),
            Alias("list_issues", "/api/v1/issues", "Issues, newest event first, with filters"),
        ),
    ),
    Proxy(
        "GET",
        get_issue,
        (
            seed("seed_get_issue", "/api/kafka/issues/{issue_id}", "One ChatbotIssue (seed 000)"),
            Alias("get_issue", "/api/v1/issues/{issue_id}", "One issue"),
        ),
    ),
    Proxy(
        "DELETE",
        delete_issue,
        (
            seed(
                "seed_delete_issue",
                "/api/kafka/issues/{issue_id}",
                "Delete a ChatbotIssue and its sessions (seed 000; admin token)",
            ),
            Alias(
                "delete_issue", "/api/v1/issues/{issue_id}", "Delete an issue and its sessions (admin token)"
            ),
        ),
        WRITE,
    ),
    Proxy(
        "GET",
        list_sessions,
        (
            Alias(
                "list_sessions",
                "/api/v1/issues/{issue_id}/sessions",
                "Chatbot sessions of an issue (opened by its first event, closed by isSolved=true)",
            ),
        ),
    ),
    Proxy(
        "GET",
        search,
        (
            seed("seed_search", "/messages/search", "Full-text search of messages (seed 003): ?q="),
            Alias("search", "/api/v1/search/messages", "Search messages with filters"),
        ),
    ),
    Proxy(
        "GET", get_message, (Alias("get_message", "/api/v1/messages/{message_id}", "One indexed message"),)
    ),
    Proxy(
        "POST",
        start_rebuild,
        (
            Alias(
                "start_rebuild",
                "/api/v1/search/rebuild",
                "Rebuild the search index from Kafka into a new index, then switch the alias (admin token)",
            ),
        ),
        {"status_code": 202, "dependencies": [Admin], "responses": error_responses(401, 403, 409, 503)},
    ),
    Proxy(
        "GET",
        rebuild_status,
        (Alias("rebuild_status", "/api/v1/search/rebuild", "Progress of the current/last rebuild"),),
        {},
    ),
    Proxy("GET", query_logs, (Alias("query_logs", "/api/v1/logs", "Wide log events, newest first"),)),
    Proxy("GET", get_log, (Alias("get_log", "/api/v1/logs/{event_id}", "One wide event by event_id"),)),
    Proxy(
        "GET",
        list_notifications,
        (
            Alias(
                "list_notifications",
                "/api/v1/notifications/{user_id}",
                "A user's notifications (status=unread|all)",
            ),
        ),
    ),
    Proxy(
        "POST",
        mark_read,
        (
            Alias(
                "mark_read",
                "/api/v1/notifications/{user_id}/read",
                "Mark notifications read: the given ids, or all",
            ),
        ),
    ),
    Proxy(
        "POST",
        mark_one_read,
        (
            Alias(
                "mark_one_read",
                "/api/v1/notifications/{user_id}/{notification_id}/read",
                "Mark one notification read (idempotent)",
            ),
        ),
    ),
    Proxy(
        "GET",
        stream,
        (
            Alias(
                "stream",
                "/api/v1/notifications/{user_id}/stream",
                "Live notifications (Server-Sent Events, proxied); resume with Last-Event-ID",
            ),
        ),
        {
            "response_class": StreamingResponse,
            "responses": {200: {"content": {"text/event-stream": {}}}, **error_responses(422, 503)},
        },
    ),
    Proxy(
        "GET",
        get_preferences,
        (
            Alias(
                "get_preferences",
                "/api/v1/notifications/{user_id}/preferences",
                "A user's notification preferences (muted channels)",
            ),
        ),
    ),
    Proxy(
        "PUT",
        put_preferences,
        (
            Alias(
                "put_preferences",
                "/api/v1/notifications/{user_id}/preferences",
                "Replace a user's muted channels",
            ),
        ),
    ),
)

for _proxy in ROUTES:
    for _alias in _proxy.aliases:
        router.add_api_route(
            _alias.path,
            _proxy.handler,
            methods=[_proxy.method],
            name=_alias.name,
            tags=[_alias.tag],
            summary=_alias.summary,
            **_proxy.options,
        )


__all__: list[Any] = ["router"]
