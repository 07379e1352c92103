"""The log sink: wide log events (log-events) → MongoDB ``wide_events``, and queries over them."""

from __future__ import annotations

from consumer_runtime.service import Datastore, build_service
from fastapi import FastAPI
from platform_events import TOPIC_LOG_EVENTS
from pymongo.errors import ConnectionFailure, ExecutionTimeout

from log_sink import api
from log_sink.config import Settings
from log_sink.sink import WideEventSink
from log_sink.store import WideEventStore

SERVICE = "log-sink"


def create_app(settings: Settings) -> FastAPI:
    store = WideEventStore(
        settings.mongo_url,
        settings.log_mongo_db,
        retention_s=settings.retention_s,
        timeout_ms=settings.mongo_timeout_ms,
    )
    return build_service(
        name=SERVICE,
        description="Wide log events from Kafka `log-events` into MongoDB `wide_events`; queries over them.",
        settings=settings,
        topics=[TOPIC_LOG_EVENTS],
        sink=WideEventSink(store),
        datastore=Datastore("mongodb", store.ping, down=(ConnectionFailure, ExecutionTimeout)),
        routers=[api.router(store, max_limit=settings.log_query_max_limit)],
        startup=store.open,
        shutdown=store.close,
        state={"store": store},
    )
