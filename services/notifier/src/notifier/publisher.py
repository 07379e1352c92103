"""Publishes stored notifications to ``platform.notifications.sent`` (key = user id), acks=all."""

from __future__ import annotations

from collections.abc import Sequence

from consumer_runtime import KafkaSettings
from consumer_runtime.kafka_clients import LazyProducer
from consumer_runtime.topics import ensure_topics
from platform_events import NOTIFICATIONS_SENT, NotificationSentEvent, encode, encode_key


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

    async def publish(self, events: Sequence[NotificationSentEvent]) -> None:
        await self._producer.send_all(
            [(self.topic, encode(event), encode_key(self.spec, event), None) for event in events]
        )

    async def close(self) -> None:
        await self._producer.close()
