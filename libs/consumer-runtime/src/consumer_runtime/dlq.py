"""Dead-letter publishing: the original bytes and key, plus headers saying where it came from and why.

Header names follow Kafka Connect's ``errors.deadletterqueue.context.headers.enable`` spirit, in our own
``dlq.*`` namespace; every value is UTF-8 text so any tool (kafka-ui, kcat) shows them readably.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from consumer_runtime.kafka_clients import LazyProducer
from consumer_runtime.settings import KafkaSettings

HEADER_TOPIC = "dlq.original.topic"
HEADER_PARTITION = "dlq.original.partition"
HEADER_OFFSET = "dlq.original.offset"
HEADER_TIMESTAMP = "dlq.original.timestamp"
HEADER_ERROR_CLASS = "dlq.error.class"
HEADER_ERROR_MESSAGE = "dlq.error.message"
HEADER_STAGE = "dlq.error.stage"
HEADER_GROUP = "dlq.consumer.group"
HEADER_FAILED_AT = "dlq.failed.at"

MAX_ERROR_MESSAGE = 2000


@dataclass(frozen=True, slots=True)
class DeadLetter:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int
    error: BaseException
    stage: str
    dlq_topic: str

    def headers(self, group: str) -> list[tuple[str, bytes]]:
        reason = getattr(self.error, "reason", None) or str(self.error) or type(self.error).__name__
        return [
            (HEADER_TOPIC, self.topic.encode()),
            (HEADER_PARTITION, str(self.partition).encode()),
            (HEADER_OFFSET, str(self.offset).encode()),
            (HEADER_TIMESTAMP, str(self.timestamp_ms).encode()),
            (HEADER_ERROR_CLASS, type(self.error).__name__.encode()),
            (HEADER_ERROR_MESSAGE, reason[:MAX_ERROR_MESSAGE].encode("utf-8", "replace")),
            (HEADER_STAGE, self.stage.encode()),
            (HEADER_GROUP, group.encode()),
            (HEADER_FAILED_AT, str(int(time.time() * 1000)).encode()),
        ]


def decode_headers(headers: Sequence[tuple[str, bytes]] | None) -> dict[str, str]:
    """Headers of a dead letter as text (for the admin API and tests)."""
    return {k: v.decode("utf-8", "replace") for k, v in (headers or [])}


class DeadLetterPublisher:
    """A lazily started acks=all producer; ``publish`` returns only once every letter is acknowledged."""

    def __init__(self, settings: KafkaSettings) -> None:
        self._producer = LazyProducer(settings)

    async def start(self) -> None:
        await self._producer.start()

    async def publish(self, letters: Sequence[DeadLetter], *, group: str) -> None:
        await self._producer.send_all(
            [(letter.dlq_topic, letter.value, letter.key, letter.headers(group)) for letter in letters]
        )

    async def close(self) -> None:
        await self._producer.close()
