"""The log-sink's own HTTP API: query the stored wide events."""

from __future__ import annotations

from typing import Annotated, Any

from consumer_runtime.answers import LogPage, WideEvent
from fastapi import APIRouter, HTTPException, Query

from log_sink.handlers import InvalidQuery, LogQuery, decode_cursor, parse_field_filters, parse_time
from log_sink.store import WideEventStore


def router(store: WideEventStore, *, max_limit: int = 1000) -> APIRouter:
    api = APIRouter(prefix="/logs", tags=["logs"])

    @api.get("", summary="Query wide events, newest first", response_model=LogPage)
    async def query_logs(
        since: Annotated[str | None, Query(description="from (inclusive): ISO-8601 or epoch ms")] = None,
        until: Annotated[str | None, Query(description="to (exclusive): ISO-8601 or epoch ms")] = None,
        service: Annotated[str | None, Query(max_length=128)] = None,
        level: Annotated[str | None, Query(max_length=32)] = None,
        trace_id: Annotated[
            str | None,
            Query(
                pattern="^[0-9a-f]{32}$",
                description="only the events of this trace (W3C trace id: 32 lowercase hex digits)",
            ),
        ] = None,
        field: Annotated[
            list[str] | None,
            Query(description="equality on any field, repeatable: path:value (e.g. status:500, user.id:u1)"),
        ] = None,
        limit: Annotated[int, Query(ge=1)] = 100,
        cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
    ) -> LogPage:
        try:
            if limit > max_limit:
                raise InvalidQuery(f"limit: at most {max_limit}")
            query = LogQuery(
                since=parse_time("since", since),
                until=parse_time("until", until),
                service=service,
                level=level,
                trace_id=trace_id,
                fields=parse_field_filters(field or []),
                limit=limit,
                cursor=decode_cursor(cursor) if cursor else None,
            )
        except InvalidQuery as exc:
            raise HTTPException(422, str(exc)) from None
        items, next_cursor = await store.find(query)
        return LogPage(items=items, next_cursor=next_cursor, count=len(items))

    @api.get("/{event_id}", summary="One wide event by event_id", response_model=WideEvent)
    async def get_log(event_id: str) -> dict[str, Any]:
        doc = await store.get(event_id)
        if doc is None:
            raise HTTPException(404, f"no wide event {event_id!r}")
        return doc

    return api
