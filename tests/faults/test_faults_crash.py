"""Crashes and graceful stops of the sinks while events flow.

- SIGKILL each sink 3x while events flow → afterwards every event stored exactly once (count + key set).
- SIGTERM with a batch still buffered → it is flushed and committed; after a restart nothing is redelivered.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import httpx
import pytest
from e2e_harness import GRACEFUL, SINKS, Stack, committed_offsets, eventually, produce
from faults_lib import CHECKS, SINK_TOPIC, assert_exactly_once, event_for, expected_keys, stored

pytestmark = [pytest.mark.integration, pytest.mark.faults]


async def _produce_all(stack: Stack, n: int, chunks: int = 10, pause: float = 0.5) -> None:
    """Events flow: every sink's topic gets ``n`` events in ``chunks`` spaced ``pause`` s apart."""
    topics = {SINK_TOPIC[s] for s in SINKS}
    step = max(1, n // chunks)
    for start in range(0, n, step):
        part = range(start, min(n, start + step))
        await asyncio.gather(
            *(
                produce(
                    stack.ep.kafka,
                    stack.names.topic(t),
                    [
                        event_for(
                            "issue-ingestor"
                            if t == "chatbot-issue-events"
                            else "log-sink"
                            if t == "log-events"
                            else "notifier",
                            i,
                        )
                        for i in part
                    ],
                )
                for t in topics
            )
        )
        await asyncio.sleep(pause)


async def _drained(stack: Stack, sink: str, n: int) -> bool:
    count = (await stored(sink, stack)).stored
    return count >= len(expected_keys(sink, n))


@pytest.mark.timeout(900)  # 100 000 events per sink under -m faults
async def test_sigkill_each_sink_three_times_stores_every_event_once(
    make_stack: Callable[..., Stack], fault_events: int
) -> None:
    stack = make_stack(MQ_BATCH_SIZE="500")
    await stack.start(*SINKS)
    n = fault_events
    flow = asyncio.create_task(_produce_all(stack, n, chunks=20, pause=max(0.3, min(3.0, n / 20_000))))
    kills: dict[str, int] = dict.fromkeys(SINKS, 0)

    async def crash_loop(sink: str) -> None:
        for _ in range(3):
            await asyncio.sleep(1.5)
            stack.kill(sink)  # SIGKILL: nothing flushed, nothing committed
            kills[sink] += 1
            stack.spawn(sink)
            await stack.wait_ready(sink, timeout=90)

    started = time.monotonic()
    await asyncio.gather(*(crash_loop(s) for s in SINKS))
    await flow
    for sink in SINKS:
        await eventually(
            lambda sink=sink: _drained(stack, sink, n),
            timeout=120 + n / 500,
            interval=1.0,
            what=f"{sink} stored all {n} events after 3 SIGKILLs",
        )
    await asyncio.sleep(2.0)  # late redeliveries would show up now as duplicates
    for sink in CHECKS:  # the sinks and notifications.sent
        assert_exactly_once(await stored(sink, stack), expected_keys(sink, n))
    assert kills == dict.fromkeys(SINKS, 3)
    assert all(stack.procs[s].starts == 4 for s in SINKS)
    print(f"sigkill x3 x{len(SINKS)} sinks, {n} events each: {time.monotonic() - started:.1f}s")


@pytest.mark.timeout(300)
async def test_sigterm_flushes_buffer_and_nothing_is_redelivered(
    make_stack: Callable[..., Stack], fault_events: int
) -> None:
    n = min(fault_events, 5000)
    # A batch waits for 10 minutes or 100 000 events: at SIGTERM everything is still buffered.
    stack = make_stack(MQ_BATCH_SIZE="100000", MQ_BATCH_TIMEOUT_MS="600000", KAFKA_MAX_POLL_RECORDS="5000")
    await stack.start(*SINKS)
    await _produce_all(stack, n, chunks=1, pause=0)

    async def buffered(sink: str) -> bool:
        async with httpx.AsyncClient(timeout=5) as c:
            st = (await c.get(f"{stack.url(sink)}/consumer/status")).json()
        return bool(st["buffered"] >= n)  # records consumed, not yet written

    for sink in SINKS:
        await eventually(lambda sink=sink: buffered(sink), timeout=60, what=f"{sink} buffered {n} events")
        count = (await stored(sink, stack)).stored
        assert count == 0, f"{sink} wrote before its batch was due"

    rcs = await asyncio.gather(*(asyncio.to_thread(stack.terminate, s) for s in SINKS))
    assert all(rc in GRACEFUL for rc in rcs), dict(zip(SINKS, rcs, strict=True))

    assert_exactly_once(await stored("notifier.sent", stack), expected_keys("notifier", n))
    for sink in SINKS:
        assert_exactly_once(await stored(sink, stack), expected_keys(sink, n))  # flushed at SIGTERM
        topic = stack.names.topic(SINK_TOPIC[sink])
        committed = await committed_offsets(stack.ep.kafka, stack.names.group(sink), topic)
        assert sum(committed.values()) == n, f"{sink} committed {committed} of {n} at SIGTERM"

    # restarted: nothing is consumed again
    stack.extra_env.update(MQ_BATCH_SIZE="100", MQ_BATCH_TIMEOUT_MS="200")
    await stack.start(*SINKS)

    async def running(sink: str) -> bool:
        async with httpx.AsyncClient(timeout=5) as c:
            return bool((await c.get(f"{stack.url(sink)}/consumer/status")).json()["state"] == "running")

    for sink in SINKS:  # the group join takes a few seconds on the local broker, longer on a busy machine
        await eventually(lambda sink=sink: running(sink), timeout=60, what=f"{sink} running after restart")
    await asyncio.sleep(2.0)  # a few polls: anything uncommitted would be consumed again by now
    async with httpx.AsyncClient(timeout=5) as c:
        for sink in SINKS:
            st = (await c.get(f"{stack.url(sink)}/consumer/status")).json()
            assert st["state"] == "running", st
            assert st["counts"]["consumed"] == 0, f"{sink} redelivered {st['counts']['consumed']} events"
