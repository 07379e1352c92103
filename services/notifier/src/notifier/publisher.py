"""Publishes stored notifications to ``platform.notifications.sent`` (key = user id), acks=all.

Each record carries the position of its message event in headers (``notifier.source.*``): the live streams
of every replica use it as their resume cursor (cursor.py).

It also reads back what was published (:meth:`NotificationPublisher.published_ids`): the sink's recovery path
asks which notifications of an interrupted batch already reached the topic, so they are not sent twice.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping, Sequence

from aiokafka import AIOKafkaConsumer, TopicPartition
from consumer_runtime import KafkaSettings, tracing
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
        #: sent-topic partition → the offset after the last record this process saw acknowledged there
        self.positions: dict[int, int] = {}

    @property
    def topic(self) -> str:
        return self.spec.name

    async def _ensure_topic(self) -> None:
        if self._settings.kafka_auto_create_topics:
            await ensure_topics(self._settings, [self.topic])

    async def start(self) -> None:
        await self._producer.start()

    async def publish(self, items: Sequence[tuple[NotificationSentEvent, Source | None]]) -> None:
        """Send (event, source position) pairs in the given order; returns once all are acknowledged.

        With tracing on, the send is one PRODUCER span (a child of the batch's span) whose W3C context
        every record carries."""
        with tracing.publish_span(self.topic, records=len(items)) as trace_headers:
            acked = await self._producer.send_all(
                [
                    (
                        self.topic,
                        encode(event),
                        encode_key(self.spec, event),
                        [*(source_headers(source) or ()), *trace_headers]
                        if trace_headers
                        else source_headers(source),
                    )
                    for event, source in items
                ]
            )
        for meta in acked:
            self.positions[meta.partition] = max(self.positions.get(meta.partition, 0), meta.offset + 1)

    async def published_ids(self, since: Mapping[int, int], *, timeout_s: float) -> set[str] | None:
        """``notification_id`` of every record of the topic from ``since`` (partition → offset; a partition
        not named is read from its beginning) up to its high watermark; ``None`` when that is not read within
        ``timeout_s`` (the caller then publishes again: at least once rather than lost).

        The end is the high watermark of the fetch responses: Tansu answers ListOffsets(latest) with the
        base offset of the last batch + 1, not the end of the log.
        """
        consumer = AIOKafkaConsumer(**self._settings.client_kwargs(), enable_auto_commit=False)
        deadline = time.monotonic() + timeout_s
        try:
            await asyncio.wait_for(consumer.start(), timeout_s)
            parts = consumer.partitions_for_topic(self.topic) or set()
            tps = [TopicPartition(self.topic, p) for p in sorted(parts)]
            if not tps:
                return set()
            consumer.assign(tps)
            upto = {tp: since.get(tp.partition, 0) for tp in tps}  # next offset to read
            for tp, offset in upto.items():
                consumer.seek(tp, offset)
            ids: set[str] = set()
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                batch = await consumer.getmany(timeout_ms=int(min(left, 1.0) * 1000))
                for tp, records in batch.items():
                    ids.update(_notification_id(rec.value) for rec in records)
                    if records:
                        upto[tp] = max(upto[tp], records[-1].offset + 1)
                high = {tp: consumer.highwater(tp) for tp in tps}
                if all(h is not None and upto[tp] >= h for tp, h in high.items()):
                    return ids
        except TimeoutError:
            return None
        finally:
            await consumer.stop()

    async def close(self) -> None:
        await self._producer.close()


def _notification_id(value: bytes | None) -> str:
    try:
        doc = json.loads(value or b"{}")
    except ValueError:
        return ""
    return str(doc.get("notification_id", "")) if isinstance(doc, dict) else ""
