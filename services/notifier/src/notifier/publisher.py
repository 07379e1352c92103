"""Publishes stored notifications to ``platform.notifications.sent`` (key = user id), acks=all.

Each record carries the position of its message event in headers (``notifier.source.*``): the live streams
of every replica use it as their resume cursor (cursor.py).
"""

from __future__ import annotations

from collections.abc import Sequence

from consumer_runtime import KafkaSettings
from consumer_runtime.kafka_clients import LazyProducer
from consumer_runtime.topics import ensure_topics
from platform_events import NOTIFICATIONS_SENT, NotificationSentEvent, encode, encode_key

from notifier.handlers import Source, source_headers


class NotificationPublisher:
    """A lazily started producer; :meth:`publish` returns only once the broker acknowledged every event."""

    def __init__(self, settings: KafkaSettings, topic: str) -> None:
        self._settings = settings
        self.spec = NOTIFICATIONS_SENT.renamed(topic)
        self._producer = LazyProducer(settings, before_start=self._ensure_topic)

    @property
    def topic(self) -> str:
        return self.spec.name

    async def _ensure_topic(self) -> None:
        if self._settings.kafka_auto_create_topics:
            await ensure_topics(self._settings, [self.topic])

    async def start(self) -> None:
        await self._producer.start()

    async def publish(self, items: Sequence[tuple[NotificationSentEvent, Source | None]]) -> None:
        """Send (event, source position) pairs in the given order; returns once all are acknowledged."""
        await self._producer.send_all(
            [
                (self.topic, encode(event), encode_key(self.spec, event), source_headers(source))
                for event, source in items
            ]
        )

    async def close(self) -> None:
        await self._producer.close()
