"""The runner: one consumer-group member's poll loop, rebalances, operator control and retry timing.

poll (getmany) → buffer until ``MQ_BATCH_SIZE`` records or ``MQ_BATCH_TIMEOUT_MS`` since the first one
(under backlog: up to ``MQ_MAX_BATCH`` records / ``MQ_MAX_BATCH_BYTES``, ``core.BatchLimits``) → the batch
core (:mod:`consumer_runtime.core`: decode, write, bisect, dead letters) → offsets of the whole batch
committed. A crash anywhere before the commit means redelivery, never loss; the sink's idempotent
writes make redelivery harmless.

State is explicit (docs/consumer-runtime.md, "States and pauses"):

- **lifecycle** — stopped / starting / running / reconnecting / stopping, driven by start/stop/restart and
  by Kafka client failures; ``desired`` is what the last start/stop/restart asked for.
- **operator pause** — a flag that survives rebalances, reconnects and restarts until ``resume``.
- **pending batch** — at most one, owned by a *generation*. A transient failure gives it a retry time;
  while it waits, every assigned partition is paused (*backoff*), so nothing more is buffered. Whenever
  uncommitted records are dropped (a revoke that cannot flush, a stop, a reconnect) the generation moves
  on: the batch's backoff pause ends with it, and a write still in flight for it is ignored when it returns.

Partitions are paused exactly when an operator pause or a waiting batch holds them: :meth:`_sync_pause`
derives the consumer's paused set from those two on every poll and every assignment, never from history.
Every loop iteration yields to the event loop, so HTTP answers and signals are handled in every state.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from platform_events import TopicSpec

from consumer_runtime import metrics as m
from consumer_runtime import tracing
from consumer_runtime.core import Batch, BatchLimits, Failure, Sink, advance, event_id, record_bytes
from consumer_runtime.dlq import DeadLetter, DeadLetterPublisher
from consumer_runtime.kafka_clients import Backoff, new_group_consumer
from consumer_runtime.logging import get_logger
from consumer_runtime.retry import backoff_delay
from consumer_runtime.settings import KafkaSettings
from consumer_runtime.status import (
    Action,
    ConsumerStatus,
    ControlAck,
    Counts,
    Desired,
    LastBatch,
    LastError,
    PartitionStatus,
    PauseHolder,
    State,
)
from consumer_runtime.topics import ensure_topics

log = get_logger(__name__)


class ConsumerPort(Protocol):
    """The part of ``AIOKafkaConsumer`` the runner uses: the seam unit tests drive with a fake."""

    def subscribe(self, topics: list[str], listener: ConsumerRebalanceListener) -> None: ...
    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def getmany(
        self, *partitions: TopicPartition, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]: ...
    async def commit(self, offsets: dict[TopicPartition, int]) -> None: ...
    def pause(self, *partitions: TopicPartition) -> None: ...
    def resume(self, *partitions: TopicPartition) -> None: ...
    def paused(self) -> set[TopicPartition]: ...
    def assignment(self) -> set[TopicPartition]: ...
    def highwater(self, partition: TopicPartition) -> int | None: ...
    async def topics(self) -> set[str]: ...


class DeadLetterPort(Protocol):
    async def start(self) -> None: ...
    async def publish(self, letters: Sequence[DeadLetter], *, group: str) -> None: ...
    async def close(self) -> None: ...


ConsumerFactory = Callable[[], ConsumerPort]


@dataclass
class _Pending:
    """The batch being written; it belongs to one generation of uncommitted records."""

    batch: Batch
    generation: int
    attempts: int = 0
    first_failure_at: float | None = None
    retry_at: float | None = None  # set while it waits for its retry: the backoff pause holds then


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, runner: ConsumerRunner, consumer: ConsumerPort) -> None:
        self._runner = runner
        self._consumer = consumer

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self._runner._on_revoked(list(revoked))

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self._runner._on_assigned(self._consumer, list(assigned))


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
        max_batch: int | None = None,
        max_batch_bytes: int | None = None,
        auto_offset_reset: str = "earliest",
        dead_letters: DeadLetterPort | None = None,
        consumer_factory: ConsumerFactory | None = None,
        revoke_timeout_s: float | None = None,
        reconnect_backoff_s: tuple[float, float] = (0.5, 10.0),
        clock: Callable[[], float] = time.monotonic,
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
        self.limits = BatchLimits(
            size=batch_size or settings.mq_batch_size,
            timeout_s=(batch_timeout_ms or settings.mq_batch_timeout_ms) / 1000,
            max_records=max_batch or settings.mq_max_batch,
            max_bytes=max_batch_bytes or settings.mq_max_batch_bytes,
            max_fetch=settings.kafka_max_poll_records,
        )
        self.auto_offset_reset = auto_offset_reset
        self.dead_letters: DeadLetterPort = dead_letters or DeadLetterPublisher(settings)
        self._owns_dlq = dead_letters is None
        self._factory: ConsumerFactory = consumer_factory or self._kafka_consumer
        self.revoke_timeout_s = (
            revoke_timeout_s
            if revoke_timeout_s is not None
            else max(1.0, settings.kafka_session_timeout_ms / 2000)
        )
        self.reconnect_backoff_s = reconnect_backoff_s
        # a join completes within the rebalance timeout (= the session timeout here) when the group is healthy
        self.start_timeout_s = max(15.0, 3 * settings.kafka_session_timeout_ms / 1000)
        self._clock = clock

        # lifecycle and operator state
        self._phase = State.DISABLED if not settings.kafka_enabled else State.STOPPED
        self.desired: Desired = "running"
        self.operator_paused = False
        self._restart_requested = False
        self._applied_control: deque[int] = deque(maxlen=256)  # control-topic offsets applied here
        self._task: asyncio.Task[None] | None = None
        self._reconciler: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._control = asyncio.Lock()  # start / stop / restart, one at a time
        self._lock = asyncio.Lock()  # flush (loop) vs flush (rebalance listener)

        # uncommitted records: the buffer and the pending batch, of one generation
        self._generation = 0
        self._buffer: list[ConsumerRecord[bytes, bytes]] = []
        self._buffer_bytes = 0
        self._buffer_since: float | None = None
        self._behind = False  # the last fetch left records waiting on the broker: let the batch grow
        self._pending: _Pending | None = None

        # what the status shows
        self._consumer: ConsumerPort | None = None
        self._counts: dict[str, int] = dict.fromkeys(Counts.model_fields, 0)
        self._committed: dict[TopicPartition, int] = {}
        self._positions: dict[TopicPartition, int] = {}
        #: partitions whose platform_consumer_lag this runner exports (removed when it stops holding them)
        self._lag_exported: set[TopicPartition] = set()
        self.last_error: LastError | None = None
        self.last_batch: LastBatch | None = None
        self.started_at: float | None = None
        self.last_poll_at: float | None = None
        self._labels = {"group": self.group_id}

    # ------------------------------------------------------------------ state
    @property
    def topic_names(self) -> list[str]:
        return list(self.specs)

    @property
    def state(self) -> State:
        if self._phase == State.RUNNING:
            if self._pending is not None and self._pending.retry_at is not None:
                return State.RETRYING
            if self.operator_paused:
                return State.PAUSED
        return self._phase

    @property
    def paused(self) -> bool:
        return self.operator_paused

    @property
    def counts(self) -> Counts:
        return Counts(**self._counts)

    def pause_holders(self) -> list[PauseHolder]:
        holders: list[PauseHolder] = []
        if self.operator_paused:
            holders.append("operator")
        if self._pending is not None and self._pending.retry_at is not None:
            holders.append("backoff")
        return holders

    def _count(self, name: str, n: int = 1) -> None:
        self._counts[name] += n

    # ------------------------------------------------------------------ control
    async def start(self) -> None:
        """Start the loop (idempotent) and return at once. With KAFKA_ENABLED=false this does nothing."""
        async with self._control:
            self.desired = "running"
            self._start()

    async def stop(self, timeout_s: float = 30.0) -> None:
        """Graceful stop, awaited: stop fetching, flush what is buffered, commit, leave the group."""
        async with self._control:
            self.desired = "stopped"
            self._restart_requested = False
            await self._stop_loop(timeout_s)

    async def restart(self) -> None:
        async with self._control:
            self.desired = "running"
            self._restart_requested = False
            await self._stop_loop(30.0)
            self._start()

    async def pause(self) -> None:
        """Keep the group membership but fetch nothing (operator pause) until :meth:`resume`."""
        self._set_operator_pause(True)

    async def resume(self) -> None:
        self._set_operator_pause(False)

    def request(self, action: Action, *, control_offset: int | None = None) -> ControlAck:
        """Take an operator command and answer at once with the state it leads to.

        pause/resume apply immediately; start/stop/restart are applied in the background, one at a time
        (repeated restarts asked for before the first begins become one restart). ``control_offset``: the
        command is also recorded at that offset of the control topic, and whichever of this call and the
        replica's control follower comes first applies it; the other one skips it.
        """
        if control_offset is not None and not self.claim_control(control_offset):
            log.info("control command already applied", consumer=self.name, control_offset=control_offset)
        elif action == "pause":
            self._set_operator_pause(True)
        elif action == "resume":
            self._set_operator_pause(False)
        elif self.settings.kafka_enabled:
            self.desired = "stopped" if action == "stop" else "running"
            if action != "start":  # a start does not cancel a restart asked for before it
                self._restart_requested = action == "restart"
            if self._reconciler is None or self._reconciler.done():
                self._reconciler = asyncio.create_task(self._reconcile(), name=f"control:{self.name}")
        leads_to = self._leads_to(action)
        log.info("consumer control", consumer=self.name, action=action, leads_to=leads_to.value)
        return ControlAck(**self.status().model_dump(), action=action, leads_to=leads_to)

    def claim_control(self, control_offset: int) -> bool:
        """True the first time the command at this control-topic offset is to be applied on this replica
        (by a direct call or by the control follower), False after that."""
        if control_offset in self._applied_control:
            return False
        self._applied_control.append(control_offset)
        return True

    def _leads_to(self, action: Action) -> State:
        if not self.settings.kafka_enabled:
            return State.DISABLED
        if action == "stop" or (action in ("pause", "resume") and self.desired == "stopped"):
            return State.STOPPED
        return State.PAUSED if self.operator_paused else State.RUNNING

    async def _reconcile(self) -> None:
        while True:
            async with self._control:
                alive = self._task is not None and not self._task.done()
                if self._restart_requested:
                    self._restart_requested = False
                    await self._stop_loop(30.0)
                    if self.desired == "running":
                        self._start()
                elif self.desired == "stopped" and alive:
                    await self._stop_loop(30.0)
                elif self.desired == "running" and not alive:
                    self._start()
                else:
                    return

    async def close(self) -> None:
        if self._reconciler is not None:
            self._reconciler.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reconciler
        await self.stop()
        if self._owns_dlq:
            await self.dead_letters.close()

    def _start(self) -> None:
        if not self.settings.kafka_enabled:
            self._phase = State.DISABLED
            return
        if self._task is not None and not self._task.done():
            return
        self._stop.clear()
        self._phase = State.STARTING
        self.started_at = time.time()
        self._task = asyncio.create_task(self._run(), name=f"consumer:{self.name}")

    async def _stop_loop(self, timeout_s: float) -> None:
        task = self._task
        if task is None or task.done():
            self._task = None
            if self._phase != State.DISABLED:
                self._phase = State.STOPPED
            return
        self._phase = State.STOPPING
        self._stop.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout_s)
        except TimeoutError:
            log.warning("consumer did not stop in time; cancelling", consumer=self.name)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._task = None
        self._phase = State.STOPPED

    def _set_operator_pause(self, on: bool) -> None:
        self.operator_paused = on
        if self._consumer is not None:
            self._sync_pause(self._consumer)
        else:
            self._export_pause()

    def _sync_pause(self, consumer: ConsumerPort) -> None:
        """Pause exactly the partitions an operator pause or a waiting batch holds; resume the rest."""
        assigned = set(consumer.assignment())
        held = bool(self.pause_holders())
        want = assigned if held else set()
        have = set(consumer.paused()) & assigned
        if want - have:
            consumer.pause(*sorted(want - have))
        if have - want:
            consumer.resume(*sorted(have - want))
        self._export_pause()

    def _export_pause(self) -> None:
        holders = self.pause_holders()
        m.PAUSED.labels(**self._labels).set(1 if "operator" in holders else 0)
        m.BACKOFF.labels(**self._labels).set(1 if "backoff" in holders else 0)

    # ------------------------------------------------------------------ loop
    async def _run(self) -> None:
        backoff = Backoff(*self.reconnect_backoff_s, stop=self._stop)
        while not self._stop.is_set():
            consumer = self._factory()
            try:
                if self.settings.kafka_auto_create_topics:
                    await ensure_topics(
                        self.settings,
                        [*self.topic_names, *(spec.dlq_topic for spec in self.specs.values())],
                    )
                await self.dead_letters.start()
                consumer.subscribe(self.topic_names, listener=_Listener(self, consumer))
                # Bounded: a group join that never completes (seen on the local broker after every member
                # left at once) would leave the consumer "starting" forever; a new client joins afresh.
                await asyncio.wait_for(consumer.start(), self.start_timeout_s)
                self._consumer = consumer
                self._phase = State.RUNNING
                self._note_recovered(stages=("kafka",))
                m.UP.labels(**self._labels).set(1)
                log.info("consumer started", consumer=self.name, group=self.group_id, topics=self.topic_names)
                backoff.reset()
                while not self._stop.is_set():
                    await self._poll_once(consumer)
                await self._flush(final=True)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the broker went away, or something unexpected: reconnect with backoff
                self._note_error(exc, stage="kafka")
                delay = backoff.failed()
                log.warning(
                    "consumer loop failed; reconnecting",
                    consumer=self.name,
                    error=repr(exc),
                    retry_in_s=round(delay, 2),
                )
                if self._phase != State.STOPPING:
                    self._phase = State.RECONNECTING
                self._consumer = None
                await self._leave(consumer)
                await backoff.sleep(delay)
            finally:
                m.UP.labels(**self._labels).set(0)
                if self._consumer is consumer:
                    self._consumer = None
                    await self._leave(consumer)
        log.info("consumer stopped", consumer=self.name, group=self.group_id)

    def _kafka_consumer(self) -> AIOKafkaConsumer:
        s = self.settings
        return new_group_consumer(
            s,
            group_id=self.group_id,
            auto_offset_reset=self.auto_offset_reset,
            max_poll_records=s.kafka_max_poll_records,
            max_poll_interval_ms=s.kafka_max_poll_interval_ms,
        )

    def _drop_uncommitted(self, why: str) -> None:
        """Forget the buffer and the pending batch (they are fetched again from the committed offsets);
        the generation moves on, so a write still in flight for them is ignored when it returns."""
        dropped = len(self._buffer) + (len(self._pending.batch.raw) if self._pending else 0)
        self._generation += 1
        self._buffer = []
        self._buffer_bytes = 0
        self._buffer_since = None
        self._behind = False
        self._pending = None
        if dropped:
            log.info(
                "uncommitted records dropped; they will be redelivered",
                consumer=self.name,
                why=why,
                records=dropped,
            )

    async def _leave(self, consumer: ConsumerPort) -> None:
        self._drop_uncommitted("leave")
        self._positions.clear()
        self._unexport_lag(list(self._lag_exported))
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

    async def _poll_once(self, consumer: ConsumerPort) -> None:
        pending = self._pending
        if pending is not None and pending.retry_at is not None and self._clock() >= pending.retry_at:
            await self._flush()
        self._sync_pause(consumer)
        now = self._clock()
        limits = self.limits
        timeout_s = limits.wait_s(len(self._buffer), age_s=self._buffer_age(now))
        pending = self._pending
        if pending is not None and pending.retry_at is not None:
            timeout_s = min(timeout_s, pending.retry_at - now)
        timeout_s = max(0.0, timeout_s)
        room = limits.room(len(self._buffer), self._buffer_bytes, behind=self._behind)
        data: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]] = {}
        if room > 0:
            # Also while a batch waits for its retry: the partitions are paused then, so this returns
            # nothing, but polling keeps the member inside max.poll.interval.
            data = await consumer.getmany(timeout_ms=int(timeout_s * 1000), max_records=room)
        else:
            await asyncio.sleep(timeout_s)
        # getmany(timeout_ms=0) can return without suspending: yield, so HTTP and signals are served
        await asyncio.sleep(0)
        self.last_poll_at = self._clock()
        fetched = 0
        for tp, msgs in data.items():
            if not msgs:
                continue
            if self._buffer_since is None:
                self._buffer_since = self.last_poll_at
            self._buffer.extend(msgs)
            self._buffer_bytes += sum(record_bytes(msg) for msg in msgs)
            fetched += len(msgs)
            self._positions[tp] = msgs[-1].offset + 1
            self._count("consumed", len(msgs))
            m.CONSUMED.labels(group=self.group_id, topic=tp.topic).inc(len(msgs))
        self._update_lag(consumer)
        self._behind = limits.behind(fetched, room, self._fetch_lag(consumer))
        due = limits.due(
            len(self._buffer),
            self._buffer_bytes,
            age_s=self._buffer_age(self.last_poll_at),
            behind=self._behind,
        )
        if self._pending is None and due:
            await self._flush()

    def _buffer_age(self, now: float) -> float | None:
        return None if self._buffer_since is None else now - self._buffer_since

    def _fetch_lag(self, consumer: ConsumerPort) -> int | None:
        """Records on the broker past the fetch positions, over the partitions fetched now (None: no high
        watermark known yet)."""
        lag: int | None = None
        for tp in consumer.assignment() - consumer.paused():
            high = consumer.highwater(tp)
            pos = self._positions.get(tp, self._committed.get(tp))
            if high is not None and pos is not None:
                lag = (lag or 0) + max(0, high - pos)
        return lag

    # ------------------------------------------------------------------ flush
    def _take_pending(self) -> _Pending | None:
        if self._pending is None and self._buffer:
            batch = Batch.decode(self._buffer, self.specs)
            self._buffer = []
            self._buffer_bytes = 0
            self._buffer_since = None
            self._pending = _Pending(batch, self._generation)
        return self._pending

    async def _flush(self, *, final: bool = False) -> bool:
        """Write, dead-letter and commit everything buffered. True when nothing is left pending.

        A normal flush makes one attempt (the loop retries later, polling meanwhile); the final flush at
        shutdown retries for a short while before leaving the rest to be redelivered.
        """
        async with self._lock:
            while (pending := self._take_pending()) is not None:
                if await self._attempt(pending):
                    continue
                if not (final and self._can_retry_on_stop(pending)):
                    return False
                await asyncio.sleep(max(0.0, (pending.retry_at or 0.0) - self._clock()))
            return True

    def _can_retry_on_stop(self, pending: _Pending) -> bool:
        # On shutdown keep retrying a failing batch for a short while only; the rest is redelivered later.
        started = pending.first_failure_at or self._clock()
        return self._clock() - started < min(10.0, self.settings.kafka_session_timeout_ms / 1000)

    def _stale(self, pending: _Pending, outcome: str) -> bool:
        if pending.generation == self._generation:
            return False
        self._count("stale_results_ignored")
        log.info(
            "result of a dropped batch ignored; its records are redelivered",
            consumer=self.name,
            outcome=outcome,
            records=len(pending.batch.raw),
        )
        return True

    async def _attempt(self, pending: _Pending) -> bool:
        """One try at the pending batch. True when it is finished (or was dropped meanwhile)."""
        batch = pending.batch
        started = time.perf_counter()
        try:
            if tracing.is_enabled():
                # one CONSUMER span per attempt, linked to every record's trace; the sink's calls nest in it
                with tracing.batch_span(batch.raw, consumer=self.name, group=self.group_id):
                    await advance(batch, self.sink, self._dead_letter)
            else:
                await advance(batch, self.sink, self._dead_letter)
            if self._stale(pending, "written"):
                return True
            await self._commit(batch)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if self._stale(pending, "failed"):
                return True
            pending.attempts += 1
            now = self._clock()
            pending.first_failure_at = pending.first_failure_at or now
            delay = backoff_delay(
                pending.attempts,
                initial_s=self.settings.retry_backoff_initial_ms / 1000,
                max_s=self.settings.retry_backoff_max_ms / 1000,
            )
            pending.retry_at = now + delay
            self._count("retries")
            m.RETRIES.labels(**self._labels).inc()
            self._note_error(exc, stage="sink" if not batch.written else "commit")
            if self._consumer is not None:
                self._sync_pause(self._consumer)
            log.warning(
                "batch write failed; will retry",
                consumer=self.name,
                attempt=pending.attempts,
                retry_in_s=round(delay, 3),
                records=len(batch.raw),
                error=repr(exc),
            )
            return False
        if self._stale(pending, "committed"):
            return True
        self._pending = None
        if pending.retry_at is not None and self._consumer is not None:
            self._sync_pause(self._consumer)  # the backoff pause ends with its batch
        self._record_success(batch, time.perf_counter() - started)
        return True

    def _record_success(self, batch: Batch, elapsed: float) -> None:
        for topic, n in batch.stored.items():  # one metric update per topic and batch, not per record
            self._count("stored", n)
            m.STORED.labels(group=self.group_id, topic=topic).inc(n)
        stored = sum(batch.stored.values())
        n_failed = len(batch.raw) - stored
        ms = round(elapsed * 1000, 2)
        self._count("batches")
        m.BATCH_SIZE.labels(**self._labels).observe(len(batch.raw))
        m.FLUSH_SECONDS.labels(**self._labels).observe(elapsed)
        self.last_batch = LastBatch(
            records=len(batch.raw), stored=stored, failed=n_failed, ms=ms, at=time.time()
        )
        self._note_recovered()
        log.info(  # the seed's sentence, plus the same numbers as fields
            f"Processed batch: {len(batch.raw)} events ({stored} success, {n_failed} failures) in {ms} ms",
            consumer=self.name,
            events=len(batch.raw),
            success=stored,
            failures=n_failed,
            duration_ms=ms,
        )

    async def _dead_letter(self, failures: Sequence[Failure]) -> None:
        letters = [
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
                lineage=f.record.lineage,
            )
            for f in failures
        ]
        await self.dead_letters.publish(letters, group=self.group_id)
        for f in failures:
            reason = getattr(f.error, "reason", None) or str(f.error)
            self._count("dead_lettered")
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
                event_id=event_id(f.record.value),
            )

    async def _commit(self, batch: Batch) -> None:
        consumer = self._consumer
        offsets = batch.offsets()
        if consumer is None or not offsets:
            return
        assigned = consumer.assignment()
        mine = {TopicPartition(*tp): off for tp, off in offsets.items() if TopicPartition(*tp) in assigned}
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
        self._count("commits")
        m.COMMITS.labels(group=self.group_id, outcome="ok").inc()

    # ------------------------------------------------------------------ rebalance
    async def _on_revoked(self, revoked: list[TopicPartition]) -> None:
        log.info("partitions revoked", consumer=self.name, partitions=_fmt(revoked))
        try:
            flushed = await asyncio.wait_for(self._flush(), timeout=self.revoke_timeout_s)
        except TimeoutError:
            flushed = False
        if not flushed:
            # Nothing is lost: uncommitted records are fetched again from the committed offsets.
            log.warning("flush on revoke failed; uncommitted records will be redelivered", consumer=self.name)
        # Eager rebalance: every position is reset to the committed offset, so the buffer goes either way.
        self._drop_uncommitted("revoke")
        for tp in revoked:
            self._positions.pop(tp, None)
            self._committed.pop(tp, None)
        self._unexport_lag(revoked)

    async def _on_assigned(self, consumer: ConsumerPort, assigned: list[TopicPartition]) -> None:
        self._count("rebalances")
        m.REBALANCES.labels(**self._labels).inc()
        m.ASSIGNED.labels(**self._labels).set(len(assigned))
        self._sync_pause(consumer)
        log.info("partitions assigned", consumer=self.name, partitions=_fmt(assigned))

    # ------------------------------------------------------------------ status
    def _update_lag(self, consumer: ConsumerPort) -> None:
        for tp in consumer.assignment():
            lag = self._lag(consumer, tp)
            if lag is not None:
                m.LAG.labels(self.group_id, tp.topic, str(tp.partition)).set(lag)
                self._lag_exported.add(tp)

    def _unexport_lag(self, tps: list[TopicPartition]) -> None:
        """A replica reports lag only for the partitions it holds: a stopped, reconnecting or revoked one
        drops its series instead of leaving a stale figure (the group's lag whatever the consumers' state
        is the gateway's ``platform_consumer_group_lag``, measured from the broker)."""
        for tp in tps:
            self._lag_exported.discard(tp)
            with contextlib.suppress(KeyError):
                m.LAG.remove(self.group_id, tp.topic, str(tp.partition))

    def _lag(self, consumer: ConsumerPort, tp: TopicPartition) -> int | None:
        high = consumer.highwater(tp)
        if high is None:
            return None
        nxt = self._committed.get(tp)
        if nxt is None:
            nxt = self._positions.get(tp)
        return max(0, high - nxt) if nxt is not None else None

    def _note_error(self, exc: BaseException, *, stage: str) -> None:
        self.last_error = LastError(
            stage=stage, error_class=type(exc).__name__, message=str(exc)[:500], at=time.time()
        )

    def _note_recovered(self, stages: tuple[str, ...] | None = None) -> None:
        """The last error (of one of ``stages``) is over: keep it, with when the consumer recovered."""
        error = self.last_error
        if error is not None and error.recovered_at is None and (stages is None or error.stage in stages):
            self.last_error = error.model_copy(update={"recovered_at": time.time()})

    def status(self) -> ConsumerStatus:
        consumer = self._consumer
        parts: list[PartitionStatus] = []
        if consumer is not None:
            for tp in sorted(consumer.assignment()):
                parts.append(
                    PartitionStatus(
                        topic=tp.topic,
                        partition=tp.partition,
                        committed=self._committed.get(tp),
                        position=self._positions.get(tp),
                        highwater=consumer.highwater(tp),
                        lag=self._lag(consumer, tp),
                    )
                )
        not_ready = self.not_ready()
        pending = self._pending
        return ConsumerStatus(
            name=self.name,
            group=self.group_id,
            topics=self.topic_names,
            state=self.state,
            desired=self.desired,
            paused=self.operator_paused,
            paused_by=self.pause_holders(),
            enabled=self.settings.kafka_enabled,
            ready=not_ready is None,
            not_ready=not_ready,
            assignment=parts,
            lag=sum(p.lag or 0 for p in parts),
            counts=self.counts,
            buffered=len(self._buffer) + (len(pending.batch.raw) if pending else 0),
            pending_attempts=pending.attempts if pending else 0,
            last_batch=self.last_batch,
            last_error=self.last_error,
            started_at=self.started_at,
        )

    async def check_kafka(self) -> None:
        """Readiness: the broker answers a metadata request (raises otherwise)."""
        consumer = self._consumer
        if not self.settings.kafka_enabled:
            return
        if consumer is None:
            if self._phase == State.STOPPED:
                return  # an operator stopped it: not a dependency failure
            raise RuntimeError(f"consumer is {self.state.value}")
        try:
            await asyncio.wait_for(consumer.topics(), 3.0)
        except (TimeoutError, KafkaError, OSError) as exc:
            raise RuntimeError(f"kafka unreachable: {exc!r}") from exc

    def not_ready(self) -> str | None:
        """Why the consumer cannot make progress now, or None. An operator's stop or pause is deliberate:
        it is reported in the state, not as a failure."""
        phase = self._phase
        if phase in (State.DISABLED, State.STOPPED):
            return None
        task = self._task
        if self.desired == "running" and phase != State.STOPPING and (task is None or task.done()):
            return "consumer loop is not running"
        if phase == State.RECONNECTING:
            message = self.last_error.message if self.last_error else ""
            return f"reconnecting to kafka: {message}"
        if phase == State.STARTING and self._consumer is None:
            return "reconnecting to kafka: connecting"
        pending = self._pending
        if pending is not None and pending.first_failure_at is not None:
            message = self.last_error.message if self.last_error else ""
            return f"writes failing for {self._clock() - pending.first_failure_at:.1f}s: {message}"
        consumer = self._consumer
        if (
            consumer is not None
            and not self.pause_holders()
            and set(consumer.paused()) & consumer.assignment()
        ):
            return "partitions paused with no operator pause and no batch waiting"  # never, by construction
        stuck_after = self.settings.consumer_stuck_after_s
        if self.last_poll_at is not None and self._clock() - self.last_poll_at > stuck_after:
            return f"no poll for {self._clock() - self.last_poll_at:.0f}s"
        return None

    @staticmethod
    def kafka_only(reason: str) -> bool:
        """Whether a :meth:`not_ready` reason is Kafka's (the consumer waits for the broker, not stuck)."""
        return reason.startswith("reconnecting to kafka")

    def wedged(self) -> str | None:
        """Liveness: the loop should be polling and has not for 3 × ``CONSUMER_STUCK_AFTER_S`` (a process a
        restart cures). Waiting for a broker or a datastore is not wedged: the loop polls meanwhile."""
        if self._phase not in (State.RUNNING,) or self.last_poll_at is None:
            return None
        silent = self._clock() - self.last_poll_at
        if silent > 3 * self.settings.consumer_stuck_after_s:
            return f"consumer loop has not polled for {silent:.0f}s"
        return None

    def check_progress(self) -> None:
        """Readiness: the loop is alive, connected, and no batch is failing (raises with the reason)."""
        reason = self.not_ready()
        if reason is not None:
            raise RuntimeError(reason)


def _fmt(parts: list[TopicPartition]) -> list[str]:
    return sorted(f"{tp.topic}[{tp.partition}]" for tp in parts)
