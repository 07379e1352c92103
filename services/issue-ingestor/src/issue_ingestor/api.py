"""The ingestor's own HTTP API: issues and their chatbot sessions, plus the seed-compatible aliases.

``/issues...`` is the service's API; ``/api/kafka/...`` repeats it (and the consumer control) under the
paths of the seed documents, so scripts written for the seed work against the service directly too. The
gateway exposes these at the seed paths.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from consumer_runtime import ConsumerRunner, ConsumerStatus, ControlAck
from consumer_runtime.answers import DeletedOut, IssueOut, IssuePage, SessionOut
from consumer_runtime.http import Liveness
from consumer_runtime.service import from_state
from fastapi import APIRouter, Depends, HTTPException, Query
from platform_events import ModeType, ProcessType, parse_timestamp

from issue_ingestor.config import SERVICE_NAME
from issue_ingestor.store import COUNT_CAP, IssueStore

MAX_PAGE = 1000

StoreDep = Annotated[IssueStore, Depends(from_state("store"))]
RunnerDep = Annotated[ConsumerRunner, Depends(from_state("runner"))]


def _time(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_timestamp(value).replace(tzinfo=None)
    except ValueError as exc:
        raise HTTPException(422, f"{name}: {exc}") from None


def issues_router() -> APIRouter:
    router = APIRouter(tags=["issues"])

    @router.get("/issues", response_model=IssuePage, summary="List issues, newest event first")
    async def list_issues(
        store: StoreDep,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
        offset: Annotated[
            int,
            Query(ge=0, le=COUNT_CAP, description=f"rows to skip (at most {COUNT_CAP}: narrow with from/to)"),
        ] = 0,
        process_type: Annotated[ProcessType | None, Query(alias="processType")] = None,
        mode_type: Annotated[ModeType | None, Query(alias="modeType")] = None,
        is_solved: Annotated[bool | None, Query(alias="isSolved")] = None,
        since: Annotated[
            str | None, Query(alias="from", description="event time >= this (ISO-8601; naive = UTC)")
        ] = None,
        until: Annotated[str | None, Query(alias="to", description="event time < this (ISO-8601)")] = None,
    ) -> dict[str, Any]:
        total, items, capped = await store.list_issues(
            limit=limit,
            offset=offset,
            process_type=process_type.value if process_type else None,
            mode_type=mode_type.value if mode_type else None,
            is_solved=is_solved,
            since=_time(since, "from"),
            until=_time(until, "to"),
        )
        return {"total": total, "total_capped": capped, "limit": limit, "offset": offset, "items": items}

    @router.get("/issues/{issue_id}", response_model=IssueOut, summary="One issue")
    async def get_issue(issue_id: str, store: StoreDep) -> dict[str, Any]:
        found = await store.get_issue(issue_id)
        if found is None:
            raise HTTPException(404, f"issue {issue_id!r} not found")
        return found

    @router.delete(
        "/issues/{issue_id}", response_model=DeletedOut, summary="Delete an issue and its sessions"
    )
    async def delete_issue(issue_id: str, store: StoreDep) -> dict[str, Any]:
        sessions = await store.delete_issue(issue_id)
        if sessions is None:
            raise HTTPException(404, f"issue {issue_id!r} not found")
        return {"deleted": issue_id, "sessions_deleted": sessions}

    @router.get(
        "/issues/{issue_id}/sessions", response_model=list[SessionOut], summary="Chatbot sessions of an issue"
    )
    async def list_sessions(issue_id: str, store: StoreDep) -> list[dict[str, Any]]:
        if await store.get_issue(issue_id) is None:
            raise HTTPException(404, f"issue {issue_id!r} not found")
        return await store.list_sessions(issue_id)

    return router


def seed_router() -> APIRouter:
    """``/api/kafka/...``: the paths of the seed documents (consumer status/control + the issue API)."""
    router = APIRouter(prefix="/api/kafka", tags=["seed-compatible"])
    router.include_router(issues_router())

    @router.get("/status", summary="Consumer status (same as /consumer/status)")
    async def status(runner: RunnerDep) -> ConsumerStatus:
        return runner.status()

    @router.post(
        "/{action}",
        summary="Start, stop or restart the issue consumer; answers at once with the state it leads to",
    )
    async def control(action: Literal["start", "stop", "restart"], runner: RunnerDep) -> ControlAck:
        if not runner.settings.kafka_enabled:
            raise HTTPException(409, "KAFKA_ENABLED=false: the consumer is disabled")
        return runner.request(action)

    return router


def health_router() -> APIRouter:
    """``/health``: the seed documents' liveness path (the same answer as ``/healthz``)."""
    router = APIRouter(tags=["operations"])

    @router.get(
        "/health",
        summary="Seed-compatible liveness (same as /healthz)",
        response_model=Liveness,
        response_model_exclude_none=True,
    )
    async def health() -> dict[str, str]:
        return {"status": "ok", "service": SERVICE_NAME}

    return router
