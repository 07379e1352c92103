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
from consumer_runtime.tracing import TRACE_HEADERS

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
#: How many times the letter's record has been replayed (1 on the first replay).
HEADER_REPLAY_COUNT = "dlq.replay.count"
#: ``<topic>/<partition>/<offset>`` of the record's first failure, kept across every replay.
HEADER_ORIGIN = "dlq.lineage.origin"
#: The headers a replayed record carries and its next dead letter keeps (its lineage).
LINEAGE_HEADERS = (HEADER_REPLAYED_FROM, HEADER_REPLAYED_AT, HEADER_REPLAY_COUNT, HEADER_ORIGIN)
#: What a dead letter keeps of its record's headers: the lineage, and the W3C trace context
#: (``traceparent``/``tracestate``) so the letter, and a replay of it, stays in the record's trace.
KEPT_HEADERS = frozenset((*LINEAGE_HEADERS, *TRACE_HEADERS))

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
    #: lineage of a re-dead-lettered replay: the letter it was replayed from, how often, the first failure
    replayed_from: str | None = None
    replay_count: int | None = None
    origin: str | None = None

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
            (HEADER_REPLAYED_FROM, self.replayed_from),
            (HEADER_REPLAY_COUNT, self.replay_count),
            (HEADER_ORIGIN, self.origin),
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
            replayed_from=h.get(HEADER_REPLAYED_FROM) or None,
            replay_count=_int(h.get(HEADER_REPLAY_COUNT)),
            origin=h.get(HEADER_ORIGIN) or None,
        )

    @property
    def first_failure(self) -> str | None:
        """``<topic>/<partition>/<offset>`` where the record first failed (across replays)."""
        if self.origin:
            return self.origin
        if self.original_topic is None:
            return None
        return f"{self.original_topic}/{self.original_partition}/{self.original_offset}"


def replay_headers(
    dlq_topic: str, partition: int, offset: int, letter: DlqHeaders | None = None
) -> list[tuple[str, bytes]]:
    """The headers of a record replayed from ``dlq_topic`` (its original headers are not carried over):
    where it was replayed from, when, the replay count and the first failure (``letter``: the dead letter's
    own headers, whose count and origin carry on). A consumer that dead-letters it again keeps them."""
    count = (letter.replay_count or 0) + 1 if letter is not None else 1
    origin = letter.first_failure if letter is not None else None
    headers = [
        (HEADER_REPLAYED_FROM, f"{dlq_topic}/{partition}/{offset}".encode()),
        (HEADER_REPLAYED_AT, str(int(time.time() * 1000)).encode()),
        (HEADER_REPLAY_COUNT, str(count).encode()),
    ]
    if origin:
        headers.append((HEADER_ORIGIN, origin.encode("utf-8")))
    return headers


def lineage(headers: Headers) -> tuple[tuple[str, bytes], ...]:
    """The headers of a record its dead letter keeps: the lineage (set when it was replayed from a DLQ) and
    the trace context (:data:`KEPT_HEADERS`)."""
    if not headers:
        return ()
    if isinstance(headers, Mapping):
        return tuple((k, v.encode("utf-8")) for k, v in headers.items() if k in KEPT_HEADERS)
    return tuple((k, v or b"") for k, v in headers if k in KEPT_HEADERS)


def trace_context(headers: Headers) -> list[tuple[str, bytes]]:
    """The W3C trace headers of a record or a letter (``traceparent``/``tracestate``), as they are."""
    if not headers:
        return []
    if isinstance(headers, Mapping):
        return [(k, v.encode("utf-8")) for k, v in headers.items() if k in TRACE_HEADERS]
    return [(k, v or b"") for k, v in headers if k in TRACE_HEADERS]


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
    #: the failed record's lineage (a replayed record) and trace headers: kept on this letter
    lineage: tuple[tuple[str, bytes], ...] = ()

    def headers(self, group: str) -> list[tuple[str, bytes]]:
        reason = getattr(self.error, "reason", None) or str(self.error) or type(self.error).__name__
        return [*self._headers(group, reason), *self.lineage]

    def _headers(self, group: str, reason: str) -> list[tuple[str, bytes]]:
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
