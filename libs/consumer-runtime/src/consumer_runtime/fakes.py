"""In-memory stand-ins for unit tests of the runner's logic (never used by a service).

:class:`FakeCluster` holds partition logs and a group's committed offsets; :class:`FakeConsumer` implements
:class:`~consumer_runtime.runner.ConsumerPort` on it with aiokafka's semantics where the runner relies on
them: an eager rebalance revokes everything, then assigns the cluster's target assignment with positions
reset to the committed offsets and nothing paused; paused partitions return no records; a commit after the
group moved on fails with ``CommitFailedError``; a broker outage fails every call. A rebalance normally
runs inside ``getmany`` (as aiokafka's coordinator does between fetches);
:meth:`FakeCluster.rebalance_concurrently` runs one as a separate task instead, to model a rebalance that
lands while a write is in flight.
:class:`FakeSink` is an idempotent store keyed by event id that can be told to fail, and
:class:`FakeDeadLetters` records dead letters.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, KafkaConnectionError, RequestTimedOutError

from consumer_runtime.core import Failure, PermanentError, Record
from consumer_runtime.dlq import DeadLetter


@dataclass(frozen=True)
class FakeRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int
    headers: Sequence[tuple[str, bytes]] = ()


@dataclass
class FakeCluster:
    """Partition logs, one group's committed offsets, and the switches tests flip."""

    topic: str
    partitions: int
    logs: dict[TopicPartition, list[FakeRecord]] = field(default_factory=dict)
    committed: dict[TopicPartition, int] = field(default_factory=dict)
    up: bool = True
    #: partitions the runner's member gets at the next rebalance (the rest belong to an idle member)
    target: set[TopicPartition] = field(default_factory=set)
    generation: int = 0
    transient_commit_failures: int = 0
    polls: int = 0
    consumers: list[FakeConsumer] = field(default_factory=list)

    def __post_init__(self) -> None:
        for p in range(self.partitions):
            tp = TopicPartition(self.topic, p)
            self.logs.setdefault(tp, [])
        self.target = self.target or set(self.logs)

    @property
    def all_partitions(self) -> list[TopicPartition]:
        return sorted(self.logs)

    def produce(self, partition: int, key: bytes | None, value: bytes, timestamp: int = 0) -> FakeRecord:
        tp = TopicPartition(self.topic, partition)
        log = self.logs[tp]
        rec = FakeRecord(self.topic, partition, len(log), key, value, timestamp or 1_700_000_000_000)
        log.append(rec)
        return rec

    def end(self, tp: TopicPartition) -> int:
        return len(self.logs[tp])

    def rebalance(self, target: set[TopicPartition] | None = None) -> None:
        """A new group generation: members rebalance at their next poll."""
        if target is not None:
            self.target = set(target)
        self.generation += 1

    def live(self) -> FakeConsumer | None:
        alive = [c for c in self.consumers if c.started and not c.closed]
        return alive[-1] if alive else None

    def rebalance_concurrently(self, target: set[TopicPartition] | None = None) -> asyncio.Task[None] | None:
        """Rebalance the live member now, in a task of its own (like aiokafka's coordinator)."""
        self.rebalance(target)
        consumer = self.live()
        if consumer is None:
            return None
        return asyncio.create_task(consumer.rejoin())


class FakeConsumer:
    """One group member on a :class:`FakeCluster` (implements ``ConsumerPort``)."""

    def __init__(self, cluster: FakeCluster) -> None:
        self.cluster = cluster
        self.listener: ConsumerRebalanceListener | None = None
        self.started = False
        self.closed = False
        self.generation = -1
        self.rebalancing = False
        self._assignment: set[TopicPartition] = set()
        self._paused: set[TopicPartition] = set()
        self._positions: dict[TopicPartition, int] = {}
        cluster.consumers.append(self)

    def _check_up(self) -> None:
        if not self.cluster.up:
            raise KafkaConnectionError("fake broker down")

    def subscribe(self, topics: list[str], listener: ConsumerRebalanceListener) -> None:
        self.listener = listener

    async def start(self) -> None:
        await asyncio.sleep(0)
        self._check_up()
        self.started = True

    async def stop(self) -> None:
        await asyncio.sleep(0)
        self.closed = True
        self._assignment = set()

    async def rejoin(self) -> None:
        """Eager rebalance: revoke everything, then take the target with positions from the commits."""
        if self.rebalancing or self.closed:
            return
        self.rebalancing = True
        try:
            generation = self.cluster.generation
            revoked = sorted(self._assignment)
            if self.listener is not None and self.generation >= 0:
                await self.listener.on_partitions_revoked(revoked)
            self._assignment = set(self.cluster.target)
            self._paused = set()
            self._positions = {tp: self.cluster.committed.get(tp, 0) for tp in self._assignment}
            self.generation = generation
            if self.listener is not None:
                await self.listener.on_partitions_assigned(sorted(self._assignment))
        finally:
            self.rebalancing = False

    async def getmany(
        self, *partitions: TopicPartition, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[TopicPartition, list[Any]]:
        self.cluster.polls += 1
        await asyncio.sleep(0)
        self._check_up()
        if self.generation != self.cluster.generation:
            await self.rejoin()
        out: dict[TopicPartition, list[Any]] = {}
        room = max_records if max_records is not None else 10**9
        for tp in sorted(self._assignment - self._paused):
            if room <= 0:
                break
            log = self.cluster.logs[tp]
            pos = self._positions.get(tp, 0)
            msgs = log[pos : pos + room]
            if msgs:
                out[tp] = list(msgs)
                self._positions[tp] = pos + len(msgs)
                room -= len(msgs)
        if not out:
            await asyncio.sleep(min(timeout_ms / 1000, 0.001))
        return out

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        await asyncio.sleep(0)
        self._check_up()
        if self.cluster.transient_commit_failures > 0:
            self.cluster.transient_commit_failures -= 1
            raise RequestTimedOutError("fake commit timed out")
        if self.generation != self.cluster.generation or self.rebalancing:
            raise CommitFailedError("fake group rebalanced")
        for tp, off in offsets.items():
            if tp not in self._assignment:
                raise CommitFailedError(f"{tp} is not assigned")
            self.cluster.committed[tp] = off

    def pause(self, *partitions: TopicPartition) -> None:
        self._paused |= set(partitions) & self._assignment

    def resume(self, *partitions: TopicPartition) -> None:
        self._paused -= set(partitions)

    def paused(self) -> set[TopicPartition]:
        return set(self._paused)

    def assignment(self) -> set[TopicPartition]:
        return set(self._assignment)

    def highwater(self, partition: TopicPartition) -> int | None:
        return self.cluster.end(partition) if partition in self._assignment else None

    async def topics(self) -> set[str]:
        await asyncio.sleep(0)
        self._check_up()
        return {self.cluster.topic}


class FakeSink:
    """An idempotent store keyed by event id. ``down``: every write fails (transient); an event whose id is
    in ``poison`` fails the whole write with :class:`PermanentError` (the runner bisects to it); ``gate``,
    when set, holds every write until it is released (a slow write)."""

    def __init__(self) -> None:
        self.store: dict[str, Any] = {}
        self.inserted = 0
        self.duplicates = 0
        self.down = False
        self.poison: set[str] = set()
        self.gate: asyncio.Event | None = None
        self.fail_after_gate = False
        self.in_write = 0
        self.attempts_while_down = 0
        self.writes: Counter[str] = Counter()

    async def write(self, records: Sequence[Record[Any]], /) -> Sequence[Failure]:
        self.in_write += 1
        try:
            await asyncio.sleep(0)
            if self.gate is not None:
                await self.gate.wait()
                if self.fail_after_gate:
                    raise ConnectionError("fake datastore failed after a slow write")
            if self.down:
                self.attempts_while_down += 1
                raise ConnectionError("fake datastore down")
            ids = [r.value.event_id for r in records]
            if any(i in self.poison for i in ids):
                raise PermanentError("fake poison record")
            for r, i in zip(records, ids, strict=True):
                self.writes[i] += 1
                if i in self.store:
                    self.duplicates += 1
                else:
                    self.inserted += 1
                    self.store[i] = (r.topic, r.partition, r.offset)
            return []
        finally:
            self.in_write -= 1

    async def ping(self) -> None:
        if self.down:
            raise ConnectionError("fake datastore down")


class FakeDeadLetters:
    """Records what was dead-lettered; ``down`` makes publishing fail (transient)."""

    def __init__(self) -> None:
        self.letters: list[DeadLetter] = []
        self.down = False

    async def start(self) -> None:
        return None

    async def publish(self, letters: Sequence[DeadLetter], *, group: str) -> None:
        await asyncio.sleep(0)
        if self.down:
            raise KafkaConnectionError("fake dead-letter topic unreachable")
        self.letters.extend(letters)

    async def close(self) -> None:
        return None
