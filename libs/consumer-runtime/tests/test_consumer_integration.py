"""The consume loop against the real local Kafka-protocol broker.

The sink here is the test's own recorder (the datastore is not what is under test); every other part —
fetching, committing, rebalancing, dead-lettering — is the real broker and the real client.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from consumer_runtime import (
    ConsumerRunner,
    Failure,
    KafkaSettings,
    PermanentError,
    Record,
    State,
    decode_headers,
)
from consumer_runtime.testing import KafkaNames, fast_settings, produce, read_all, wait_until
from consumer_runtime.topics import ensure_topics
from platform_events import TOPICS

pytestmark = pytest.mark.integration

LOG_SPEC = TOPICS["log-events"]


def log_event(i: int, **extra: Any) -> bytes:
    body = {"event_id": f"e-{i}", "timestamp": "2026-11-23T10:00:00Z", "service": "svc", **extra}
    return json.dumps(body, ensure_ascii=False).encode()


class RecordingSink:
    """Remembers what it stored, keyed like an idempotent store would be; can be told to fail."""

    def __init__(self) -> None:
        self.stored: dict[str, Record[Any]] = {}
        self.writes = 0
        self.fail_next = 0
        self.block: asyncio.Event | None = None
        self.poison: set[str] = set()

    async def write(self, records: Sequence[Record[Any]]) -> Sequence[Failure]:
        self.writes += 1
        if self.fail_next > 0:
            self.fail_next -= 1
            raise ConnectionError("datastore unavailable (test)")
        if any(r.value.event_id in self.poison for r in records):
            raise PermanentError("row rejected by the datastore (test)")
        for r in records:
            self.stored[r.value.event_id] = r
        if self.block is not None:
            await self.block.wait()
        return []

    async def ping(self) -> None:
        return None


@pytest.fixture
async def make_runner(kafka_bootstrap: str, kafka_names: KafkaNames) -> AsyncIterator[Any]:
    runners: list[ConsumerRunner] = []
    settings = fast_settings(kafka_bootstrap, kafka_names.group)
    await ensure_topics(settings, [kafka_names.topic, kafka_names.dlq])

    def make(sink: RecordingSink, **kw: Any) -> ConsumerRunner:
        kw.setdefault("group_id", kafka_names.group)
        runner = ConsumerRunner(
            name="test", settings=settings, topics=[LOG_SPEC.renamed(kafka_names.topic)], sink=sink, **kw
        )
        runners.append(runner)
        return runner

    yield make
    for r in runners:
        await r.close()


async def committed(bootstrap: str, group: str, topic: str) -> int:
    """Sum of the group's committed offsets over the topic's partitions."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        total = 0
        for p in range(3):
            off = await consumer.committed(TopicPartition(topic, p))
            total += off or 0
        return total
    finally:
        await consumer.stop()


async def test_stores_and_commits_after_write(
    make_runner: Any, kafka_bootstrap: str, kafka_names: KafkaNames
) -> None:
    sink = RecordingSink()
    runner = make_runner(sink)
    await runner.start()
    await produce(
        kafka_bootstrap,
        kafka_names.topic,
        [log_event(i) for i in range(50)],
        keys=[f"k{i}".encode() for i in range(50)],
    )
    await wait_until(lambda: len(sink.stored) == 50, what="50 stored")
    await wait_until(
        lambda: (
            runner.counts.stored == 50 and sum((p.committed or 0) for p in runner.status().assignment) == 50
        ),
        what="commit of 50",
    )
    await runner.stop()
    assert await committed(kafka_bootstrap, kafka_names.group, kafka_names.topic) == 50
    assert runner.counts.dead_lettered == 0


async def test_crash_before_commit_redelivers(
    make_runner: Any, kafka_bootstrap: str, kafka_names: KafkaNames
) -> None:
    sink = RecordingSink()
    sink.block = asyncio.Event()  # the write lands, then the process "dies" before committing
    first = make_runner(sink)
    await first.start()
    await produce(kafka_bootstrap, kafka_names.topic, [log_event(i) for i in range(10)])
    await wait_until(lambda: len(sink.stored) == 10, what="first write")
    assert first._task is not None
    first._task.cancel()  # no flush, no commit: what a SIGKILL leaves behind
    with pytest.raises(asyncio.CancelledError):
        await first._task
    assert await committed(kafka_bootstrap, kafka_names.group, kafka_names.topic) == 0

    again = RecordingSink()
    second = make_runner(again)
    await second.start()
    await wait_until(lambda: len(again.stored) == 10, timeout=40, what="redelivery of all 10")
    assert set(again.stored) == set(sink.stored)


async def test_bad_records_go_to_dlq_with_headers(
    make_runner: Any, kafka_bootstrap: str, kafka_names: KafkaNames
) -> None:
    sink = RecordingSink()
    runner = make_runner(sink)
    await runner.start()
    values = [log_event(1), b"{not json", json.dumps({"service": "x"}).encode(), b"[1,2]", log_event(2)]
    sent = await produce(kafka_bootstrap, kafka_names.topic, values, partition=0)
    await wait_until(
        lambda: runner.counts.dead_lettered == 3 and len(sink.stored) == 2, what="3 dead, 2 stored"
    )
    letters = await read_all(kafka_bootstrap, kafka_names.dlq, expect=3)
    letters.sort(key=lambda m: int(decode_headers(m.headers)["dlq.original.offset"]))
    assert [m.value for m in letters] == [values[1], values[2], values[3]]
    headers = [decode_headers(m.headers) for m in letters]
    assert [h["dlq.original.offset"] for h in headers] == [str(sent[i][1]) for i in (1, 2, 3)]
    for h in headers:
        assert h["dlq.original.topic"] == kafka_names.topic
        assert h["dlq.original.partition"] == "0"
        assert h["dlq.error.stage"] == "decode"
        assert h["dlq.consumer.group"] == kafka_names.group
        assert h["dlq.error.class"] == "EventDecodeError"
    assert "event_id" in headers[1]["dlq.error.message"]
    await wait_until(lambda: runner.status().lag == 0, what="everything committed")


async def test_transient_failure_is_retried_then_stored(
    make_runner: Any, kafka_bootstrap: str, kafka_names: KafkaNames
) -> None:
    sink = RecordingSink()
    sink.fail_next = 3
    runner = make_runner(sink)
    await runner.start()
    await produce(kafka_bootstrap, kafka_names.topic, [log_event(i) for i in range(20)])
    await wait_until(lambda: len(sink.stored) == 20, what="stored after retries")
    assert runner.counts.retries == 3
    assert runner.last_error is not None
    assert runner.last_error.error_class == "ConnectionError"
    await wait_until(lambda: runner.state == State.RUNNING, what="running again")
    runner.check_progress()  # healthy again
    # the error is kept, with when it happened and when the consumer recovered from it (the next success)
    error = runner.status().last_error
    assert error is not None
    assert error.recovered_at is not None
    assert error.at <= error.recovered_at


async def test_permanent_error_is_bisected_to_the_bad_record(
    make_runner: Any, kafka_bootstrap: str, kafka_names: KafkaNames
) -> None:
    sink = RecordingSink()
    sink.poison = {"e-7"}
    runner = make_runner(sink, batch_size=16, batch_timeout_ms=2000)
    await runner.start()
    await produce(kafka_bootstrap, kafka_names.topic, [log_event(i) for i in range(16)], partition=1)
    await wait_until(lambda: runner.counts.dead_lettered == 1, what="one dead letter")
    assert set(sink.stored) == {f"e-{i}" for i in range(16)} - {"e-7"}
    [letter] = await read_all(kafka_bootstrap, kafka_names.dlq, expect=1)
    assert decode_headers(letter.headers)["dlq.error.stage"] == "sink"
    assert json.loads(letter.value)["event_id"] == "e-7"


async def test_stop_flushes_what_is_buffered(
    make_runner: Any, kafka_bootstrap: str, kafka_names: KafkaNames
) -> None:
    sink = RecordingSink()
    runner = make_runner(sink, batch_size=1000, batch_timeout_ms=600_000)  # would never flush by itself
    await runner.start()
    await produce(kafka_bootstrap, kafka_names.topic, [log_event(i) for i in range(7)])
    await wait_until(lambda: runner.status().buffered == 7, what="7 buffered")
    assert sink.stored == {}
    await runner.stop()
    assert len(sink.stored) == 7
    assert await committed(kafka_bootstrap, kafka_names.group, kafka_names.topic) == 7


async def test_pause_and_resume(make_runner: Any, kafka_bootstrap: str, kafka_names: KafkaNames) -> None:
    sink = RecordingSink()
    runner = make_runner(sink)
    await runner.start()
    await wait_until(lambda: runner.status().assignment, what="assignment")
    await runner.pause()
    assert runner.status().state == "paused"
    await produce(kafka_bootstrap, kafka_names.topic, [log_event(i) for i in range(5)])
    await asyncio.sleep(1.0)  # a paused member must not fetch; give it every chance to
    assert runner.counts.consumed == 0
    await runner.resume()
    await wait_until(lambda: len(sink.stored) == 5, what="stored after resume")
    assert runner.status().state == "running"


async def test_two_members_split_partitions(
    make_runner: Any, kafka_bootstrap: str, kafka_names: KafkaNames
) -> None:
    a, b = RecordingSink(), RecordingSink()
    ra, rb = make_runner(a), make_runner(b)
    await ra.start()
    await rb.start()

    def split() -> bool:
        pa = {(p.topic, p.partition) for p in ra.status().assignment}
        pb = {(p.topic, p.partition) for p in rb.status().assignment}
        return bool(pa) and bool(pb) and not (pa & pb) and len(pa | pb) == 3

    await wait_until(split, timeout=40, what="partitions split across two members")
    await produce(
        kafka_bootstrap,
        kafka_names.topic,
        [log_event(i) for i in range(300)],
        keys=[f"key-{i}".encode() for i in range(300)],
    )
    await wait_until(lambda: len(a.stored) + len(b.stored) >= 300, timeout=40, what="300 stored")
    assert a.stored
    assert b.stored
    assert not set(a.stored) & set(b.stored)
    assert set(a.stored) | set(b.stored) == {f"e-{i}" for i in range(300)}


async def test_two_groups_each_receive_everything(
    make_runner: Any, kafka_bootstrap: str, kafka_names: KafkaNames
) -> None:
    a, b = RecordingSink(), RecordingSink()
    ra = make_runner(a)
    rb = make_runner(b, group_id=kafka_names.group + "-other")
    await ra.start()
    await rb.start()
    await produce(kafka_bootstrap, kafka_names.topic, [log_event(i) for i in range(40)])
    await wait_until(
        lambda: len(a.stored) == 40 and len(b.stored) == 40, timeout=40, what="both groups got 40"
    )


async def test_disabled_consumer_does_not_start(kafka_bootstrap: str, kafka_names: KafkaNames) -> None:
    settings = fast_settings(kafka_bootstrap, kafka_names.group, kafka_enabled=False)
    runner = ConsumerRunner(
        name="off", settings=settings, topics=[LOG_SPEC.renamed(kafka_names.topic)], sink=RecordingSink()
    )
    await runner.start()
    assert runner.state == State.DISABLED
    assert runner._task is None
    await runner.check_kafka()  # disabled is not a readiness failure
    await runner.close()


async def test_overlapping_restarts_leave_one_loop(
    make_runner: Any, kafka_bootstrap: str, kafka_names: KafkaNames
) -> None:
    """An operator's restart and the control topic's restart may arrive together: still one member."""
    sink = RecordingSink()
    runner = make_runner(sink)
    await runner.start()
    await wait_until(lambda: runner.status().assignment, what="assignment")
    await asyncio.gather(runner.restart(), runner.restart(), runner.start())
    loops = [t for t in asyncio.all_tasks() if t.get_name() == "consumer:test" and not t.done()]
    assert len(loops) == 1
    await produce(kafka_bootstrap, kafka_names.topic, [log_event(i) for i in range(10)])
    await wait_until(lambda: len(sink.stored) == 10, timeout=40, what="stored after restarts")
    assert {p.partition for p in runner.status().assignment} == {0, 1, 2}


async def test_a_topic_with_another_partition_count_is_reported(kafka_bootstrap: str) -> None:
    """A topic that exists with another partition count than KAFKA_TOPIC_PARTITIONS (e.g. auto-created by a
    stray producer with the broker's default) is reported by ensure_topics, not silently accepted."""
    from consumer_runtime.kafka_clients import start_admin
    from consumer_runtime.testing import delete_topics
    from consumer_runtime.topics import _report_partition_counts, ensure_topics

    name = f"p22b-stray-{uuid.uuid4().hex[:8]}"
    settings = KafkaSettings(kafka_bootstrap_servers=kafka_bootstrap, kafka_topic_partitions=3)
    try:
        assert await ensure_topics(settings, [name], partitions=1) == [name]
        admin = await start_admin(settings, request_timeout_ms=15_000)
        try:
            assert await _report_partition_counts(admin, [name], settings, None) == {name: 1}
            assert await _report_partition_counts(admin, [name], settings, 1) == {}
        finally:
            await admin.close()
    finally:
        await delete_topics(kafka_bootstrap, [name])
