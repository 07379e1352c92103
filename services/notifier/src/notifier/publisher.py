"""Publishes stored notifications to ``platform.notifications.sent`` (key = user id), acks=all."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer
from consumer_runtime import KafkaSettings
from consumer_runtime.topics import ensure_topics
from platform_events import NOTIFICATIONS_SENT, NotificationSentEvent, encode, encode_key


class NotificationPublisher:
    """A lazily started producer; :meth:`publish` returns only once the broker acknowledged every event."""

    def __init__(self, settings: KafkaSettings, topic: str) -> None:
        self._settings = settings
        self.spec = NOTIFICATIONS_SENT.renamed(topic)
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

    @property
    def topic(self) -> str:
        return self.spec.name

    async def start(self) -> None:
        async with self._lock:
            if self._producer is None:
                if self._settings.kafka_auto_create_topics:
                    await ensure_topics(self._settings, [self.topic])
                producer = AIOKafkaProducer(**self._settings.producer_kwargs())
                await producer.start()
                self._producer = producer

    async def publish(self, events: Sequence[NotificationSentEvent]) -> None:
        if not events:
            return
        await self.start()
        assert self._producer is not None
        futures = [
            await self._producer.send(self.topic, value=encode(event), key=encode_key(self.spec, event))
            for event in events
        ]
        await asyncio.gather(*futures)

    async def close(self) -> None:
        async with self._lock:
            if self._producer is not None:
                producer, self._producer = self._producer, None
                await producer.stop()
