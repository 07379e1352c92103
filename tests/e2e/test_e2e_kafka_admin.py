"""Seed 002 behaviours through the gateway's admin API and plain Kafka clients: topic create/list/describe,
two members of one group split the partitions, two groups each receive everything, an unknown topic is a
clear error, and an offset reset round trip."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from e2e_harness import Stack, eventually, produce

pytestmark = pytest.mark.integration

N = 60


class Member:
    """One consumer-group member polling in the background, committing what it received."""

    def __init__(self, bootstrap: str, topic: str, group: str) -> None:
        self.consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=6000,
            heartbeat_interval_ms=1000,
            rebalance_timeout_ms=6000,
            max_poll_interval_ms=30000,
        )
        self.received: list[tuple[int, int, bytes]] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            batch = await self.consumer.getmany(timeout_ms=200)
            for tp, msgs in batch.items():
                self.received += [(tp.partition, m.offset, m.value or b"") for m in msgs]
            if batch:
                await self.consumer.commit()

    def assignment(self) -> set[int]:
        return {tp.partition for tp in self.consumer.assignment()}

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Member]:
        await asyncio.wait_for(self.consumer.start(), 45)  # joins the group
        self._task = asyncio.create_task(self._run())
        try:
            yield self
        finally:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            await asyncio.wait_for(self.consumer.stop(), 15)  # leaves the group


def values(members: list[Member]) -> list[bytes]:
    return [v for m in members for (_, _, v) in m.received]


async def test_topics_create_list_describe_and_errors(stack: Stack, gw: httpx.AsyncClient) -> None:
    admin = stack.admin_headers()
    name = f"{stack.names.rid}.orders"
    body = {"name": name, "partitions": 3, "config": {"retention.ms": "3600000"}}

    assert (await gw.post("/api/v1/topics", json=body)).status_code == 403  # an app's key is not admin
    r = await gw.post("/api/v1/topics", json=body, headers=admin)
    assert r.status_code == 201, r.text
    assert [p["partition"] for p in r.json()["partitions"]] == [0, 1, 2]

    dup = await gw.post("/api/v1/topics", json=body, headers=admin)
    assert dup.status_code == 409, dup.text
    assert name in dup.json()["message"]

    listed = {t["name"]: t for t in (await gw.get("/api/v1/topics", headers=admin)).json()["topics"]}
    assert listed[name]["partitions"] == 3
    assert listed[name]["is_dlq"] is False
    platform = stack.names.topic("chatbot-issue-events")
    assert listed[platform]["platform_topic"] == "chatbot-issue-events"
    assert listed[f"{platform}.dlq"]["is_dlq"] is True

    detail = (await gw.get(f"/api/v1/topics/{name}", headers=admin)).json()
    assert len(detail["partitions"]) == 3
    assert detail["config"].get("retention.ms") == "3600000"

    # unknown topic: a clear 404 naming it, for describe, browse and produce alike
    unknown = f"{stack.names.rid}.no-such-topic"
    for r in (
        await gw.get(f"/api/v1/topics/{unknown}", headers=admin),
        await gw.get(f"/api/v1/topics/{unknown}/messages", headers=admin),
        await gw.post(f"/api/v1/topics/{unknown}/messages", json={"value": {"a": 1}}, headers=admin),
    ):
        assert r.status_code == 404, r.text
        assert r.json()["error"], r.json()
        assert unknown in r.json()["message"], r.json()
    bad = await gw.post("/api/v1/topics", json={"name": "bad name!", "partitions": 1}, headers=admin)
    assert bad.status_code == 422, bad.text
    assert bad.json()["field"], bad.text

    # produce a test message and browse it back (Korean value, key, header)
    sent = await gw.post(
        f"/api/v1/topics/{name}/messages",
        json={"key": "k1", "value": {"주문": "키보드"}, "headers": {"trace": "t-1"}},
        headers=admin,
    )
    assert sent.status_code == 201, sent.text
    page = (await gw.get(f"/api/v1/topics/{name}/messages", headers=admin)).json()
    assert [(m["key"], m["value"], m["headers"].get("trace")) for m in page["messages"]] == [
        ("k1", {"주문": "키보드"}, "t-1")
    ]


async def test_groups_split_and_broadcast_and_offset_reset(stack: Stack, gw: httpx.AsyncClient) -> None:
    admin = stack.admin_headers()
    rid = stack.names.rid
    topic = f"{rid}.groups"
    r = await gw.post("/api/v1/topics", json={"name": topic, "partitions": 3}, headers=admin)
    assert r.status_code == 201, r.text
    bootstrap = stack.ep.kafka
    group, other_a, other_b = f"{rid}-split", f"{rid}-all-a", f"{rid}-all-b"
    expected = sorted(f"m{i:03d}".encode() for i in range(N))

    m1, m2 = Member(bootstrap, topic, group), Member(bootstrap, topic, group)
    a, b = Member(bootstrap, topic, other_a), Member(bootstrap, topic, other_b)
    async with m1.running(), m2.running(), a.running(), b.running():

        async def split() -> bool:
            p1, p2 = m1.assignment(), m2.assignment()
            return bool(p1) and bool(p2) and not (p1 & p2) and p1 | p2 == {0, 1, 2}

        await eventually(split, timeout=40, what="two members of one group split the 3 partitions")
        await produce(bootstrap, topic, [(f"k{i}".encode(), f"m{i:03d}".encode()) for i in range(N)])

        async def all_received() -> bool:
            return len(values([m1, m2])) >= N and len(a.received) >= N and len(b.received) >= N

        await eventually(all_received, timeout=30, what="every group received the records")
        await asyncio.sleep(0.5)
        # one group: split, each record exactly once; other groups: everything each
        assert sorted(values([m1, m2])) == expected
        assert {p for p, _, _ in m1.received}.isdisjoint({p for p, _, _ in m2.received})
        assert sorted(values([a])) == expected
        assert sorted(values([b])) == expected

        described = (await gw.get(f"/api/v1/consumer-groups/{group}", headers=admin)).json()
        assert len(described["members"]) == 2, described
        owned = [
            p for member in described["members"] for asg in member["assignment"] for p in asg["partitions"]
        ]
        # Tansu answers DescribeGroups with empty member assignments (a stand-in gap, docs/operations.md);
        # a broker that reports them must report exactly the split the members see.
        if owned or not _is_tansu_gap(described):
            assert sorted(owned) == [0, 1, 2], described

        # reset is refused while the group has live members
        r = await gw.post(
            f"/api/v1/consumer-groups/{group}/offsets/reset",
            json={"topic": topic, "to": "earliest"},
            headers=admin,
        )
        assert r.status_code == 409, r.text

    offsets = await _offsets(gw, group, topic, admin)
    assert sum(o["committed"] for o in offsets) == N, offsets
    assert all(o["lag"] == 0 for o in offsets), offsets

    # earliest: everything is read again by the group
    await _reset(gw, admin, group, {"topic": topic, "to": "earliest"})
    offsets = await _offsets(gw, group, topic, admin)
    assert all(o["committed"] == 0 for o in offsets), offsets
    assert sum(o["lag"] for o in offsets) == N
    # The group resumes from the reset offsets: everything is read again. (Read with the group's committed
    # offsets on assigned partitions: on Tansu a member joining a group emptied by clean leaves can wait
    # for a long time for the ghosts to be evicted; docs/operations.md.)
    assert sorted(await _read_from_committed(bootstrap, topic, group, expect=N)) == expected

    # latest, then an explicit offset on one partition (dry run first: changes nothing)
    await _reset(gw, admin, group, {"topic": topic, "to": "latest"})
    offsets = await _offsets(gw, group, topic, admin)
    assert sum(o["lag"] for o in offsets) == 0, offsets
    end0 = next(o["end_offset"] for o in offsets if o["partition"] == 0)
    assert end0 > 0
    dry = await _reset(
        gw, admin, group, {"topic": topic, "to": "offset", "offset": 0, "partitions": [0], "dry_run": True}
    )
    assert dry["dry_run"] is True
    assert (
        next(o for o in await _offsets(gw, group, topic, admin) if o["partition"] == 0)["committed"] == end0
    )
    await _reset(gw, admin, group, {"topic": topic, "to": "offset", "offset": 0, "partitions": [0]})
    p0 = next(o for o in await _offsets(gw, group, topic, admin) if o["partition"] == 0)
    assert p0["committed"] == 0, p0
    assert p0["lag"] == end0, p0

    unknown = await gw.get(f"/api/v1/consumer-groups/{rid}-no-such-group", headers=admin)
    assert unknown.status_code == 404, unknown.text


async def _offsets(
    gw: httpx.AsyncClient, group: str, topic: str, admin: dict[str, str]
) -> list[dict[str, Any]]:
    r = await gw.get(f"/api/v1/consumer-groups/{group}/offsets", params={"topic": topic}, headers=admin)
    assert r.status_code == 200, r.text
    offsets: list[dict[str, Any]] = r.json()["offsets"]
    return offsets


async def _reset(
    gw: httpx.AsyncClient, admin: dict[str, str], group: str, body: dict[str, Any]
) -> dict[str, Any]:
    """Reset after the group's consumers stopped. Tansu keeps members that left cleanly listed until the
    next rebalance, so this uses the operator's documented path for that: ``evict_stale`` (the gateway joins
    the group, and commits only if it receives every partition, i.e. no live member holds one)."""

    async def attempt() -> dict[str, Any] | None:
        r = await gw.post(
            f"/api/v1/consumer-groups/{group}/offsets/reset",
            json={**body, "evict_stale": True},
            headers=admin,
        )
        if r.status_code == 409:
            return None
        assert r.status_code == 200, r.text
        result: dict[str, Any] = r.json()
        return result

    result: dict[str, Any] = await eventually(attempt, timeout=30, interval=1.0, what=f"offset reset {body}")
    return result


async def _read_from_committed(bootstrap: str, topic: str, group: str, *, expect: int) -> list[bytes]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(3)])
        got: list[bytes] = []
        deadline = asyncio.get_running_loop().time() + 30
        while len(got) < expect and asyncio.get_running_loop().time() < deadline:
            for msgs in (await consumer.getmany(timeout_ms=300)).values():
                got += [m.value or b"" for m in msgs]
        return got
    finally:
        await consumer.stop()


def _is_tansu_gap(described: dict[str, Any]) -> bool:
    return all(not m["assignment"] and not m["client_host"] for m in described["members"])


async def _true(value: bool) -> bool:
    return value
