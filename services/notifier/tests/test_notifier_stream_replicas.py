"""Live streams with two notifier replicas in one consumer group and a client that keeps reconnecting.

The client behaves like a browser ``EventSource``: it remembers the last ``id`` it saw (an id-only message
too), reconnects with it as ``Last-Event-ID`` — each time to the other replica, as a load balancer may —
and drops connections at random: after a few notifications, or when nothing came for a moment (so some
drops fall in the middle of a catch-up). Replica A's clock runs 2 s behind B's: a resume by either
replica's clock (the earlier ``seq`` cursor) loses or repeats notifications here; a resume by the message
events' positions must not. Every notification of the user is counted by ``notification_id``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections import Counter
from typing import Any

import httpx
import pytest
from consumer_runtime.testing import produce, wait_until
from platform_events import encode, notification_id_for

from .conftest import Service, message, uid

pytestmark = pytest.mark.integration

PARTITIONS = 3
BURSTS = 8
PER_PARTITION = 2  # messages per partition and burst: 8 × 3 × 2 = 48 notifications for the user
SKEW_NS = 2_000_000_000


class EventSourceClient:
    """Reconnects with the last id it saw; records every notification it received, in order."""

    def __init__(self, user: str, seed: int) -> None:
        self.user = user
        self.rnd = random.Random(seed)
        self.last_id: str | None = None
        self.received: list[str] = []
        self.connections = 0
        self.ids_seen: list[str] = []

    async def session(self, svc: Service, *, max_events: int, idle_s: float) -> None:
        """One connection: until ``max_events`` notifications arrived or none came for ``idle_s``."""
        headers = {"Last-Event-ID": self.last_id} if self.last_id else {}
        got = 0
        async with svc.http.stream(
            "GET", f"/notifications/{self.user}/stream", headers=headers, timeout=httpx.Timeout(10, read=None)
        ) as resp:
            resp.raise_for_status()
            self.connections += 1
            lines = resp.aiter_lines()
            block: dict[str, str] = {}
            while got < max_events:
                try:
                    line = await asyncio.wait_for(anext(lines), idle_s)
                except (TimeoutError, StopAsyncIteration):
                    return
                if line.startswith(":"):
                    continue
                if line:
                    name, _, value = line.partition(":")
                    block[name] = value.removeprefix(" ")
                    continue
                # a blank line dispatches the block: the id counts even without data (EventSource rules)
                if "id" in block:
                    self.last_id = block["id"]
                    self.ids_seen.append(block["id"])
                if block.get("event") == "notification":
                    data = json.loads(block["data"])
                    assert data["user_id"] == self.user
                    self.received.append(data["notification_id"])
                    got += 1
                block = {}

    async def run(self, replicas: list[Service], stop: asyncio.Event) -> None:
        turn = 0
        while not stop.is_set():
            svc = replicas[turn % len(replicas)]
            turn += 1
            await self.session(svc, max_events=self.rnd.randint(1, 4), idle_s=self.rnd.uniform(0.05, 0.25))


async def assignment(svc: Service) -> set[int]:
    status = (await svc.http.get("/consumer/status")).json()
    return {p["partition"] for p in status["assignment"]} if status["state"] == "running" else set()


async def test_two_replicas_and_a_reconnecting_client_get_every_notification_exactly_once(
    start_service: Any,
) -> None:
    a: Service = await start_service()
    b: Service = await start_service()  # same topic, same group: the partitions are split between them
    a.app.state.runner.sink.clock_ns = lambda: time.time_ns() - SKEW_NS  # A's clock is behind B's

    async def split() -> bool:
        pa, pb = await assignment(a), await assignment(b)
        return bool(pa and pb and not pa & pb and pa | pb == set(range(PARTITIONS)))

    await wait_until(split, timeout=30, interval=0.1, what="both replicas own partitions")

    user, other = uid("u"), uid("other")
    client = EventSourceClient(user, seed=18)
    stop = asyncio.Event()
    reader = asyncio.create_task(client.run([a, b], stop))
    expected: list[str] = []
    started = time.monotonic()
    try:
        await wait_until(lambda: client.connections > 0, timeout=10, what="the first connection")
        for burst in range(BURSTS):
            connections = client.connections
            for partition in range(PARTITIONS):
                events = [
                    message([user, other] if i % 2 else [user], channel=f"ch_{partition}")
                    for i in range(PER_PARTITION)
                ]
                await produce(
                    a.settings.kafka_bootstrap_servers,
                    a.settings.kafka_topic_messages_created,
                    [encode(e) for e in events],
                    partition=partition,
                )
                expected += [notification_id_for(e.event_id, user) for e in events]
            # the next burst only after the client reconnected twice: production and reconnects interleave
            await wait_until(
                lambda c=connections: client.connections >= c + 2 or reader.done(),
                timeout=15,
                what=f"reconnects after burst {burst}",
            )
            if reader.done():
                reader.result()

        stored = await a.wait_count(user, len(expected))
        assert sorted(n["notification_id"] for n in stored) == sorted(expected)
        with contextlib.suppress(AssertionError):  # on a timeout the assertions below say what is wrong
            await wait_until(
                lambda: set(client.received) >= set(expected) or reader.done(),
                timeout=15,
                what="every notification on the stream",
            )
        stop.set()
        await asyncio.wait_for(reader, 10)
    finally:
        stop.set()
        if not reader.done():
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
    elapsed = time.monotonic() - started

    def check() -> Counter[str]:
        counts = Counter(client.received)
        repeated = {n: c for n, c in counts.items() if c > 1}
        missing = set(expected) - set(counts)
        print(
            f"{len(expected)} notifications, {client.connections} connections, {elapsed:.1f} s; "
            f"missing {len(missing)}, repeated {len(repeated)}; "
            f"A stored {a.app.state.runner.counts.stored} / B {b.app.state.runner.counts.stored} events"
        )
        assert not missing, f"{len(missing)} of {len(expected)} never delivered"
        assert not repeated, f"{len(repeated)} delivered more than once: {repeated}"
        return counts

    check()
    # a last connection: nothing is sent again before a new notification (in the last partition, so a
    # catch-up would send it after anything repeated from the others)
    last = message([user], channel="ch_last")
    final = asyncio.create_task(client.session(b, max_events=1, idle_s=15))
    await wait_until(lambda: b.hub.connections > 0, timeout=10, what="reconnected")
    await produce(
        b.settings.kafka_bootstrap_servers,
        b.settings.kafka_topic_messages_created,
        [encode(last)],
        partition=PARTITIONS - 1,
    )
    await asyncio.wait_for(final, 20)
    counts = check()
    assert client.received[-1] == notification_id_for(last.event_id, user)
    assert set(counts) == {*expected, client.received[-1]}
    assert client.connections >= 2 * BURSTS
    assert client.ids_seen[0].startswith("c1")  # the first connection's cursor, before any notification
    assert a.app.state.runner.counts.stored > 0
    assert b.app.state.runner.counts.stored > 0
