"""The service's own HTTP API: message search, get by id, rebuild start/status, retired indexes.

``/admin/*`` (rebuild, indexes) is for the gateway only: like every state-changing request to a service it
needs the internal token (``INTERNAL_TOKEN``; checked by the runtime before any route, see
``consumer_runtime.auth``), and is refused (403) while none is configured.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from consumer_runtime.answers import Message, RebuildStatus, SearchPage
from consumer_runtime.service import from_state
from fastapi import APIRouter, Depends, HTTPException, Query
from platform_events import MAX_ID_CHARS
from pydantic import BaseModel

from search_indexer import handlers as h
from search_indexer.rebuild import RebuildBusyError, RebuildError, RebuildManager
from search_indexer.store import MessageStore

StoreDep = Annotated[MessageStore, Depends(from_state("store"))]
RebuildDep = Annotated[RebuildManager, Depends(from_state("rebuild"))]


class RetiredIndex(BaseModel):
    index: str
    retired_at: float
    expires_at: float


class Indices(BaseModel):
    alias: str
    current: list[str]
    retired: list[RetiredIndex]


class DeletedIndex(BaseModel):
    deleted: str


router = APIRouter()


@router.get(
    "/messages/search",
    tags=["search"],
    summary="Full-text search on message content",
    response_model=SearchPage,
)
async def search_messages(
    store: StoreDep,
    q: Annotated[str | None, Query(max_length=1000, description="words matched in content")] = None,
    channel: Annotated[str | None, Query(max_length=MAX_ID_CHARS, alias="channel_id")] = None,
    author: Annotated[str | None, Query(max_length=MAX_ID_CHARS, alias="author_id")] = None,
    since: Annotated[
        datetime | None, Query(alias="from", description="created at or after (ISO-8601)")
    ] = None,
    until: Annotated[
        datetime | None, Query(alias="to", description="created at or before (ISO-8601)")
    ] = None,
    sort: h.SortOrder = "relevance",
    offset: Annotated[int, Query(ge=0, le=h.MAX_RESULT_WINDOW)] = 0,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    highlight: bool = True,
) -> dict[str, Any]:
    if offset + limit > h.MAX_RESULT_WINDOW:
        raise HTTPException(422, f"offset + limit must not exceed {h.MAX_RESULT_WINDOW}")
    params = h.SearchParams(
        q=q,
        channel=channel,
        author=author,
        since=since,
        until=until,
        sort=sort,
        offset=offset,
        limit=limit,
        highlight=highlight,
    )
    return await store.search(params)


@router.get(
    "/messages/{message_id}",
    tags=["search"],
    summary="One indexed message (404 if absent or deleted)",
    response_model=Message,
)
async def get_message(store: StoreDep, message_id: str) -> dict[str, Any]:
    message = await store.get_message(message_id)
    if message is None:
        raise HTTPException(404, f"message {message_id!r} not found")
    return message


@router.post(
    "/admin/rebuild",
    tags=["rebuild"],
    status_code=202,
    summary="Rebuild the index by replaying the message topics, then swap the alias",
    response_model=RebuildStatus,
    response_model_exclude_unset=True,
)
async def start_rebuild(
    manager: RebuildDep,
    force: Annotated[
        bool,
        Query(
            description="rebuild even when a topic lost history (log start offset > 0) and swap the alias "
            "even when the new index holds fewer documents than the current one"
        ),
    ] = False,
) -> dict[str, Any]:
    try:
        return await manager.start(force=force)
    except RebuildBusyError as exc:
        raise HTTPException(409, str(exc)) from None
    except RebuildError as exc:
        raise HTTPException(409, str(exc)) from None


@router.get(
    "/admin/rebuild",
    tags=["rebuild"],
    summary="Progress of the current (or last) rebuild",
    response_model=RebuildStatus,
    response_model_exclude_unset=True,
)
async def rebuild_status(manager: RebuildDep) -> dict[str, Any]:
    return manager.status()


@router.get(
    "/admin/indices",
    tags=["rebuild"],
    summary="The indexes behind the alias and the ones a rebuild retired (kept until deleted or expired)",
    response_model=Indices,
)
async def list_indices(store: StoreDep, manager: RebuildDep) -> dict[str, Any]:
    keep = manager.settings.rebuild_keep_old_index_s
    retired = await store.retired_indices()
    return {
        "alias": store.alias,
        "current": await store.alias_indices(),
        "retired": [
            {"index": name, "retired_at": at, "expires_at": at + keep} for name, at in sorted(retired.items())
        ],
    }


@router.delete(
    "/admin/indices/{name}",
    tags=["rebuild"],
    summary="Delete an index a rebuild retired (never the one behind the alias)",
    response_model=DeletedIndex,
)
async def delete_retired_index(store: StoreDep, name: str) -> dict[str, Any]:
    if name in await store.alias_indices():
        raise HTTPException(409, f"{name} is behind the alias {store.alias!r}: searches use it")
    if name not in await store.retired_indices():
        raise HTTPException(404, f"{name} is not an index a rebuild of {store.alias!r} retired")
    await store.delete_index(name)
    return {"deleted": name}
