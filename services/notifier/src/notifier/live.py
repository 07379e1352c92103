"""Live delivery: every replica tails ``platform.notifications.sent`` and fans out to its own streams.

Why a tail of the topic and not an in-process hand-off from the sink: with several replicas the one that
stored a notification (the owner of the message's partition) is rarely the one holding the user's stream
connection. Each replica therefore reads *all* partitions of the notifications topic with its own
group-less consumer (assign + seek to the end, no commits) and hands each record to the connections of
that user in this process (:class:`LiveHub`). The stream itself catches up from MongoDB on resume, on
overflow and whenever the tail (re)positions at the end of the topic (what was published while it was not
reading is in the store), so the tail only has to be fast, not durable.

Each record carries the position of its message event in headers (publisher.py); streams place live items
by it (cursor.py). A stale record the tail may read at start (some brokers position "end" at the start of
the last batch) is harmless: its position is not after the stream's cursor, so it is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from aiokafka import AIOKafkaConsumer, TopicPartition
from consumer_runtime import KafkaSettings, get_logger
from consumer_runtime.kafka_clients import Backoff, new_reader
from consumer_runtime.topics import ensure_topics
from platform_events import NOTIFICATIONS_SENT, EventDecodeError, decode

from notifier import metrics as m
from notifier.handlers import Source, public_from_event, source_from_headers

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class LiveItem:
    """A notification read by the tail: the public shape, and its message event's position if known."""

    item: dict[str, Any]
    source: Source | None = None

    @property
    def user_id(self) -> str:
        user: str = self.item["user_id"]
        return user


#: Put in a queue to wake its stream up for a catch-up from the store (``overflowed`` is set with it).
RESYNC: Final = LiveItem({})


@dataclass(eq=False)
class Subscription:
    """One open stream connection of ``user_id``: a bounded queue of live items; ``None`` ends the stream.

    ``overflowed``: items may have been missed (queue full, or the tail restarted): catch up from the store.
    """

    user_id: str
    queue: asyncio.Queue[LiveItem | None]
    overflowed: bool = False
    created_ms: int = field(default_factory=lambda: int(time.time() * 1000))


class LiveHub:
    """In-process fan-out by user id. ``publish`` never blocks: a full queue marks the subscription
    overflowed and the stream catches up from the store."""

    def __init__(self, queue_size: int = 1000) -> None:
        self._queue_size = queue_size
        self._subs: dict[str, set[Subscription]] = {}

    def subscribe(self, user_id: str) -> Subscription:
        sub = Subscription(user_id, asyncio.Queue(maxsize=self._queue_size))
        self._subs.setdefault(user_id, set()).add(sub)
        m.LIVE_SUBSCRIBERS.inc()
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        subs = self._subs.get(sub.user_id)
        if subs is not None and sub in subs:
            subs.discard(sub)
            m.LIVE_SUBSCRIBERS.dec()
            if not subs:
                del self._subs[sub.user_id]

    def publish(self, entry: LiveItem) -> int:
        """Hand ``entry`` to every connection of its user; returns how many got it."""
        delivered = 0
        for sub in self._subs.get(entry.user_id, ()):
            try:
                sub.queue.put_nowait(entry)
                delivered += 1
            except asyncio.QueueFull:
                if not sub.overflowed:
                    sub.overflowed = True
                    m.LIVE_OVERFLOWS.inc()
        return delivered

    def resync(self) -> int:
        """Every stream catches up from the store (the tail may have missed records); returns how many."""
        subs = list(self.subscriptions())
        for sub in subs:
            sub.overflowed = True
            with contextlib.suppress(asyncio.QueueFull):  # a full queue wakes its stream anyway
                sub.queue.put_nowait(RESYNC)
        return len(subs)

    def close(self) -> None:
        """Tell every stream to end (a ``None`` in each queue)."""
        for sub in list(self.subscriptions()):
            with contextlib.suppress(asyncio.QueueFull):
                sub.queue.put_nowait(None)
            if sub.queue.full():
                sub.overflowed = True

    def subscriptions(self) -> Iterator[Subscription]:
        for subs in self._subs.values():
            yield from subs

    @property
    def connections(self) -> int:
        return sum(len(s) for s in self._subs.values())


class NotificationTail:
    """A group-less consumer of the notifications topic feeding a :class:`LiveHub` (one per replica)."""

    def __init__(self, settings: KafkaSettings, topic: str, hub: LiveHub) -> None:
        self.settings = settings
        self.spec = NOTIFICATIONS_SENT.renamed(topic)
        self.hub = hub
        self.connected = False
        self.last_error: str | None = None
        self.records = 0
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._ready = asyncio.Event()

    async def start(self) -> None:
        if self._task is None or self._task.done():
            self._stop.clear()
            self._task = asyncio.create_task(self._run(), name="notifier:live-tail")

    async def wait_ready(self, timeout: float = 30.0) -> None:
        await asyncio.wait_for(self._ready.wait(), timeout)

    async def stop(self) -> None:
        self._stop.set()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.connected = False

    async def check(self) -> None:
        """Readiness: the tail is connected and reading."""
        if not self.connected:
            raise RuntimeError(f"live tail not connected: {self.last_error or 'starting'}")

    def status(self) -> dict[str, Any]:
        return {
            "topic": self.spec.name,
            "connected": self.connected,
            "records": self.records,
            "connections": self.hub.connections,
            "last_error": self.last_error,
        }

    async def _run(self) -> None:
        # the same delays as before (1, 2, 4, 8, then 10 s at most), jittered; cut short by stop()
        backoff = Backoff(1.0, 10.0, stop=self._stop)
        while not self._stop.is_set():
            # it seeks to the end itself; "latest" (aiokafka's default) only if a position falls off the log
            consumer = new_reader(self.settings, fetch_max_wait_ms=100, auto_offset_reset="latest")
            try:
                if self.settings.kafka_auto_create_topics:
                    await ensure_topics(self.settings, [self.spec.name])
                await consumer.start()
                parts = await self._partitions(consumer)
                tps = [TopicPartition(self.spec.name, p) for p in sorted(parts)]
                consumer.assign(tps)
                await consumer.seek_to_end(*tps)
                for tp in tps:  # resolve the positions now, so nothing published from here on is skipped
                    await consumer.position(tp)
                self.connected = True
                self.last_error = None
                self._ready.set()
                backoff.reset()
                # what was published before this position (while no tail was reading) is in the store:
                # every open stream catches up from there before it takes the next live item
                resynced = self.hub.resync()
                log.info("live tail started", topic=self.spec.name, partitions=len(tps), resynced=resynced)
                while not self._stop.is_set():
                    batch = await consumer.getmany(timeout_ms=500)
                    for msgs in batch.values():
                        for msg in msgs:
                            self._deliver(msg.value, msg.headers)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.connected = False
                self.last_error = repr(exc)[:300]
                delay = backoff.failed()
                log.warning(
                    "live tail failed; reconnecting", error=self.last_error, retry_in_s=round(delay, 2)
                )
                await backoff.sleep(delay)
            finally:
                self.connected = False
                with contextlib.suppress(Exception):
                    await consumer.stop()

    async def _partitions(self, consumer: AIOKafkaConsumer) -> set[int]:
        for _ in range(50):
            await consumer.topics()
            parts = consumer.partitions_for_topic(self.spec.name)
            if parts:
                return set(parts)
            await asyncio.sleep(0.2)
        raise RuntimeError(f"topic {self.spec.name!r} has no partitions")

    def _deliver(self, raw: bytes | None, headers: Sequence[tuple[str, bytes]] | None = None) -> None:
        self.records += 1
        try:
            event = decode(self.spec, raw)
        except EventDecodeError as exc:
            m.TAIL_RECORDS.labels(outcome="invalid").inc()
            log.warning("live tail skipped an invalid record", reason=exc.reason)
            return
        delivered = self.hub.publish(LiveItem(public_from_event(event), source_from_headers(headers)))
        m.TAIL_RECORDS.labels(outcome="delivered" if delivered else "no_listener").inc()
