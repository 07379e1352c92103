"""Seed 003 as an app team meets it: an app using the logging adapter serves requests; its wide events are
queryable through the gateway; with its broker stopped the events still arrive (direct MongoDB fallback)."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2e_harness import GRACEFUL, Stack, eventually

pytestmark = pytest.mark.integration

APP = str(Path(__file__).resolve().parent / "e2e_wide_app.py")


async def logs_of(gw: httpx.AsyncClient, service: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"service": service, "limit": 1000}
        if cursor:
            params["cursor"] = cursor
        r = await gw.get("/api/v1/logs", params=params)
        assert r.status_code == 200, r.text
        body = r.json()
        items += body["items"]
        cursor = body.get("next_cursor")
        if not cursor:
            return items


async def serve_requests(url: str, request_ids: list[str], user: str) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=10) as app:
        for i, rid in enumerate(request_ids):
            order = "missing" if i % 5 == 4 else f"ord-{i}"
            r = await app.get(f"/orders/{order}", params={"user": user}, headers={"X-Request-ID": rid})
            assert r.status_code == (404 if order == "missing" else 200)
            assert r.headers.get("x-request-id") == rid


def check_events(events: list[dict[str, Any]], request_ids: list[str], user: str) -> None:
    by_request: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        by_request.setdefault(e.get("request_id", "?"), []).append(e)
    missing = [r for r in request_ids if r not in by_request]
    assert not missing, f"{len(missing)} of {len(request_ids)} requests have no wide event"
    doubled = [r for r in request_ids if len(by_request[r]) > 1]
    assert not doubled, f"requests stored more than once: {doubled[:5]}"
    for i, rid in enumerate(request_ids):
        e = by_request[rid][0]
        assert e["event_id"]
        assert e["timestamp"]
        assert e["method"] == "GET"
        assert e["status"] == (404 if i % 5 == 4 else 200)
        assert e["level"] == ("warn" if i % 5 == 4 else "info")
        assert e["user_id"] == user
        assert e["상품"] == "무선 키보드"
        assert e["cart"] == {"items": 3, "total_krw": 45000}


def test_check_events_fails_on_a_request_stored_twice() -> None:
    """check_events counts events per request_id (a field the store does not key on), so a second copy of a
    request's wide event written under another event_id (a writer without the log-sink's unique key) fails."""
    ids = ["req-a", "req-b"]
    events = [
        {"event_id": f"e{i}", "request_id": r, "timestamp": "t", "method": "GET", "status": 200,
         "level": "info", "user_id": "u", "상품": "무선 키보드", "cart": {"items": 3, "total_krw": 45000}}
        for i, r in enumerate(ids)
    ]  # fmt: skip
    check_events(events, ids, "u")
    with pytest.raises(AssertionError, match="stored more than once"):
        check_events([*events, {**events[1], "event_id": "e-copy"}], ids, "u")


async def test_app_wide_events_queryable_via_gateway(stack: Stack, gw: httpx.AsyncClient) -> None:
    service = f"shop-{stack.names.rid}"
    app = stack.spawn_app("wide-app", [sys.executable, APP], {"WIDE_LOG_SERVICE": service})
    await stack.wait_ready("wide-app", path="/healthz", timeout=30)
    request_ids = [f"req-{uuid.uuid4().hex[:12]}" for _ in range(50)]
    await serve_requests(app.url, request_ids, user="김철수")

    async def arrived() -> list[dict[str, Any]] | None:
        events = [e for e in await logs_of(gw, service) if e.get("path", "").startswith("/orders/")]
        return events if len(events) >= len(request_ids) else None

    events = await eventually(arrived, timeout=30, what="50 wide events via GET /api/v1/logs")
    check_events(events, request_ids, "김철수")

    # published through Kafka (not the fallback), and one event by id through the gateway
    async with httpx.AsyncClient() as c:
        stats = (await c.get(f"{app.url}/stats")).json()
    assert stats["published"] >= 50, stats
    assert stats["fallback"] == 0, stats
    assert stats["dropped"] == 0, stats
    one = await gw.get(f"/api/v1/logs/{events[0]['event_id']}")
    assert one.status_code == 200
    assert one.json()["request_id"] == events[0]["request_id"]
    assert (await gw.get("/api/v1/logs/no-such-event")).status_code == 404
    bad = await gw.get("/api/v1/logs", params={"since": "not a time"})
    assert bad.status_code == 422
    assert stack.terminate("wide-app") in GRACEFUL


async def test_wide_events_arrive_with_the_broker_stopped(stack: Stack, gw: httpx.AsyncClient) -> None:
    from devservers import start_private

    service = f"shop-fallback-{stack.names.rid}"
    broker = start_private("kafka", data_dir=stack.workdir / "fallback-broker")
    try:
        app = stack.spawn_app(
            "wide-app-fallback",
            [sys.executable, APP],
            {
                "WIDE_LOG_SERVICE": service,
                "KAFKA_BROKER": broker.address,
                "KAFKA_BOOTSTRAP_SERVERS": broker.address,
                "WIDE_LOG_PUBLISH_TIMEOUT_MS": "1500",
            },
        )
        await stack.wait_ready("wide-app-fallback", path="/healthz", timeout=30)
        broker.kill()  # the app's broker is gone
        request_ids = [f"fb-{uuid.uuid4().hex[:12]}" for _ in range(30)]
        await serve_requests(app.url, request_ids, user="이영희")

        async def arrived() -> list[dict[str, Any]] | None:
            events = [e for e in await logs_of(gw, service) if e.get("path", "").startswith("/orders/")]
            return events if len(events) >= len(request_ids) else None

        events = await eventually(arrived, timeout=45, what="wide events written by the MongoDB fallback")
        check_events(events, request_ids, "이영희")
        async with httpx.AsyncClient() as c:
            stats = (await c.get(f"{app.url}/stats")).json()
        assert stats["fallback"] >= 30, stats
        assert stats["dropped"] == 0, stats
        assert stack.terminate("wide-app-fallback") in GRACEFUL
    finally:
        broker.stop(timeout=5)
