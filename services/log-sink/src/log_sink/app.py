"""Composition root: settings → store + consumer runner → FastAPI app."""

from __future__ import annotations

from consumer_runtime import ConsumerRunner, ops_router
from consumer_runtime.service import consumer_lifespan
from fastapi import FastAPI
from platform_events import LOG_EVENTS

from log_sink import api
from log_sink.config import Settings
from log_sink.store import WideEventStore

SERVICE = "log-sink"


def create_app(settings: Settings) -> FastAPI:
    store = WideEventStore(
        settings.mongo_url,
        settings.log_mongo_db,
        retention_s=settings.retention_s,
        timeout_ms=settings.mongo_timeout_ms,
    )
    runner = ConsumerRunner(
        name=SERVICE,
        settings=settings,
        topics=[LOG_EVENTS.renamed(settings.kafka_log_topic)],
        sink=store,
    )

    app = FastAPI(
        title="log-sink",
        description="Wide log events from Kafka `log-events` into MongoDB `wide_events`; queries over them.",
        version="0.1.0",
        lifespan=consumer_lifespan(
            runner, settings.shutdown_timeout_s, startup=store.open, shutdown=store.close
        ),
    )
    app.state.store = store
    app.state.runner = runner
    app.include_router(ops_router(service=SERVICE, runner=runner, checks={"mongodb": store.ping}))
    app.include_router(api.router(store, max_limit=settings.log_query_max_limit))
    return app
