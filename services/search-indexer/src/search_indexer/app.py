"""The search indexer: platform.messages.* → Elasticsearch, message search, rebuild by replay."""

from __future__ import annotations

import asyncio

from consumer_runtime import get_logger
from consumer_runtime.kafka_clients import Backoff, retry_until_done
from consumer_runtime.service import Datastore, build_service
from elasticsearch import ConnectionError, ConnectionTimeout
from fastapi import FastAPI

from search_indexer.api import router as api_router
from search_indexer.config import MESSAGE_TOPICS, Settings
from search_indexer.rebuild import RebuildManager
from search_indexer.sink import MessageSink
from search_indexer.store import AliasConflictError, MessageStore

log = get_logger(__name__)

SERVICE = "search-indexer"


async def _ensure_alias(store: MessageStore, timeout_s: float = 30.0) -> None:
    """Wait (bounded) for Elasticsearch at start-up, then make sure the alias and its index exist."""
    try:
        indices = await retry_until_done(
            store.ensure_alias,
            what="elasticsearch not ready",
            backoff=Backoff(1.0, 1.0),
            give_up_after_s=timeout_s,
            fatal=(AliasConflictError,),
        )
    except AliasConflictError:
        raise
    except Exception as exc:
        raise RuntimeError(f"Elasticsearch at ELASTICSEARCH_URL is not usable: {exc!r}") from exc
    log.info("search index ready", alias=store.alias, indices=indices)


def create_app(settings: Settings, *, store: MessageStore | None = None) -> FastAPI:
    store = store or MessageStore.from_settings(settings)
    rebuild = RebuildManager(settings, store)
    sweeper: list[asyncio.Task[None]] = []

    async def startup() -> None:
        await _ensure_alias(store)
        sweeper.append(asyncio.create_task(rebuild.sweep_forever(), name="search-indexer:sweep-retired"))

    async def shutdown() -> None:
        for task in sweeper:
            task.cancel()
        await asyncio.gather(*sweeper, return_exceptions=True)
        await rebuild.close()
        await store.close()

    return build_service(
        name=SERVICE,
        description="Indexes platform.messages.* into Elasticsearch; message search; rebuild by replay.",
        settings=settings,
        topics=MESSAGE_TOPICS,
        sink=MessageSink(store),
        datastore=Datastore("elasticsearch", store.ping, down=(ConnectionError, ConnectionTimeout)),
        routers=[api_router],
        startup=startup,
        shutdown=shutdown,
        state={"store": store, "rebuild": rebuild},
    )
