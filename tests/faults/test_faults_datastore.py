"""A sink's datastore stops for a while under load (a private server of the test's own, never the shared one).

While it is down the service must report not-ready within 5 s, keep its memory bounded (partitions are paused,
nothing piles up), lose nothing; within 10 s after the datastore is back it is ready again and catches up.
Outage: ``FAULT_OUTAGE_S`` (default 30 s with ``-m faults``, 10 s otherwise).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from e2e_harness import Sampler, Stack, eventually, produce
from faults_lib import SINK_TOPIC, Datastore, assert_exactly_once, event_for, expected_keys, stored

pytestmark = [pytest.mark.integration, pytest.mark.faults]

RATE_PER_S = 500
MEMORY_SLACK_KB = 150 * 1024  # RSS may grow this much over its level before the outage


@pytest.fixture
def outage_s(request: pytest.FixtureRequest) -> float:
    raw = os.environ.get("FAULT_OUTAGE_S", "").strip()
    if raw:
        return float(raw)
    return 30.0 if (request.config.option.markexpr or "").strip() == "faults" else 10.0


async def _ready(url: str) -> int:
    async with httpx.AsyncClient(timeout=4.5) as c:
        try:
            return (await c.get(f"{url}/readyz")).status_code
        except httpx.HTTPError:
            return 0


@pytest.mark.parametrize(
    ("sink", "kind"),
    [("issue-ingestor", "mysql"), ("log-sink", "mongo"), ("search-indexer", "elasticsearch")],
)
@pytest.mark.timeout(300)
async def test_datastore_outage_under_load(
    make_stack: Callable[..., Stack], tmp_path: Path, outage_s: float, sink: str, kind: str
) -> None:
    async with Datastore(kind, tmp_path / f"private-{kind}").running() as store:
        stack = make_stack(endpoints=store.endpoints(), MQ_BATCH_SIZE="200")
        await stack.start(sink)
        url = stack.url(sink)
        topic = stack.names.topic(SINK_TOPIC[sink])
        produced = 0
        stop_flow = asyncio.Event()

        async def flow() -> None:  # steady load until told to stop
            nonlocal produced
            per_tick = RATE_PER_S // 5
            while not stop_flow.is_set():
                await produce(stack.ep.kafka, topic, [event_for(sink, produced + i) for i in range(per_tick)])
                produced += per_tick
                await asyncio.sleep(0.2)

        producing = asyncio.create_task(flow())
        await asyncio.sleep(3)
        proc = stack.procs[sink]
        baseline_kb = max(proc.rss_kb() or 0 for _ in range(1))
        rss = Sampler(lambda: proc.rss_kb() or 0, interval=0.25).start()

        store.stop()
        down_at = time.monotonic()
        await eventually(
            lambda: _is(url, 503),
            timeout=5,
            interval=0.2,
            what=f"{sink} /readyz 503 within 5 s of {kind} stopping",
        )
        not_ready_after = time.monotonic() - down_at
        await asyncio.sleep(max(0.0, outage_s - (time.monotonic() - down_at)))
        assert proc.alive(), f"{sink} died while {kind} was down:\n{proc.log_tail()}"
        await rss.stop()
        peak_kb = max(v for _, v in rss.samples)

        store.start()
        up_at = time.monotonic()
        await eventually(
            lambda: _is(url, 200),
            timeout=10,
            interval=0.2,
            what=f"{sink} ready within 10 s of {kind} returning",
        )
        recovered_after = time.monotonic() - up_at
        await asyncio.sleep(2)
        stop_flow.set()
        await producing
        n = produced

        async def done() -> bool:
            count = (await stored(sink, stack)).stored
            return count >= n

        await eventually(done, timeout=60 + n / 300, interval=1.0, what=f"{sink} stored all {n} events")
        assert_exactly_once(await stored(sink, stack), expected_keys(sink, n))
        assert peak_kb <= baseline_kb + MEMORY_SLACK_KB, (
            f"{sink} RSS grew from {baseline_kb} kB to {peak_kb} kB during the outage"
        )
        print(
            f"{sink}/{kind}: outage {outage_s:.0f}s, not ready after {not_ready_after:.1f}s, ready again "
            f"{recovered_after:.1f}s after return, RSS {baseline_kb // 1024}→{peak_kb // 1024} MB, {n} events"
        )


async def _is(url: str, code: int) -> bool:
    return await _ready(url) == code
