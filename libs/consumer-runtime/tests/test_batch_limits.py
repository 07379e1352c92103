"""Adaptive batches (``core.BatchLimits``): the pure decision, a simulated backlog, the real runner on fakes.

Caught up, a batch is written at ``MQ_BATCH_SIZE`` records or ``MQ_BATCH_TIMEOUT_MS`` (the rule before
adaptive batches, unchanged); behind, it grows to ``MQ_MAX_BATCH`` records while under ``MQ_MAX_BATCH_BYTES``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

from aiokafka import TopicPartition
from consumer_runtime import ConsumerRunner
from consumer_runtime.core import BatchLimits, Failure, Record
from consumer_runtime.fakes import FakeCluster, FakeConsumer, FakeDeadLetters, FakeSink
from consumer_runtime.testing import fast_settings
from hypothesis import given
from hypothesis import strategies as st
from platform_events import TOPICS

limits_st = st.builds(
    BatchLimits,
    size=st.integers(1, 200),
    timeout_s=st.floats(0.001, 5.0),
    max_records=st.integers(1, 2000),
    max_bytes=st.integers(1, 10**7),
    max_fetch=st.one_of(st.none(), st.integers(1, 1000)),
)


def old_rule(limits: BatchLimits, buffered: int, age_s: float | None) -> bool:
    """The flush rule before adaptive batches: MQ_BATCH_SIZE records or MQ_BATCH_TIMEOUT_MS."""
    return buffered > 0 and (buffered >= limits.size or (age_s is not None and age_s >= limits.timeout_s))


@given(limits_st, st.data())
def test_caught_up_keeps_the_latency_rule(limits: BatchLimits, data: st.DataObject) -> None:
    buffered = data.draw(st.integers(0, limits.size))
    size_bytes = data.draw(st.integers(0, 10**8))
    age = data.draw(st.one_of(st.none(), st.floats(0, 10)))
    assert limits.due(buffered, size_bytes, age_s=age, behind=False) == old_rule(limits, buffered, age)
    room = limits.room(buffered, size_bytes, behind=False)
    assert buffered + room <= limits.size  # caught up, a fetch never takes more than one batch


@given(limits_st, st.data())
def test_the_buffer_never_passes_the_cap(limits: BatchLimits, data: st.DataObject) -> None:
    buffered = data.draw(st.integers(0, limits.cap))
    size_bytes = data.draw(st.integers(0, 10**8))
    behind = data.draw(st.booleans())
    room = limits.room(buffered, size_bytes, behind=behind)
    assert room >= 0
    assert buffered + room <= limits.cap
    if limits.max_fetch is not None:
        assert room <= limits.max_fetch
    if buffered >= limits.cap:
        assert room == 0
        assert limits.due(buffered, size_bytes, age_s=None, behind=behind)
    if size_bytes >= limits.max_bytes:  # over the byte bound nothing grows past one batch
        assert buffered + room <= max(buffered, limits.size)


@given(limits_st, st.data())
def test_growth_stays_under_the_byte_bound(limits: BatchLimits, data: st.DataObject) -> None:
    """Records of one size: a batch grown past ``size`` holds no more bytes than ``max_bytes``."""
    per_record = data.draw(st.integers(0, 100_000))
    buffered = data.draw(st.integers(1, limits.cap))
    if buffered * per_record >= limits.max_bytes:
        return
    room = limits.room(buffered, buffered * per_record, behind=True)
    if buffered + room > limits.size:
        assert (buffered + room) * per_record <= limits.max_bytes


@given(limits_st, st.data())
def test_behind_grows_the_batch_until_a_bound(limits: BatchLimits, data: st.DataObject) -> None:
    buffered = data.draw(st.integers(1, limits.cap))
    size_bytes = data.draw(st.integers(0, 10**8))
    age = data.draw(st.one_of(st.none(), st.floats(0, 10)))
    due = limits.due(buffered, size_bytes, age_s=age, behind=True)
    bound = buffered >= limits.cap or (buffered >= limits.size and size_bytes >= limits.max_bytes)
    old = age is not None and age >= limits.timeout_s
    assert due == (bound or old)
    # the timer bounds a batch's age whatever the backlog
    assert limits.due(buffered, size_bytes, age_s=limits.timeout_s, behind=True)


@given(limits_st, st.data())
def test_max_batch_at_or_below_size_turns_growth_off(limits: BatchLimits, data: st.DataObject) -> None:
    off = BatchLimits(limits.size, limits.timeout_s, data.draw(st.integers(1, limits.size)), limits.max_bytes)
    buffered = data.draw(st.integers(0, limits.size))
    age = data.draw(st.one_of(st.none(), st.floats(0, 10)))
    for behind in (True, False):
        assert off.due(buffered, 0, age_s=age, behind=behind) == old_rule(off, buffered, age)
        assert off.room(buffered, 0, behind=behind) == limits.size - buffered


@given(limits_st, st.integers(0, 1000), st.integers(1, 1000), st.one_of(st.none(), st.integers(0, 10**6)))
def test_behind_needs_records_and_a_batch_waiting(
    limits: BatchLimits, fetched: int, room: int, lag: int | None
) -> None:
    behind = limits.behind(fetched, room, lag)
    if fetched == 0:
        assert not behind  # an empty fetch never holds a batch back
    elif lag is not None:
        assert behind == (lag >= limits.size)  # a lag under one batch (a steady rate) is caught up
    else:
        assert behind == (fetched >= room)


@given(limits_st, st.integers(0, 1000), st.one_of(st.none(), st.floats(0, 10)))
def test_wait(limits: BatchLimits, buffered: int, age: float | None) -> None:
    wait = limits.wait_s(buffered, age_s=age)
    assert wait >= 0
    if buffered >= limits.size:
        assert wait == 0  # a batch could be written: only records already there are worth waiting for
    elif age is not None:
        assert wait <= max(0.0, limits.timeout_s - age)


@given(
    limits_st,
    st.lists(st.integers(0, 3000), min_size=1, max_size=4),
    st.integers(1, 600),
)
def test_a_simulated_backlog_drains_in_order_in_bounded_batches(
    limits: BatchLimits, backlog: list[int], record_size: int
) -> None:
    """The loop's use of the decision on a backlog that is all there: batches stay within the cap, each
    but the last is at least a batch, and records come out in each partition's order."""
    logs = [[(p, o) for o in range(n)] for p, n in enumerate(backlog)]
    pos = [0] * len(logs)
    buffer: list[tuple[int, int]] = []
    batches: list[list[tuple[int, int]]] = []
    behind = False
    for _ in range(100_000):
        room = limits.room(len(buffer), len(buffer) * record_size, behind=behind)
        fetched = 0
        for p, log in enumerate(logs):  # like getmany: partition by partition up to the room
            take = log[pos[p] : pos[p] + room - fetched]
            buffer += take
            pos[p] += len(take)
            fetched += len(take)
        lag = sum(len(log) - pos[p] for p, log in enumerate(logs))
        behind = limits.behind(fetched, room, lag)
        caught_up = lag == 0 and fetched == 0
        # the clock: an empty fetch with records buffered waits out the batch timeout
        age = limits.timeout_s if caught_up and buffer else 0.0
        if limits.due(len(buffer), len(buffer) * record_size, age_s=age, behind=behind):
            batches.append(buffer)
            buffer = []
        elif caught_up and not buffer:
            break
    assert not buffer
    assert sum(map(len, batches)) == sum(backlog)
    for i, batch in enumerate(batches):
        assert len(batch) <= limits.cap
        if i < len(batches) - 1:
            assert len(batch) >= min(limits.size, limits.max_fetch or limits.size)
    flat = [r for b in batches for r in b]
    for p in range(len(logs)):
        assert [o for q, o in flat if q == p] == list(range(backlog[p]))


# ------------------------------------------------------------------ the runner, on fakes
TOPIC = "adaptive-events"


class BatchRecordingSink(FakeSink):
    def __init__(self) -> None:
        super().__init__()
        self.batches: list[list[tuple[int, int]]] = []

    async def write(self, records: Sequence[Record[Any]], /) -> Sequence[Failure]:
        out = await super().write(records)
        self.batches.append([(r.partition, r.offset) for r in records])
        return out


def eid(i: int) -> str:
    return f"e{i:06d}"  # one width: every record of a backlog weighs the same


def event(i: int) -> bytes:
    return json.dumps({"event_id": eid(i), "timestamp": "2026-11-23T10:00:00Z", "service": "t"}).encode()


async def drain(cluster: FakeCluster, sink: BatchRecordingSink, **overrides: Any) -> ConsumerRunner:
    settings = fast_settings(
        "fake:9092",
        "adaptive",
        kafka_auto_create_topics=False,
        mq_batch_size=50,
        mq_batch_timeout_ms=200,  # the tail of a backlog (less than a batch) waits for the timer
        **overrides,
    )
    runner = ConsumerRunner(
        name="adaptive",
        settings=settings,
        topics=[TOPICS["log-events"].renamed(TOPIC)],
        sink=sink,
        dead_letters=FakeDeadLetters(),
        consumer_factory=lambda: FakeConsumer(cluster),
    )
    await runner.start()
    for _ in range(10_000):
        if all(cluster.committed.get(tp, 0) == cluster.end(tp) for tp in cluster.all_partitions):
            break
        await asyncio.sleep(0.001)
    return runner


def backlog(n_per_partition: int, partitions: int = 3) -> FakeCluster:
    cluster = FakeCluster(TOPIC, partitions)
    n = 0
    for p in range(partitions):
        for _ in range(n_per_partition):
            n += 1
            cluster.produce(p, eid(n).encode(), event(n))
    return cluster


def check_order(sink: BatchRecordingSink, cluster: FakeCluster) -> None:
    flat = [r for b in sink.batches for r in b]
    for tp in cluster.all_partitions:
        assert [o for p, o in flat if p == tp.partition] == list(range(cluster.end(tp)))


async def test_a_backlog_is_written_in_large_batches_in_order() -> None:
    cluster = backlog(1000)
    sink = BatchRecordingSink()
    runner = await drain(cluster, sink, mq_max_batch=400, kafka_max_poll_records=120)
    try:
        assert cluster.committed == {tp: 1000 for tp in cluster.all_partitions}
        sizes = [len(b) for b in sink.batches]
        assert max(sizes) == 400
        assert sum(sizes) == 3000
        assert all(s <= 400 for s in sizes)
        assert sum(s > 50 for s in sizes) >= len(sizes) - 2  # all but the tail are larger than MQ_BATCH_SIZE
        check_order(sink, cluster)
    finally:
        await runner.close()


async def test_the_byte_bound_stops_the_growth() -> None:
    cluster = backlog(400)
    sink = BatchRecordingSink()
    per_record = len(event(1)) + len(eid(1))
    runner = await drain(cluster, sink, mq_max_batch=1000, mq_max_batch_bytes=60 * per_record)
    try:
        sizes = [len(b) for b in sink.batches]
        assert sum(sizes) == 1200
        # grows past MQ_BATCH_SIZE (50) only as far as the byte bound (records of one size here)
        assert all(s <= 60 for s in sizes), sizes
        assert max(sizes) > 50
        check_order(sink, cluster)
    finally:
        await runner.close()


async def test_max_batch_at_batch_size_keeps_the_old_batches() -> None:
    cluster = backlog(200)
    sink = BatchRecordingSink()
    runner = await drain(cluster, sink, mq_max_batch=50)
    try:
        assert all(len(b) == 50 for b in sink.batches)
        check_order(sink, cluster)
    finally:
        await runner.close()


async def test_caught_up_batches_stay_at_batch_size() -> None:
    """Records arriving a few at a time (less than a batch waiting): batches of MQ_BATCH_SIZE, never more."""
    cluster = FakeCluster(TOPIC, 1)
    sink = BatchRecordingSink()
    runner = await drain(cluster, sink, mq_max_batch=1000)
    try:
        for i in range(300):
            cluster.produce(0, eid(i).encode(), event(i))
            polls = cluster.polls
            while cluster.polls < polls + 2:  # noqa: ASYNC110 - the loop fetches it before the next one
                await asyncio.sleep(0)
        for _ in range(5000):
            if cluster.committed.get(TopicPartition(TOPIC, 0), 0) == 300:
                break
            await asyncio.sleep(0.001)
        assert all(len(b) <= 50 for b in sink.batches), [len(b) for b in sink.batches]
        check_order(sink, cluster)
    finally:
        await runner.close()
