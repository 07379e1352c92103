"""The notifier: mentions in platform.messages.created → MongoDB + platform.notifications.sent, listed and
streamed live (SSE)."""

from __future__ import annotations

from consumer_runtime import Check, get_logger
from consumer_runtime.service import Datastore, build_service
from fastapi import FastAPI
from platform_events import TOPIC_MESSAGES_CREATED, TOPIC_NOTIFICATIONS_SENT
from pymongo.errors import ConnectionFailure, ExecutionTimeout

from notifier.api import api_router
from notifier.config import Settings
from notifier.live import LiveHub, NotificationTail
from notifier.publisher import NotificationPublisher
from notifier.sink import NotificationSink
from notifier.store import NotificationStore

log = get_logger(__name__)

SERVICE = "notifier"


def create_app(settings: Settings) -> FastAPI:
    sent_topic = settings.topic(TOPIC_NOTIFICATIONS_SENT).name
    store = NotificationStore(
        settings.mongo_url, settings.notifier_mongo_db, timeout_ms=settings.mongo_timeout_ms
    )
    publisher = NotificationPublisher(settings, sent_topic)
    sink = NotificationSink(
        store,
        publisher,
        title=settings.notification_title,
        preview_chars=settings.notification_preview_chars,
    )
    hub = LiveHub(settings.stream_queue_size)
    tail = (
        NotificationTail(settings, sent_topic, hub)
        if settings.kafka_enabled and settings.live_tail_enabled
        else None
    )
    # the live tail needs Kafka: reported by /readyz ("degraded"), not gating it — lists keep working
    degraded: dict[str, Check] = {"live_tail": tail.check} if tail is not None else {}

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

    return build_service(
        name=SERVICE,
        description="Mention notifications from platform.messages.created: stored once per (event, user) in "
        "MongoDB, published to platform.notifications.sent, listed and streamed live (SSE).",
        settings=settings,
        topics=[TOPIC_MESSAGES_CREATED],
        sink=sink,
        datastore=Datastore("mongodb", store.ping, down=(ConnectionFailure, ExecutionTimeout)),
        routers=[api_router(settings=settings, store=store, hub=hub, tail=tail)],
        startup=startup,
        shutdown=shutdown,
        degraded_checks=degraded,
        state={"store": store, "hub": hub, "tail": tail},
    )
