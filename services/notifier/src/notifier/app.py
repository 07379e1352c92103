"""Composition root: settings → store, publisher, sink, consumer, live hub + tail → FastAPI app."""

from __future__ import annotations

from consumer_runtime import Check, ConsumerRunner, get_logger, ops_router
from consumer_runtime.service import consumer_lifespan
from fastapi import FastAPI
from platform_events import MESSAGES_CREATED

from notifier.api import api_router
from notifier.config import Settings
from notifier.live import LiveHub, NotificationTail
from notifier.publisher import NotificationPublisher
from notifier.sink import NotificationSink
from notifier.store import NotificationStore

log = get_logger(__name__)


def create_app(settings: Settings) -> FastAPI:
    store = NotificationStore(
        settings.mongo_url, settings.notifier_mongo_db, timeout_ms=settings.mongo_timeout_ms
    )
    publisher = NotificationPublisher(settings, settings.kafka_topic_notifications_sent)
    sink = NotificationSink(
        store,
        publisher,
        title=settings.notification_title,
        preview_chars=settings.notification_preview_chars,
    )
    runner = ConsumerRunner(
        name="notifier",
        settings=settings,
        topics=[MESSAGES_CREATED.renamed(settings.kafka_topic_messages_created)],
        sink=sink,
    )
    hub = LiveHub(settings.stream_queue_size)
    tail = (
        NotificationTail(settings, settings.kafka_topic_notifications_sent, hub)
        if settings.kafka_enabled and settings.live_tail_enabled
        else None
    )
    checks: dict[str, Check] = {"mongodb": store.ping}
    if tail is not None:
        checks["live_tail"] = tail.check

    async def startup() -> None:
        await store.open()
        if tail is not None:
            await tail.start()

    async def shutdown() -> None:
        hub.close()
        if tail is not None:
            await tail.stop()
        await publisher.close()
        await store.close()
        log.info("notifier stopped")

    app = FastAPI(
        title="notifier",
        description="Mention notifications from platform.messages.created: stored once per (event, user) in "
        "MongoDB, published to platform.notifications.sent, listed and streamed live (SSE).",
        version="0.1.0",
        lifespan=consumer_lifespan(runner, settings.shutdown_timeout_s, startup=startup, shutdown=shutdown),
    )
    app.state.settings = settings
    app.state.store = store
    app.state.runner = runner
    app.state.hub = hub
    app.state.tail = tail
    app.include_router(ops_router(service="notifier", runner=runner, checks=checks))
    app.include_router(api_router(settings=settings, store=store, hub=hub, tail=tail))
    return app
