"""Seed 000/001 as a factory monitor and an operator meet it: events on Kafka, issues through the gateway.

A producer (plain aiokafka, like the seed's script) sends factory issue events of every modeType with Korean
text; they appear at ``GET /api/kafka/issues``; an ``isSolved`` follow-up closes the chatbot session;
``DELETE`` works (admin token); stop/start/restart change the consumer state and lose nothing.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from e2e_harness import Stack, eventually, produce

pytestmark = pytest.mark.integration

MODE_TYPES = ["프레스", "용접기", "도장설비", "차량조립설비"]
PROCESS_TYPES = ["장애접수", "정기점검"]
TIMESTAMPS = [None, "2025-08-08T17:05:37.123Z", "2025-08-08T17:05:37", "2025-08-08T17:05:37.5+09:00"]


def issue_event(issue: str, i: int, *, solved: bool = False, ts: str | None = "keep") -> dict[str, Any]:
    mode = MODE_TYPES[i % 4]
    event: dict[str, Any] = {
        "issue": issue,
        "processType": PROCESS_TYPES[i % 2],
        "modeType": mode,
        "modeLogId": f"{issue}_LOG",
        "description": f"{mode} 이상 징후 #{i}: 유압 압력 저하 🔧",
        "isSolved": solved,
    }
    stamp = TIMESTAMPS[i % len(TIMESTAMPS)] if ts == "keep" else ts
    if stamp is not None:
        event["timestamp"] = stamp
    return event


def encode(event: dict[str, Any]) -> tuple[bytes, bytes]:
    # exactly what the seed's producer does: json.dumps(..., ensure_ascii=False).encode("utf-8")
    return event["issue"].encode(), json.dumps(event, ensure_ascii=False).encode("utf-8")


async def all_issues(gw: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for offset in itertools.count(0, 500):
        r = await gw.get("/api/kafka/issues", params={"limit": 500, "offset": offset})
        assert r.status_code == 200, r.text
        page = r.json()
        for item in page["items"]:
            assert item["issue"] not in out, f"issue {item['issue']} listed twice"
            out[item["issue"]] = item
        if offset + 500 >= page["total"]:
            return out
    raise AssertionError("unreachable")


async def consumer_state(gw: httpx.AsyncClient) -> str:
    r = await gw.get("/api/kafka/status")
    assert r.status_code == 200, r.text
    state: str = r.json()["state"]
    return state


async def test_issue_events_flow_through_the_gateway(stack: Stack, gw: httpx.AsyncClient) -> None:
    topic = stack.names.topic("chatbot-issue-events")
    ids = [f"{m}_{stack.names.rid}_{i:03d}" for i, m in zip(range(16), itertools.cycle("PWDV"), strict=False)]
    events = [issue_event(issue, i) for i, issue in enumerate(ids)]
    await produce(stack.ep.kafka, topic, [encode(e) for e in events])

    async def arrived() -> dict[str, dict[str, Any]] | None:
        got = await all_issues(gw)
        return got if set(ids) <= set(got) else None

    stored = await eventually(arrived, timeout=30, what="16 issues listed by GET /api/kafka/issues")
    assert set(stored) == set(ids)
    for event in events:
        item = stored[event["issue"]]
        assert item["processType"] == event["processType"]
        assert item["modeType"] == event["modeType"]
        assert item["modeLogId"] == event["modeLogId"]
        assert item["description"] == event["description"]  # Korean + emoji round trip
        assert item["isSolved"] is False
    assert {stored[i]["modeType"] for i in ids} == set(MODE_TYPES)

    one = await gw.get(f"/api/kafka/issues/{ids[0]}")
    assert one.status_code == 200
    assert one.json()["issue"] == ids[0]
    page = await gw.get("/api/kafka/issues", params={"limit": 5, "offset": 0})
    assert page.status_code == 200
    assert len(page.json()["items"]) == 5
    assert page.json()["total"] == 16

    # the first event opened one chatbot session per issue
    sessions = (await gw.get(f"/api/v1/issues/{ids[1]}/sessions")).json()
    assert [s["status"] for s in sessions] == ["open"]

    # isSolved follow-up (later event time, but not ahead of the clock: MAX_CLOCK_SKEW) closes the session
    solved = issue_event(ids[1], 1, solved=True, ts=datetime.now(UTC).isoformat())
    await produce(stack.ep.kafka, topic, [encode(solved)])

    async def closed() -> bool:
        issue = (await gw.get(f"/api/kafka/issues/{ids[1]}")).json()
        sess = (await gw.get(f"/api/v1/issues/{ids[1]}/sessions")).json()
        return issue["isSolved"] is True and [s["status"] for s in sess] == ["closed"]

    await eventually(closed, timeout=20, what="isSolved=true closes the chatbot session")
    sess = (await gw.get(f"/api/v1/issues/{ids[1]}/sessions")).json()
    assert sess[0]["closed_at"] is not None

    # DELETE: refused without a token, then works with the app's issues:write, then 404
    async with httpx.AsyncClient(base_url=stack.url("gateway"), timeout=30.0) as anonymous:
        r = await anonymous.delete(f"/api/kafka/issues/{ids[2]}")
    assert r.status_code == 401, r.text
    r = await gw.delete(f"/api/kafka/issues/{ids[2]}")
    assert r.status_code == 200, r.text
    assert r.json()["deleted"] == ids[2]
    assert (await gw.get(f"/api/kafka/issues/{ids[2]}")).status_code == 404
    r = await gw.delete(f"/api/kafka/issues/{ids[2]}", headers=stack.admin_headers())
    assert r.status_code == 404
    assert (await gw.get("/api/kafka/issues/NO_SUCH_ISSUE_x")).status_code == 404


async def test_stop_start_restart_lose_nothing(stack: Stack, gw: httpx.AsyncClient) -> None:
    topic = stack.names.topic("chatbot-issue-events")
    rid = stack.names.rid
    admin = stack.admin_headers()

    # control needs the admin token: without a token 401, with the app's key (not admin) 403
    async with httpx.AsyncClient(base_url=stack.url("gateway"), timeout=30.0) as anonymous:
        assert (await anonymous.post("/api/kafka/stop")).status_code == 401
    assert (await gw.post("/api/kafka/stop")).status_code == 403

    r = await gw.post("/api/kafka/stop", headers=admin)
    assert r.status_code == 200, r.text
    assert r.json()["status"]["leads_to"] == "stopped"  # answered at once; the stop completes in background
    await eventually(lambda: _state_is(gw, "stopped"), timeout=30, what="consumer stopped")

    while_stopped = [issue_event(f"STOP_{rid}_{i:03d}", i) for i in range(40)]
    await produce(stack.ep.kafka, topic, [encode(e) for e in while_stopped])
    await asyncio.sleep(2.0)  # a running consumer stores a batch within MQ_BATCH_TIMEOUT_MS (200 ms)
    got = await all_issues(gw)
    assert not any(i.startswith(f"STOP_{rid}") for i in got), "a stopped consumer stored events"

    r = await gw.post("/api/kafka/start", headers=admin)
    assert r.status_code == 200, r.text
    await eventually(lambda: _state_is(gw, "running"), timeout=20, what="consumer running after start")
    expected = {e["issue"] for e in while_stopped}

    async def caught_up() -> bool:
        return expected <= set(await all_issues(gw))

    await eventually(caught_up, timeout=30, what="events produced while stopped stored after start")

    got = await all_issues(gw)  # all_issues asserts no issue is listed twice
    assert {i for i in got if i.startswith(f"STOP_{rid}")} == expected


async def test_restart_under_load_loses_nothing(stack: Stack, gw: httpx.AsyncClient) -> None:
    topic = stack.names.topic("chatbot-issue-events")
    rid = stack.names.rid
    admin = stack.admin_headers()
    # restart while events flow: nothing lost, nothing listed twice
    flowing = [issue_event(f"RST_{rid}_{i:04d}", i) for i in range(600)]
    producing = asyncio.create_task(produce(stack.ep.kafka, topic, [encode(e) for e in flowing[:300]]))
    r = await gw.post("/api/kafka/restart", headers=admin)
    assert r.status_code == 200, r.text
    await producing
    await produce(stack.ep.kafka, topic, [encode(e) for e in flowing[300:]])
    await eventually(lambda: _state_is(gw, "running"), timeout=30, what="consumer running after restart")
    expected = {e["issue"] for e in flowing}

    async def all_there() -> bool:
        return expected <= set(await all_issues(gw))

    await eventually(all_there, timeout=60, what="all events stored across restart")
    got = await all_issues(gw)  # all_issues asserts no issue is listed twice
    ours = {i for i in got if i.startswith(f"RST_{rid}")}
    assert ours == expected

    status = (await gw.get("/api/kafka/status", headers=stack.admin_headers())).json()  # details: admin
    assert status["state"] == "running"
    assert status["last_error"] is None or status["last_error"].get("stage") != "sink", status


async def _state_is(gw: httpx.AsyncClient, state: str) -> bool:
    return await consumer_state(gw) == state
