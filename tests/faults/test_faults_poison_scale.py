"""Bad input and group changes under load.

- 1% poison pills on every sink's topic → all of them in the DLQ with context headers, the rest stored
  exactly once, no stall (the consumers end running with zero lag).
- A consumer scaled 1 → 3 → 1 members while events flow → no loss, no duplicates.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from consumer_runtime.dlq import decode_headers
from e2e_harness import SINKS, Stack, eventually, produce, read_topic
from faults_lib import SINK_TOPIC, assert_exactly_once, event_for, expected_keys, stored

pytestmark = [pytest.mark.integration, pytest.mark.faults]

POISON_KINDS: dict[str, list[bytes]] = {
    "chatbot-issue-events": [
        b"{not json",
        json.dumps({"issue": "X", "processType": "장애접수", "modeType": "로봇", "modeLogId": "L"}).encode(),
        json.dumps({"issue": "X", "processType": "장애접수"}, ensure_ascii=False).encode(),
        b"\xff\xfe\x00",
    ],
    "log-events": [
        b"[1, 2, 3]",
        json.dumps({"service": "s", "timestamp": "2025-01-01T00:00:00Z"}).encode(),
        json.dumps({"event_id": "e", "service": "s", "timestamp": "어제"}, ensure_ascii=False).encode(),
        b"",
    ],
    "platform.messages.created": [
        b"{{{{",
        json.dumps(
            {"event_type": "message.exploded", "event_id": "e", "timestamp": 1, "payload": {}}
        ).encode(),
        json.dumps({"event_type": "message.created", "event_id": "e", "timestamp": 1}).encode(),
        b"\x00\x01",
    ],
}


def _sink_for(topic: str) -> str:
    return {"chatbot-issue-events": "issue-ingestor", "log-events": "log-sink"}.get(topic, "notifier")


@pytest.mark.timeout(600)
async def test_poison_pills_go_to_dlq_with_headers_rest_stored(
    make_stack: Callable[..., Stack], fault_events: int
) -> None:
    n = min(fault_events, 20_000)
    stack = make_stack(MQ_BATCH_SIZE="200")
    await stack.start(*SINKS)
    poison_at = set(range(50, n, 100))  # 1 %
    topics = sorted(set(SINK_TOPIC.values()))
    for topic in topics:
        records: list[tuple[bytes | None, bytes]] = []
        for i in range(n):
            if i in poison_at:
                kinds = POISON_KINDS[topic]
                records.append((f"poison-{i}".encode(), kinds[i % len(kinds)]))
            else:
                records.append(event_for(_sink_for(topic), i))
        await produce(stack.ep.kafka, stack.names.topic(topic), records)

    for sink in SINKS:
        expected = expected_keys(sink, n, skip=poison_at)

        async def done(sink: str = sink, expected: set[str] = expected) -> bool:
            count = (await stored(sink, stack)).stored
            return count >= len(expected)

        await eventually(done, timeout=120 + n / 300, interval=1.0, what=f"{sink} stored the good events")
        assert_exactly_once(await stored(sink, stack), expected)
    sent = expected_keys("notifier", n, skip=poison_at)
    assert_exactly_once(await stored("notifier.sent", stack), sent)  # published once per stored notification

    want_keys = {f"poison-{i}" for i in poison_at}
    for topic in topics:
        groups = {stack.names.group(s) for s in SINKS if SINK_TOPIC[s] == topic}
        dlq = stack.names.dlq(topic)
        letters = await read_topic(stack.ep.kafka, dlq, expect=len(poison_at) * len(groups), timeout=60)
        for group in groups:
            mine = [r for r in letters if decode_headers(r.headers).get("dlq.consumer.group") == group]
            got = [(r.key or b"").decode() for r in mine]
            assert sorted(got) == sorted(want_keys), (
                f"{group}: {len(got)} dead letters, want {len(want_keys)}"
            )
            for r in mine:
                h = decode_headers(r.headers)
                assert h["dlq.original.topic"] == stack.names.topic(topic)
                assert int(h["dlq.original.offset"]) >= 0
                assert h["dlq.original.partition"].isdigit()
                assert all(h[k] for k in ("dlq.error.class", "dlq.error.message", "dlq.error.stage")), h
                i = int((r.key or b"0").decode().split("-")[1])
                kinds = POISON_KINDS[topic]
                assert (r.value or b"") == kinds[i % len(kinds)], "the dead letter is not the original bytes"

    async with httpx.AsyncClient(timeout=5) as c:  # no stall: running, nothing left behind
        for sink in SINKS:
            st = (await c.get(f"{stack.url(sink)}/consumer/status")).json()
            assert (st["state"], st["lag"], st["buffered"]) == ("running", 0, 0), st
            assert st["counts"]["dead_lettered"] == len(poison_at), st["counts"]


@pytest.mark.timeout(600)
async def test_scale_one_to_three_to_one_mid_stream(
    make_stack: Callable[..., Stack], fault_events: int
) -> None:
    sink = "issue-ingestor"
    n = max(fault_events, 3000)
    stack = make_stack(MQ_BATCH_SIZE="200")
    await stack.start(sink)
    topic = stack.names.topic(SINK_TOPIC[sink])
    chunks = 30

    async def flow() -> None:
        step = max(1, n // chunks)
        for start in range(0, n, step):
            await produce(
                stack.ep.kafka, topic, [event_for(sink, i) for i in range(start, min(n, start + step))]
            )
            await asyncio.sleep(0.5)

    producing = asyncio.create_task(flow())
    await asyncio.sleep(2)
    await stack.start(sink, instance="2")
    await stack.start(sink, instance="3")

    async def three_way() -> list[Any] | None:
        async with httpx.AsyncClient(timeout=5) as c:
            owned = [
                len((await c.get(f"{stack.url(sink, i)}/consumer/status")).json()["assignment"])
                for i in ("", "2", "3")
            ]
        return owned if owned == [1, 1, 1] else None

    await eventually(three_way, timeout=60, interval=0.5, what="3 members own one partition each")
    await asyncio.sleep(2)
    rcs = await asyncio.gather(
        asyncio.to_thread(stack.terminate, sink, "2"), asyncio.to_thread(stack.terminate, sink, "3")
    )
    assert all(rc is not None for rc in rcs), "a scaled-down member did not stop gracefully"

    async def back_to_one() -> bool:
        async with httpx.AsyncClient(timeout=5) as c:
            st = (await c.get(f"{stack.url(sink)}/consumer/status")).json()
        return len(st["assignment"]) == 3

    await eventually(back_to_one, timeout=60, interval=0.5, what="the remaining member owns all partitions")
    await producing

    async def done() -> bool:
        count = (await stored(sink, stack)).stored
        return count >= n

    await eventually(done, timeout=120, interval=1.0, what=f"all {n} events stored after 1→3→1")
    await asyncio.sleep(2)
    assert_exactly_once(await stored(sink, stack), expected_keys(sink, n))
