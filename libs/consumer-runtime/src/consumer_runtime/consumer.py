"""The one consume loop every service runs.

poll (getmany) → buffer until ``MQ_BATCH_SIZE`` records or ``MQ_BATCH_TIMEOUT_MS`` since the first one →
decode (bad → dead letter) → ``sink.write`` (idempotent bulk write) → dead letters published → offsets of the
whole batch committed. A crash anywhere before the commit means redelivery, never loss; the sink's idempotent
writes make redelivery harmless.

Transient sink failures keep the batch, pause every assigned partition (so nothing more is buffered) and retry
with exponential backoff while the loop keeps polling (which keeps the group membership alive). A
:class:`PermanentError` from the sink is bisected down to the offending records, which become dead letters.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Generic, Protocol, TypeVar

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from platform_events import EventDecodeError, TopicSpec, decode, ms_to_datetime

from consumer_runtime import metrics as m
from consumer_runtime.dlq import DeadLetter, DeadLetterPublisher
from consumer_runtime.logging import get_logger
from consumer_runtime.retry import backoff_delay
from consumer_runtime.settings import KafkaSettings
from consumer_runtime.topics import ensure_topics

log = get_logger(__name__)

V = TypeVar("V", covariant=True)


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


class State(StrEnum):
    DISABLED = "disabled"
    STOPPED = "stopped"
    STARTING = "starting"
    RUNNING = "running"
    PAUSED = "paused"
    RETRYING = "retrying"
    STOPPING = "stopping"


@dataclass
class _Batch:
    raw: list[ConsumerRecord[bytes, bytes]]
    good: list[Record[Any]] = field(default_factory=list)
    dead: list[Failure] = field(default_factory=list)
    written: bool = False
    dead_published: bool = False
    attempts: int = 0
    first_failure_at: float | None = None


@dataclass
class Counts:
    consumed: int = 0
    stored: int = 0
    dead_lettered: int = 0
    retries: int = 0
    rebalances: int = 0
    batches: int = 0
    commits: int = 0


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, runner: ConsumerRunner) -> None:
        self._runner = runner

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self._runner._on_revoked(list(revoked))

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self._runner._on_assigned(list(assigned))


ConsumerFactory = Callable[..., AIOKafkaConsumer]


class ConsumerRunner:
    """Owns one consumer-group member: its loop task, control state, counts and status."""

    def __init__(
        self,
        *,
        name: str,
        settings: KafkaSettings,
        topics: Sequence[TopicSpec[Any]],
        sink: Sink,
        group_id: str | None = None,
        batch_size: int | None = None,
        batch_timeout_ms: int | None = None,
        auto_offset_reset: str = "earliest",
        dead_letters: DeadLetterPublisher | None = None,
    ) -> None:
        if not topics:
            raise ValueError("a consumer needs at least one topic")
        self.name = name
        self.settings = settings
        self.specs = {spec.name: spec for spec in topics}
        self.sink = sink
        self.group_id = group_id or settings.kafka_consumer_group
        if not self.group_id:
            raise ValueError("KAFKA_CONSUMER_GROUP is empty")
        self.batch_size = batch_size or settings.mq_batch_size
        self.batch_timeout_s = (batch_timeout_ms or settings.mq_batch_timeout_ms) / 1000
        self.auto_offset_reset = auto_offset_reset
        self.dead_letters = dead_letters or DeadLetterPublisher(settings)
        self._owns_dlq = dead_letters is None

        self.state = State.DISABLED if not settings.kafka_enabled else State.STOPPED
        self.counts = Counts()
        self.last_error: dict[str, Any] | None = None
        self.last_batch: dict[str, Any] | None = None
        self.started_at: float | None = None
        self.last_poll_at: float | None = None

        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._lock = asyncio.Lock()  # flush (loop) vs flush (rebalance listener)
        self._control = asyncio.Lock()  # start / stop / restart, one at a time
        self._buffer: list[ConsumerRecord[bytes, bytes]] = []
        self._buffer_since: float | None = None
        self._pending: _Batch | None = None
        self._retry_at: float | None = None
        self._pause_reasons: set[str] = set()
        self._committed: dict[TopicPartition, int] = {}
        self._positions: dict[TopicPartition, int] = {}
        self._assignment: set[TopicPartition] = set()
        self._labels = {"group": self.group_id}

    # ------------------------------------------------------------------ control
    @property
    def topic_names(self) -> list[str]:
        return list(self.specs)

    async def start(self) -> None:
        """Start the loop (idempotent). With KAFKA_ENABLED=false this does nothing."""
        async with self._control:
            self._start()

    async def stop(self, timeout_s: float = 30.0) -> None:
        """Graceful stop: stop fetching, flush what is buffered, commit, leave the group."""
        async with self._control:
            await self._stop_loop(timeout_s)

    async def restart(self) -> None:
        # One control operation at a time: an operator's restart and the control topic's may overlap.
        async with self._control:
            await self._stop_loop(30.0)
            self._start()

    def _start(self) -> None:
        if not self.settings.kafka_enabled:
            self.state = State.DISABLED
            return
        if self._task is not None and not self._task.done():
            return
        self._stop.clear()
        self.state = State.STARTING
        self.started_at = time.time()
        self._task = asyncio.create_task(self._run(), name=f"consumer:{self.name}")

    async def _stop_loop(self, timeout_s: float) -> None:
        task = self._task
        if task is None or task.done():
            self._task = None
            if self.state != State.DISABLED:
                self.state = State.STOPPED
            return
        self.state = State.STOPPING
        self._stop.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout_s)
        except TimeoutError:
            log.warning("consumer did not stop in time; cancelling", consumer=self.name)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._task = None
        self.state = State.STOPPED

    async def pause(self) -> None:
        """Keep the group membership but fetch nothing (operator pause)."""
        self._set_pause("operator", True)

    async def resume(self) -> None:
        self._set_pause("operator", False)

    async def close(self) -> None:
        await self.stop()
        if self._owns_dlq:
            await self.dead_letters.close()

    def _set_pause(self, reason: str, on: bool) -> None:
        was = bool(self._pause_reasons)
        (self._pause_reasons.add if on else self._pause_reasons.discard)(reason)
        now = bool(self._pause_reasons)
        consumer = self._consumer
        if consumer is not None and was != now:
            parts = list(consumer.assignment())
            if now:
                consumer.pause(*parts)
            else:
                consumer.resume(*parts)
        m.PAUSED.labels(**self._labels).set(1 if now else 0)
        if self.state in (State.RUNNING, State.PAUSED):
            self.state = State.PAUSED if "operator" in self._pause_reasons else State.RUNNING

    @property
    def paused(self) -> bool:
        return "operator" in self._pause_reasons

    # ------------------------------------------------------------------ loop
    async def _run(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            consumer = self._new_consumer()
            try:
                if self.settings.kafka_auto_create_topics:
                    await ensure_topics(
                        self.settings,
                        [*self.topic_names, *(spec.dlq_topic for spec in self.specs.values())],
                    )
                await self.dead_letters.start()
                consumer.subscribe(self.topic_names, listener=_Listener(self))
                await consumer.start()
                self._consumer = consumer
                m.UP.labels(**self._labels).set(1)
                self.state = State.PAUSED if self.paused else State.RUNNING
                log.info("consumer started", consumer=self.name, group=self.group_id, topics=self.topic_names)
                attempt = 0
                while not self._stop.is_set():
                    await self._poll_once(consumer)
                await self._flush(final=True)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the broker went away, or something unexpected: reconnect with backoff
                attempt += 1
                self._note_error(exc, stage="kafka")
                delay = backoff_delay(attempt, initial_s=0.5, max_s=10.0)
                log.warning(
                    "consumer loop failed; reconnecting",
                    consumer=self.name,
                    error=repr(exc),
                    retry_in_s=round(delay, 2),
                )
                self.state = State.RETRYING
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), delay)
            finally:
                m.UP.labels(**self._labels).set(0)
                self._consumer = None
                self._assignment.clear()
                await self._leave(consumer)
        log.info("consumer stopped", consumer=self.name, group=self.group_id)

    def _new_consumer(self) -> AIOKafkaConsumer:
        s = self.settings
        return AIOKafkaConsumer(
            **s.client_kwargs(),
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset=self.auto_offset_reset,
            max_poll_records=s.kafka_max_poll_records,
            session_timeout_ms=s.kafka_session_timeout_ms,
            heartbeat_interval_ms=s.kafka_heartbeat_interval_ms,
            max_poll_interval_ms=s.kafka_max_poll_interval_ms,
            rebalance_timeout_ms=s.kafka_session_timeout_ms,
        )

    async def _leave(self, consumer: AIOKafkaConsumer) -> None:
        # Records buffered but not committed are simply redelivered to whoever owns the partition next.
        self._buffer.clear()
        self._buffer_since = None
        self._pending = None
        try:
            await consumer.stop()
        except asyncio.CancelledError:
            # aiokafka's Fetcher.close() re-raises the CancelledError of the fetch tasks it cancels when they
            # were mid-retry (the broker is gone): aio-libs/aiokafka#647. Only a cancel of our own task
            # counts.
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
            log.info("kafka client stopped while its fetches were retrying", consumer=self.name)
        except Exception as exc:
            log.info("kafka client did not stop cleanly", consumer=self.name, error=repr(exc))

    async def _poll_once(self, consumer: AIOKafkaConsumer) -> None:
        now = time.monotonic()
        if self._pending is not None and self._retry_at is not None and now >= self._retry_at:
            await self._flush()
        timeout_s = 0.5
        if self._buffer_since is not None:
            timeout_s = max(0.0, min(timeout_s, self._buffer_since + self.batch_timeout_s - now))
        if self._retry_at is not None:
            timeout_s = max(0.0, min(timeout_s, self._retry_at - now))
        room = self.batch_size - len(self._buffer)
        data: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]] = {}
        if room > 0:
            # Also while a batch waits for its retry: the partitions are paused then, so this returns
            # nothing, but polling keeps the member inside max.poll.interval.
            data = await consumer.getmany(timeout_ms=int(timeout_s * 1000), max_records=room)
        self.last_poll_at = time.monotonic()
        for tp, msgs in data.items():
            if not msgs:
                continue
            if self._buffer_since is None:
                self._buffer_since = self.last_poll_at
            self._buffer.extend(msgs)
            self._positions[tp] = msgs[-1].offset + 1
            self.counts.consumed += len(msgs)
            m.CONSUMED.labels(group=self.group_id, topic=tp.topic).inc(len(msgs))
        self._update_lag(consumer)
        full = len(self._buffer) >= self.batch_size
        due = (
            self._buffer_since is not None and self.last_poll_at >= self._buffer_since + self.batch_timeout_s
        )
        if self._pending is None and (full or due):
            await self._flush()

    # ------------------------------------------------------------------ flush
    def _take_batch(self) -> _Batch | None:
        if self._pending is None and self._buffer:
            batch = _Batch(raw=self._buffer)
            self._buffer = []
            self._buffer_since = None
            for msg in batch.raw:
                self._decode_into(batch, msg)
            self._pending = batch
        return self._pending

    def _decode_into(self, batch: _Batch, msg: ConsumerRecord[bytes, bytes]) -> None:
        spec = self.specs[msg.topic]
        raw = msg.value or b""
        try:
            # A missing event time becomes the record's broker timestamp: stable across redeliveries.
            value = decode(spec, raw, received_at=ms_to_datetime(msg.timestamp))
        except EventDecodeError as exc:
            rec: Record[Any] = Record(msg.topic, msg.partition, msg.offset, msg.key, None, msg.timestamp, raw)
            batch.dead.append(Failure(rec, exc, stage="decode"))
            return
        batch.good.append(Record(msg.topic, msg.partition, msg.offset, msg.key, value, msg.timestamp, raw))

    async def _flush(self, *, final: bool = False) -> bool:
        """Write, dead-letter and commit everything buffered. True when nothing is left pending.

        A normal flush makes one attempt (the loop retries later, polling meanwhile); the final flush at
        shutdown retries for a short while before leaving the rest to be redelivered.
        """
        async with self._lock:
            while (batch := self._take_batch()) is not None:
                if await self._try_batch(batch):
                    continue
                if not (final and self._can_retry_on_stop(batch)):
                    return False
                await asyncio.sleep(max(0.0, (self._retry_at or 0.0) - time.monotonic()))
            return True

    def _can_retry_on_stop(self, batch: _Batch) -> bool:
        # On shutdown keep retrying a failing batch for a short while only; the rest is redelivered later.
        started = batch.first_failure_at or time.monotonic()
        return time.monotonic() - started < min(10.0, self.settings.kafka_session_timeout_ms / 1000)

    async def _try_batch(self, batch: _Batch) -> bool:
        started = time.perf_counter()
        try:
            if not batch.written:
                failures = await self._write(batch.good)
                batch.dead.extend(failures)
                batch.written = True
            if batch.dead and not batch.dead_published:
                await self._dead_letter(batch.dead)
                batch.dead_published = True
            await self._commit(batch)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            batch.attempts += 1
            batch.first_failure_at = batch.first_failure_at or time.monotonic()
            delay = backoff_delay(
                batch.attempts,
                initial_s=self.settings.retry_backoff_initial_ms / 1000,
                max_s=self.settings.retry_backoff_max_ms / 1000,
            )
            self._retry_at = time.monotonic() + delay
            self.counts.retries += 1
            m.RETRIES.labels(**self._labels).inc()
            self._note_error(exc, stage="sink" if not batch.written else "commit")
            self._set_pause("backoff", True)
            if self.state in (State.RUNNING, State.PAUSED):
                self.state = State.RETRYING
            log.warning(
                "batch write failed; will retry",
                consumer=self.name,
                attempt=batch.attempts,
                retry_in_s=round(delay, 3),
                records=len(batch.raw),
                error=repr(exc),
            )
            return False
        elapsed = time.perf_counter() - started
        self._pending = None
        self._retry_at = None
        if "backoff" in self._pause_reasons:
            self._set_pause("backoff", False)
        if self.state == State.RETRYING:
            self.state = State.PAUSED if self.paused else State.RUNNING
        stored = len(batch.raw) - len(batch.dead)
        self.counts.batches += 1
        m.BATCH_SIZE.labels(**self._labels).observe(len(batch.raw))
        m.FLUSH_SECONDS.labels(**self._labels).observe(elapsed)
        self.last_batch = {
            "records": len(batch.raw),
            "stored": stored,
            "failed": len(batch.raw) - stored,
            "ms": round(elapsed * 1000, 2),
            "at": time.time(),
        }
        ms = round(elapsed * 1000, 2)
        n_failed = len(batch.raw) - stored
        log.info(  # the seed's sentence, plus the same numbers as fields
            f"Processed batch: {len(batch.raw)} events ({stored} success, {n_failed} failures) in {ms} ms",
            consumer=self.name,
            events=len(batch.raw),
            success=stored,
            failures=n_failed,
            duration_ms=ms,
        )
        return True

    async def _write(self, records: list[Record[Any]]) -> list[Failure]:
        """Write through the sink, bisecting a :class:`PermanentError` down to the records that cause it."""
        if not records:
            return []
        try:
            failures = list(await self.sink.write(records))
        except PermanentError as exc:
            if len(records) == 1:
                return [Failure(records[0], exc, stage="sink")]
            mid = len(records) // 2
            return [*await self._write(records[:mid]), *await self._write(records[mid:])]
        failed_offsets = {(f.record.topic, f.record.partition, f.record.offset) for f in failures}
        per_topic: Counter[str] = Counter(
            rec.topic for rec in records if (rec.topic, rec.partition, rec.offset) not in failed_offsets
        )
        for topic, n in per_topic.items():  # one metric update per topic and batch, not per record
            self.counts.stored += n
            m.STORED.labels(group=self.group_id, topic=topic).inc(n)
        return failures

    async def _dead_letter(self, failures: list[Failure]) -> None:
        letters = []
        for f in failures:
            letters.append(
                DeadLetter(
                    topic=f.record.topic,
                    partition=f.record.partition,
                    offset=f.record.offset,
                    key=f.record.key,
                    value=f.record.raw,
                    timestamp_ms=f.record.timestamp_ms,
                    error=f.error,
                    stage=f.stage,
                    dlq_topic=self.specs[f.record.topic].dlq_topic,
                )
            )
        await self.dead_letters.publish(letters, group=self.group_id)
        for f in failures:
            reason = getattr(f.error, "reason", None) or str(f.error)
            self.counts.dead_lettered += 1
            m.DLQ.labels(group=self.group_id, topic=f.record.topic).inc()
            m.FAILED.labels(group=self.group_id, topic=f.record.topic, stage=f.stage).inc()
            log.warning(
                "dead-lettered record",
                consumer=self.name,
                topic=f.record.topic,
                partition=f.record.partition,
                offset=f.record.offset,
                stage=f.stage,
                error_class=type(f.error).__name__,
                reason=reason,
                event_id=_event_id(f.record.value),
            )

    async def _commit(self, batch: _Batch) -> None:
        offsets: dict[TopicPartition, int] = {}
        for msg in batch.raw:
            tp = TopicPartition(msg.topic, msg.partition)
            offsets[tp] = max(offsets.get(tp, 0), msg.offset + 1)
        consumer = self._consumer
        if consumer is None or not offsets:
            return
        assigned = consumer.assignment()
        mine = {tp: off for tp, off in offsets.items() if tp in assigned}
        if not mine:
            return
        try:
            await consumer.commit(mine)
        except (CommitFailedError, IllegalStateError) as exc:
            # The group moved on: the new owner starts at the last commit and the sink is idempotent.
            m.COMMITS.labels(group=self.group_id, outcome="rejected").inc()
            log.warning("commit rejected after rebalance; records will be redelivered", error=repr(exc))
            return
        self._committed.update(mine)
        self.counts.commits += 1
        m.COMMITS.labels(group=self.group_id, outcome="ok").inc()

    # ------------------------------------------------------------------ rebalance
    async def _on_revoked(self, revoked: list[TopicPartition]) -> None:
        log.info("partitions revoked", consumer=self.name, partitions=_fmt(revoked))
        try:
            flushed = await asyncio.wait_for(
                self._flush(), timeout=max(1.0, self.settings.kafka_session_timeout_ms / 2000)
            )
        except TimeoutError:
            flushed = False
        if not flushed:
            # Nothing is lost: uncommitted records are fetched again from the committed offsets.
            log.warning("flush on revoke failed; uncommitted records will be redelivered", consumer=self.name)
            self._buffer.clear()
            self._buffer_since = None
            self._pending = None
            self._retry_at = None
        for tp in revoked:
            self._positions.pop(tp, None)
            self._committed.pop(tp, None)
            with contextlib.suppress(KeyError):
                m.LAG.remove(self.group_id, tp.topic, str(tp.partition))
        self._assignment.clear()

    async def _on_assigned(self, assigned: list[TopicPartition]) -> None:
        self._assignment = set(assigned)
        self.counts.rebalances += 1
        m.REBALANCES.labels(**self._labels).inc()
        m.ASSIGNED.labels(**self._labels).set(len(assigned))
        consumer = self._consumer
        if consumer is not None and self._pause_reasons and assigned:
            consumer.pause(*assigned)
        log.info("partitions assigned", consumer=self.name, partitions=_fmt(assigned))

    # ------------------------------------------------------------------ status
    def _update_lag(self, consumer: AIOKafkaConsumer) -> None:
        for tp in consumer.assignment():
            lag = self._lag(consumer, tp)
            if lag is not None:
                m.LAG.labels(self.group_id, tp.topic, str(tp.partition)).set(lag)

    def _lag(self, consumer: AIOKafkaConsumer, tp: TopicPartition) -> int | None:
        high = consumer.highwater(tp)
        if high is None:
            return None
        nxt = self._committed.get(tp)
        if nxt is None:
            nxt = self._positions.get(tp)
        return max(0, high - nxt) if nxt is not None else None

    def _note_error(self, exc: BaseException, *, stage: str) -> None:
        self.last_error = {
            "stage": stage,
            "error_class": type(exc).__name__,
            "message": str(exc)[:500],
            "at": time.time(),
        }

    def status(self) -> dict[str, Any]:
        consumer = self._consumer
        parts = []
        if consumer is not None:
            for tp in sorted(consumer.assignment(), key=lambda t: (t.topic, t.partition)):
                parts.append(
                    {
                        "topic": tp.topic,
                        "partition": tp.partition,
                        "committed": self._committed.get(tp),
                        "position": self._positions.get(tp),
                        "highwater": consumer.highwater(tp),
                        "lag": self._lag(consumer, tp),
                    }
                )
        return {
            "name": self.name,
            "group": self.group_id,
            "topics": self.topic_names,
            "state": self.state.value,
            "paused": self.paused,
            "enabled": self.settings.kafka_enabled,
            "assignment": parts,
            "lag": sum(p["lag"] or 0 for p in parts),
            "counts": vars(self.counts).copy(),
            "buffered": len(self._buffer) + (len(self._pending.raw) if self._pending else 0),
            "last_batch": self.last_batch,
            "last_error": self.last_error,
            "started_at": self.started_at,
        }

    async def check_kafka(self) -> None:
        """Readiness: the broker answers a metadata request (raises otherwise)."""
        consumer = self._consumer
        if not self.settings.kafka_enabled:
            return
        if consumer is None:
            if self.state == State.STOPPED:
                return  # an operator stopped it: not a dependency failure
            raise RuntimeError(f"consumer is {self.state.value}")
        try:
            await asyncio.wait_for(consumer.topics(), 3.0)
        except (TimeoutError, KafkaError, OSError) as exc:
            raise RuntimeError(f"kafka unreachable: {exc!r}") from exc

    def check_progress(self) -> None:
        """Readiness: the loop is alive and a failing batch has not been stuck for too long."""
        if self.state in (State.DISABLED, State.STOPPED):
            return
        stuck_after = self.settings.consumer_stuck_after_s
        now = time.monotonic()
        pending = self._pending
        if pending is not None and pending.first_failure_at is not None:
            raise RuntimeError(
                f"writes failing for {now - pending.first_failure_at:.1f}s: "
                f"{(self.last_error or {}).get('message')}"
            )
        if self.last_poll_at is not None and now - self.last_poll_at > stuck_after:
            raise RuntimeError(f"no poll for {now - self.last_poll_at:.0f}s")


def _fmt(parts: list[TopicPartition]) -> list[str]:
    return sorted(f"{tp.topic}[{tp.partition}]" for tp in parts)


def _event_id(value: Any) -> str | None:
    return getattr(value, "event_id", None) or getattr(value, "issue", None)
