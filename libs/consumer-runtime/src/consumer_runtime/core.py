"""The pure batch core: decode → write → bisect → dead letters → offsets to commit.

No Kafka client and no timers live here: a :class:`Batch` is built from fetched records, :func:`advance`
drives it through the sink and the dead-letter publisher (each step at most once, so a retried batch
resumes where it failed), and :meth:`Batch.offsets` says what may be committed once it is done.
:class:`BatchLimits` decides when a buffer becomes a batch (the latency rule when caught up, larger bulks
under backlog). The runner (:mod:`consumer_runtime.runner`) owns polling, rebalances, control and retry
timing around it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from platform_events import EventDecodeError, TopicSpec, decode, ms_to_datetime

from consumer_runtime.dlq import lineage

V = TypeVar("V", covariant=True)

#: (topic, partition): equal to aiokafka's ``TopicPartition`` named tuple, without depending on it
TP = tuple[str, int]


class RawRecord(Protocol):
    """What the core needs of a fetched record (aiokafka's ``ConsumerRecord`` has it)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def timestamp(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Record(Generic[V]):
    """One decoded Kafka record handed to a sink."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: V
    timestamp_ms: int
    raw: bytes | None = None
    #: lineage headers of a record replayed from a DLQ (``consumer_runtime.dlq.lineage``): kept if it fails
    lineage: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True, slots=True)
class Failure:
    """A record the sink (or handler) can never store: it goes to the dead-letter topic."""

    record: Record[Any]
    error: BaseException
    stage: str = "sink"


class PermanentError(Exception):
    """Raised by a sink when a write can never succeed as given; the runtime bisects to the bad records."""


class Sink(Protocol):
    """The datastore side of a consumer. ``write`` must be idempotent (redelivery changes nothing).

    Raise any exception for a transient failure (the batch is retried with backoff); raise
    :class:`PermanentError` for a batch that can never be written; return per-record permanent failures.
    """

    async def write(self, records: Sequence[Record[Any]], /) -> Sequence[Failure]: ...

    async def ping(self) -> None: ...


#: publishes dead letters; returns only once every one is acknowledged, raises otherwise
DeadLetterFn = Callable[[Sequence[Failure]], Awaitable[None]]


@dataclass
class Batch:
    """One batch on its way through the core. ``written``/``dead_published`` make each step run once."""

    raw: list[Any]
    good: list[Record[Any]] = field(default_factory=list)
    dead: list[Failure] = field(default_factory=list)
    written: bool = False
    dead_published: bool = False
    stored: Counter[str] = field(default_factory=Counter)  # records stored per topic (once written)

    @classmethod
    def decode(cls, raw: Sequence[RawRecord], specs: Mapping[str, TopicSpec[Any]]) -> Batch:
        """Decode every record with its topic's schema; the undecodable ones become dead letters."""
        batch = cls(raw=list(raw))
        for msg in raw:
            data = msg.value or b""
            kept = lineage(getattr(msg, "headers", None))
            try:
                # A missing event time becomes the record's broker timestamp: stable across redeliveries.
                value = decode(specs[msg.topic], data, received_at=ms_to_datetime(msg.timestamp))
            except EventDecodeError as exc:
                rec: Record[Any] = Record(
                    msg.topic, msg.partition, msg.offset, msg.key, None, msg.timestamp, data, kept
                )
                batch.dead.append(Failure(rec, exc, stage="decode"))
                continue
            batch.good.append(
                Record(msg.topic, msg.partition, msg.offset, msg.key, value, msg.timestamp, data, kept)
            )
        return batch

    @property
    def done(self) -> bool:
        return self.written and (self.dead_published or not self.dead)

    def offsets(self) -> dict[TP, int]:
        """The next offset per partition: what a commit of this batch records."""
        out: dict[TP, int] = {}
        for msg in self.raw:
            tp = (msg.topic, msg.partition)
            out[tp] = max(out.get(tp, 0), msg.offset + 1)
        return out


@dataclass(frozen=True, slots=True)
class BatchLimits:
    """When buffered records become a batch: the one decision behind batch sizes, free of clocks and I/O.

    Caught up (nothing more waiting on the broker), a batch is written at ``size`` records
    (``MQ_BATCH_SIZE``) or ``timeout_s`` after its first record (``MQ_BATCH_TIMEOUT_MS``): the latency rule.
    Behind (the fetch positions are short of the high watermarks, or the last fetch filled the room it was
    given), the buffer keeps filling past ``size`` up to ``max_records`` (``MQ_MAX_BATCH``) while its bytes
    stay under ``max_bytes`` (``MQ_MAX_BATCH_BYTES``): one bulk write instead of several, since waiting costs
    no latency when the next records are already there. ``timeout_s`` bounds a batch's age in both cases.
    ``max_records <= size`` turns the adaptive growth off (the batch is always ``size``).

    Memory: at most ``max(size, max_records)`` records are buffered, and a batch only grows past ``size``
    by as many records as fit under ``max_bytes`` at its average record size.
    """

    size: int
    timeout_s: float
    max_records: int
    max_bytes: int
    max_fetch: int | None = None  # records one fetch may return (KAFKA_MAX_POLL_RECORDS)

    @property
    def cap(self) -> int:
        """The most records a batch can hold."""
        return max(self.size, self.max_records)

    def behind(self, fetched: int, room: int, lag: int | None) -> bool:
        """Whether the consumer is behind after a fetch of ``fetched`` records (``room`` were allowed):
        ``lag`` (records on the broker past the fetch positions, when the high watermarks are known) holds at
        least another batch, or, with no lag known, the fetch filled its room. A fetch that brought nothing
        is never behind, so a batch is not held back for records the broker does not hand out (paused
        partitions, offsets without records); a lag under ``size`` at a steady rate is not behind either,
        so a consumer that keeps up keeps its batches (and its latency) at ``size``."""
        if fetched <= 0:
            return False
        if lag is not None:
            return lag >= self.size
        return fetched >= room

    def room(self, buffered: int, buffered_bytes: int, *, behind: bool) -> int:
        """How many records the next fetch may add to a buffer of ``buffered`` records (``buffered_bytes``).

        Past ``size`` only when behind, and only as many as fit under ``max_bytes`` at the buffer's
        average record size (so a batch passes the byte bound only by the spread of its records' sizes)."""
        room = self.size - buffered
        if behind and buffered > 0 and buffered_bytes < self.max_bytes:
            per_record = max(1.0, buffered_bytes / buffered)
            fits = int((self.max_bytes - buffered_bytes) / per_record)
            room = max(room, min(self.cap - buffered, fits))
        if self.max_fetch is not None:
            room = min(room, self.max_fetch)
        return max(0, room)

    def due(self, buffered: int, buffered_bytes: int, *, age_s: float | None, behind: bool) -> bool:
        """Whether the buffer is written now."""
        if buffered <= 0:
            return False
        if buffered >= self.cap or (age_s is not None and age_s >= self.timeout_s):
            return True
        if buffered < self.size:
            return False
        return not behind or buffered_bytes >= self.max_bytes

    def wait_s(self, buffered: int, *, age_s: float | None, idle_s: float = 0.5) -> float:
        """How long the next fetch may wait for records: not at all once a batch could be written (it only
        waits for records already on the broker), else until the oldest buffered record is due."""
        if buffered >= self.size:
            return 0.0
        if age_s is None:
            return idle_s
        return max(0.0, min(idle_s, self.timeout_s - age_s))


def record_bytes(record: RawRecord) -> int:
    """What a fetched record weighs in a batch's byte bound: its key and value."""
    return len(record.value or b"") + len(record.key or b"")


async def write_bisecting(sink: Sink, records: Sequence[Record[Any]]) -> list[Failure]:
    """Write through the sink, bisecting a :class:`PermanentError` down to the records that cause it."""
    if not records:
        return []
    try:
        return list(await sink.write(records))
    except PermanentError as exc:
        if len(records) == 1:
            return [Failure(records[0], exc, stage="sink")]
        mid = len(records) // 2
        return [*await write_bisecting(sink, records[:mid]), *await write_bisecting(sink, records[mid:])]


async def advance(batch: Batch, sink: Sink, dead_letter: DeadLetterFn) -> None:
    """Take ``batch`` as far as it goes: written, then its dead letters published. Raises on a transient
    failure, leaving the batch where it stopped (a retry does not repeat a finished step)."""
    if not batch.written:
        failures = await write_bisecting(sink, batch.good)
        failed = {(f.record.topic, f.record.partition, f.record.offset) for f in failures}
        batch.stored = Counter(r.topic for r in batch.good if (r.topic, r.partition, r.offset) not in failed)
        batch.dead.extend(failures)
        batch.written = True
    if batch.dead and not batch.dead_published:
        await dead_letter(batch.dead)
        batch.dead_published = True


def event_id(value: Any) -> str | None:
    """The id a log line names a record by: the event id, or the issue id of a factory issue."""
    return getattr(value, "event_id", None) or getattr(value, "issue", None)
