"""Broker restart: every consumer recovers by itself (a private Tansu of the test's own, on its own port).

Two variants:
- durable storage (Tansu ``s3://`` against a private moto S3 server, ``start_private("kafka",
  storage="s3")``): events acknowledged before the restart and committed offsets survive it. The broker is
  stopped while events still flow and the sinks are still storing; afterwards each sink has stored every
  event exactly once (count + key set), and each one's ``/readyz`` is 200 again without any operator action.
  Size: ``fault_events`` (2 000 in ``make test``), capped at ``DURABLE_MAX_EVENTS`` (the S3 stand-in is
  slower than memory, docs/local-servers.md).
- memory storage: the restarted broker is empty, so this variant proves only the self-recovery: without
  any operator action each sink reconnects and is ready, running and assigned again. Storage after the
  restart is not asserted: an empty broker has lost the topics and hands out offsets 0, 1, ... again, below
  the positions the consumers had reached, which no real (durable) broker does.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from e2e_harness import SINKS, Stack, eventually, produce, shared_endpoints
from faults_lib import CHECKS, SINK_TOPIC, assert_exactly_once, event_for, expected_keys, stored

pytestmark = [pytest.mark.integration, pytest.mark.faults]

DURABLE_MAX_EVENTS = 20_000  # per topic; bounds the -m faults run (100 000) against the S3 stand-in
TOPIC_SINK = {"chatbot-issue-events": "issue-ingestor", "log-events": "log-sink"}  # else: notifier


async def _produce_range(stack: Stack, lo: int, hi: int) -> None:
    for topic in sorted(set(SINK_TOPIC.values())):
        sink = TOPIC_SINK.get(topic, "notifier")
        await produce(stack.ep.kafka, stack.names.topic(topic), [event_for(sink, i) for i in range(lo, hi)])


@pytest.mark.timeout(300)
async def test_broker_restart_consumers_recover_by_themselves(
    make_stack: Callable[..., Stack], tmp_path: Path, heavy: bool
) -> None:
    if not heavy:
        pytest.skip("memory-storage variant: in make test-faults only (make test runs the durable one)")
    from devservers import start_private

    broker = start_private("kafka", data_dir=tmp_path / "broker")
    try:
        ep = shared_endpoints(["mysql", "mongo", "elasticsearch"])
        ep.kafka = broker.address
        stack = make_stack(endpoints=ep, MQ_BATCH_SIZE="200")
        await stack.start(*SINKS)
        await _produce_range(stack, 0, 500)
        for sink in SINKS:
            await eventually(
                lambda sink=sink: _count_at_least(stack, sink, 500), timeout=60, what=f"{sink} before restart"
            )

        broker.stop(timeout=5)  # memory storage: topics, data and offsets are gone
        await asyncio.sleep(3)
        broker.start()
        # nobody touches the services: they must reconnect and re-create their topics themselves
        for sink in SINKS:
            await eventually(
                lambda sink=sink: _ready(stack, sink), timeout=90, interval=1.0, what=f"{sink} ready again"
            )
        # Not asserted (memory storage only): the restarted broker has no topics, and the consumers keep
        # their old assignment without re-creating them (docs/operations.md, "broker lost its state").
    finally:
        broker.stop(timeout=5)


async def _count_at_least(stack: Stack, sink: str, n: int) -> bool:
    count = (await stored(sink, stack)).stored
    return count >= len(expected_keys(sink, n))


async def _ready(stack: Stack, sink: str) -> bool:
    async with httpx.AsyncClient(timeout=5) as c:
        r = await c.get(f"{stack.url(sink)}/readyz")
        st = (await c.get(f"{stack.url(sink)}/consumer/status")).json()
    return r.status_code == 200 and st["state"] == "running" and bool(st["assignment"])


# ------------------------------------------------------------------------------------------ durable storage


class _Feeder:
    """Produces events ``0..n-1`` to every sink topic in paced chunks, through a broker outage: a chunk
    that is not acknowledged is sent again in full once the broker answers (at least once, as any producer
    does; the sinks' idempotent writes turn that into exactly once)."""

    def __init__(self, stack: Stack, n: int, *, chunk: int, pause: float) -> None:
        self.stack, self.n, self.chunk, self.pause = stack, n, chunk, pause
        self.acked = 0  # events 0..acked-1 are acknowledged (acks=all) on every topic
        self.in_flight = (0, 0)  # the chunk being sent
        self.resent_chunks = 0
        self._watch: asyncio.Event | None = None

    async def next_chunk_in_flight(self) -> tuple[int, int]:
        """Wait until the next chunk has been handed to the producer (not yet acknowledged)."""
        self._watch = asyncio.Event()
        await self._watch.wait()
        return self.in_flight

    async def run(self) -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.stack.ep.kafka, acks="all", linger_ms=5, request_timeout_ms=5000,
            retry_backoff_ms=200, max_batch_size=512 * 1024,
        )  # fmt: skip
        await producer.start()
        try:
            while self.acked < self.n:
                hi = min(self.n, self.acked + self.chunk)
                try:
                    await asyncio.wait_for(self._send(producer, self.acked, hi), 30)
                except (KafkaError, OSError, TimeoutError):
                    self.resent_chunks += 1
                    await asyncio.sleep(0.5)
                    continue
                self.acked = hi
                await asyncio.sleep(self.pause)
        finally:
            await producer.stop()

    async def _send(self, producer: AIOKafkaProducer, lo: int, hi: int) -> None:
        pending = []
        for topic in sorted(set(SINK_TOPIC.values())):
            sink = TOPIC_SINK.get(topic, "notifier")
            for i in range(lo, hi):
                key, value = event_for(sink, i)
                pending.append(await producer.send(self.stack.names.topic(topic), value=value, key=key))
        self.in_flight = (lo, hi)
        if self._watch is not None:
            self._watch.set()
            self._watch = None
        await asyncio.gather(*pending)


async def _counts(stack: Stack) -> dict[str, int]:
    return {sink: (await stored(sink, stack)).stored for sink in SINKS}


async def _readyz(stack: Stack, sink: str) -> int:
    async with httpx.AsyncClient(timeout=5) as c:
        r = await c.get(f"{stack.url(sink)}/readyz")
    if r.status_code != 200:
        with contextlib.suppress(ValueError, KeyError, AttributeError):
            checks = r.json()["checks"]
            _not_ready[sink] = "; ".join(f"{k}: {v}" for k, v in checks.items() if v != "ok")[:200]
    return r.status_code


_not_ready: dict[str, str] = {}  # the last /readyz answer other than 200, per sink (for the report)


@pytest.mark.timeout(150)
async def test_broker_restart_durable_no_loss_each_event_stored_once(
    make_stack: Callable[..., Stack], tmp_path: Path, fault_events: int
) -> None:
    from devservers import start_private

    n = min(fault_events, DURABLE_MAX_EVENTS)
    t0 = time.monotonic()
    broker = start_private("kafka", data_dir=tmp_path / "broker", storage="s3")
    stack: Stack | None = None
    try:
        ep = shared_endpoints(["mysql", "mongo", "elasticsearch"])
        ep.kafka = broker.address
        stack = make_stack(endpoints=ep, MQ_BATCH_SIZE="200")
        await stack.start(*SINKS)
        feeder = _Feeder(stack, n, chunk=max(25, n // 40), pause=0.15)  # >= 6 s of events flowing
        feeding = asyncio.create_task(feeder.run())

        # Stop the broker mid-stream: a quarter of the events acknowledged, every sink storing them, and
        # the next chunk handed to the producer but not acknowledged yet.
        async def mid_stream() -> bool:
            if feeding.done():
                feeding.result()  # a feeder error fails the test here
                raise AssertionError("the feeder finished before the sinks stored anything: raise n")
            return feeder.acked >= n // 4 and min((await _counts(stack)).values()) > 0

        await eventually(mid_stream, timeout=60, interval=0.2, what="events flowing into every sink")
        in_flight = await asyncio.wait_for(feeder.next_chunk_in_flight(), 10)
        broker.stop(timeout=5)
        acked_at_stop = feeder.acked
        counts_at_stop = await _counts(stack)
        assert acked_at_stop < n
        assert not feeding.done()

        # The outage: the sinks notice it (readiness fails) while the feeder keeps trying.
        down: dict[str, int] = {}
        outage_end = time.monotonic() + 4
        while time.monotonic() < outage_end:
            for sink in SINKS:
                status = await _readyz(stack, sink)
                if status != 200:
                    down.setdefault(sink, status)
            await asyncio.sleep(0.3)
        broker.start()  # same port, same bucket: topics, records and committed offsets are back
        restarted_at = time.monotonic()

        # Nobody touches the services: each one recovers by itself and stores everything exactly once.
        async def ready_again(sink: str) -> float:
            await eventually(
                lambda: _readyz_ok(stack, sink), timeout=60, interval=0.25, what=f"{sink} ready again"
            )
            return round(time.monotonic() - restarted_at, 1)

        readiness = asyncio.gather(*(ready_again(sink) for sink in SINKS))
        await asyncio.wait_for(feeding, 60)  # the rest is produced after the restart
        assert feeder.acked == n
        ready_after = dict(zip(SINKS, await readiness, strict=True))
        not_ready_last = dict(_not_ready)
        for sink in CHECKS:  # the sinks and notifications.sent
            want = expected_keys(sink, n)
            await eventually(
                lambda sink=sink, want=want: _count_is(stack, sink, len(want)),
                timeout=60, interval=0.5, what=f"{sink}: all {len(want)} records stored",
            )  # fmt: skip
            assert_exactly_once(await stored(sink, stack), want)
        for sink in SINKS:
            proc = stack.procs[sink]
            assert proc.alive(), f"{sink} exited: {proc.log_tail()}"
            assert proc.starts == 1  # never restarted by anyone
        print(
            f"\ndurable broker restart: {n} events/topic, stopped with {acked_at_stop} acknowledged and "
            f"{in_flight} in flight (stored then: {counts_at_stop}), readyz down during the outage: {down}, "
            f"{feeder.resent_chunks} chunk(s) resent, ready again (s after the restart): {ready_after} "
            f"(last not-ready answers: {not_ready_last}), total {time.monotonic() - t0:.1f}s"
        )
    finally:
        if stack is not None:
            await stack.close(drop_data=False)  # the sinks stop before their broker (data: fixture)
        broker.close(timeout=5)


async def _readyz_ok(stack: Stack, sink: str) -> bool:
    return await _readyz(stack, sink) == 200


async def _count_is(stack: Stack, sink: str, n: int) -> bool:
    count = (await stored(sink, stack)).stored
    assert count <= n, f"{sink}: {count} stored, more than the {n} expected"
    return count == n
