"""Dead letters: the original bytes and key, plus headers saying where it came from and why.

Header names follow Kafka Connect's ``errors.deadletterqueue.context.headers.enable`` spirit, in our own
``dlq.*`` namespace; every value is UTF-8 text so any tool (kafka-ui, kcat) shows them readably. They are
written (:meth:`DlqHeaders.encode`) and read back (:meth:`DlqHeaders.parse`, the gateway's DLQ browser and
replay) only here.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from consumer_runtime.kafka_clients import LazyProducer
from consumer_runtime.settings import KafkaClientSettings

HEADER_TOPIC = "dlq.original.topic"
HEADER_PARTITION = "dlq.original.partition"
HEADER_OFFSET = "dlq.original.offset"
HEADER_TIMESTAMP = "dlq.original.timestamp"
HEADER_ERROR_CLASS = "dlq.error.class"
HEADER_ERROR_MESSAGE = "dlq.error.message"
HEADER_STAGE = "dlq.error.stage"
HEADER_GROUP = "dlq.consumer.group"
HEADER_FAILED_AT = "dlq.failed.at"
#: Set on a record the gateway replays from a DLQ: ``<dlq topic>/<partition>/<offset>`` and when.
HEADER_REPLAYED_FROM = "dlq.replayed.from"
HEADER_REPLAYED_AT = "dlq.replayed.at"

MAX_ERROR_MESSAGE = 2000


Headers = Sequence[tuple[str, bytes]] | Mapping[str, str] | None


def decode_headers(headers: Headers) -> dict[str, str]:
    """Record headers as text (already decoded ones are returned as they are)."""
    if isinstance(headers, Mapping):
        return dict(headers)
    return {k: (v or b"").decode("utf-8", "replace") for k, v in (headers or [])}


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class DlqHeaders:
    """The ``dlq.*`` headers of a dead letter: where the record came from, why it failed, who failed it."""

    original_topic: str | None
    original_partition: int | None
    original_offset: int | None
    original_timestamp_ms: int | None
    error_class: str | None
    error_message: str | None
    stage: str | None
    group: str | None
    failed_at_ms: int | None

    def encode(self) -> list[tuple[str, bytes]]:
        fields = [
            (HEADER_TOPIC, self.original_topic),
            (HEADER_PARTITION, self.original_partition),
            (HEADER_OFFSET, self.original_offset),
            (HEADER_TIMESTAMP, self.original_timestamp_ms),
            (HEADER_ERROR_CLASS, self.error_class),
            (HEADER_ERROR_MESSAGE, self.error_message),
            (HEADER_STAGE, self.stage),
            (HEADER_GROUP, self.group),
            (HEADER_FAILED_AT, self.failed_at_ms),
        ]
        return [(name, str(value).encode("utf-8", "replace")) for name, value in fields if value is not None]

    @classmethod
    def parse(cls, headers: Headers) -> DlqHeaders:
        """Read the headers of a record (raw or decoded); a missing or malformed one is None."""
        h = decode_headers(headers)
        return cls(
            original_topic=h.get(HEADER_TOPIC) or None,
            original_partition=_int(h.get(HEADER_PARTITION)),
            original_offset=_int(h.get(HEADER_OFFSET)),
            original_timestamp_ms=_int(h.get(HEADER_TIMESTAMP)),
            error_class=h.get(HEADER_ERROR_CLASS),
            error_message=h.get(HEADER_ERROR_MESSAGE),
            stage=h.get(HEADER_STAGE),
            group=h.get(HEADER_GROUP),
            failed_at_ms=_int(h.get(HEADER_FAILED_AT)),
        )


def replay_headers(dlq_topic: str, partition: int, offset: int) -> list[tuple[str, bytes]]:
    """The headers of a record replayed from ``dlq_topic`` (its original headers are not carried over)."""
    return [
        (HEADER_REPLAYED_FROM, f"{dlq_topic}/{partition}/{offset}".encode()),
        (HEADER_REPLAYED_AT, str(int(time.time() * 1000)).encode()),
    ]


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
        return DlqHeaders(
            original_topic=self.topic,
            original_partition=self.partition,
            original_offset=self.offset,
            original_timestamp_ms=self.timestamp_ms,
            error_class=type(self.error).__name__,
            error_message=reason[:MAX_ERROR_MESSAGE],
            stage=self.stage,
            group=group,
            failed_at_ms=int(time.time() * 1000),
        ).encode()


class DeadLetterPublisher:
    """A lazily started acks=all producer; ``publish`` returns only once every letter is acknowledged."""

    def __init__(self, settings: KafkaClientSettings) -> None:
        self._producer = LazyProducer(settings)

    async def start(self) -> None:
        await self._producer.start()

    async def publish(self, letters: Sequence[DeadLetter], *, group: str) -> None:
        await self._producer.send_all(
            [(letter.dlq_topic, letter.value, letter.key, letter.headers(group)) for letter in letters]
        )

    async def close(self) -> None:
        await self._producer.close()
