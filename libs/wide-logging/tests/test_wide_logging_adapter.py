"""The adapter against the real local broker and MongoDB-protocol server."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from consumer_runtime.testing import KafkaNames, fast_settings, read_all
from consumer_runtime.topics import ensure_topics
from pymongo import AsyncMongoClient, MongoClient
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from wide_logging import WideEventMiddleware, WideLogger, WideLoggingConfig, annotate, wide_event

pytestmark = pytest.mark.integration


@pytest.fixture
def db_name(mongo_url: str) -> Iterator[str]:
    name = f"wide_logging_t_{uuid.uuid4().hex[:10]}"
    yield name
    with MongoClient(mongo_url) as client:
        client.drop_database(name)


@pytest.fixture
async def stored(mongo_url: str, db_name: str) -> AsyncIterator[Any]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url, tz_aware=True)

    async def docs() -> dict[str, dict[str, Any]]:
        return {d["_id"]: d async for d in client[db_name]["wide_events"].find({})}

    yield docs
    await client.close()


@pytest.fixture
async def topic(kafka_bootstrap: str, kafka_names: KafkaNames) -> str:
    await ensure_topics(fast_settings(kafka_bootstrap), [kafka_names.topic])
    return kafka_names.topic


def dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again: nothing listens there


def config(bootstrap: str, topic: str, mongo_url: str, db: str, **kw: Any) -> WideLoggingConfig:
    base = WideLoggingConfig(
        service="test-app", kafka_bootstrap_servers=bootstrap, log_topic=topic, enable_idempotence=False,
        mongo_url=mongo_url, mongo_db=db, publish_timeout_ms=2000, retry_backoff_ms=20,
    )  # fmt: skip
    return base.with_(**kw)


async def test_publishes_to_kafka_keyed_by_event_id(
    kafka_bootstrap: str, topic: str, mongo_url: str, db_name: str, stored: Any
) -> None:
    logger = WideLogger(config(kafka_bootstrap, topic, mongo_url, db_name))
    await logger.start()
    ids = []
    for i in range(100):
        ev = logger.event(route="/x", i=i)
        ids.append(ev["event_id"])
        logger.finalize(ev)
    await logger.close()  # flushes
    assert (logger.counters.published, logger.counters.fallback, logger.counters.dropped) == (100, 0, 0)
    records = await read_all(kafka_bootstrap, topic, expect=100)
    assert sorted(r.key.decode() for r in records if r.key) == sorted(ids)
    first = json.loads(next(r.value for r in records if r.key == ids[0].encode()))
    assert first["service"] == "test-app"
    assert first["i"] == 0
    assert first["timestamp"].endswith("Z")
    assert await stored() == {}


async def test_broker_down_every_event_lands_in_mongodb(mongo_url: str, db_name: str, stored: Any) -> None:
    logger = WideLogger(config(f"127.0.0.1:{dead_port()}", "log-events", mongo_url, db_name))
    async with logger:
        for i in range(120):
            logger.finalize({"event_id": f"down-{i}", "i": i})
    assert (logger.counters.published, logger.counters.fallback, logger.counters.dropped) == (0, 120, 0)
    docs = await stored()
    assert sorted(docs) == sorted(f"down-{i}" for i in range(120))
    assert docs["down-5"]["event_id"] == "down-5"
    assert docs["down-5"]["service"] == "test-app"
    assert docs["down-5"]["i"] == 5


async def test_broker_dies_midway_nothing_is_lost(mongo_url: str, db_name: str, stored: Any) -> None:
    from devservers import start_private

    broker = await asyncio.to_thread(start_private, "kafka")
    try:
        await ensure_topics(fast_settings(broker.address), ["private-logs"])
        logger = WideLogger(
            config(broker.address, "private-logs", mongo_url, db_name, publish_timeout_ms=1000)
        )
        await logger.start()
        for i in range(20):
            logger.finalize({"event_id": f"before-{i}"})
        await logger.drain()
        assert logger.counters.published == 20
        await asyncio.to_thread(broker.stop)
        for i in range(30):
            logger.finalize({"event_id": f"after-{i}"})
        await logger.close(timeout_s=60)
    finally:
        await asyncio.to_thread(broker.stop)
    assert logger.counters.dropped == 0
    assert logger.counters.published + logger.counters.fallback == 50
    docs = await stored()
    assert {f"after-{i}" for i in range(30)} <= set(docs)


async def test_mq_disabled_writes_straight_to_mongodb(mongo_url: str, db_name: str, stored: Any) -> None:
    logger = WideLogger(config("127.0.0.1:9", "log-events", mongo_url, db_name, mq_enabled=False))
    async with logger:
        for i in range(50):
            logger.finalize({"event_id": f"direct-{i}", "timestamp": 1795432800123, "nested": {"k": [1, 2]}})
        logger.finalize({"event_id": "direct-0"})  # the same event again: still one document
    assert (logger.counters.fallback, logger.counters.published, logger.counters.dropped) == (51, 0, 0)
    docs = await stored()
    assert len(docs) == 50
    assert docs["direct-1"]["nested"] == {"k": [1, 2]}
    assert docs["direct-1"]["timestamp"].isoformat().startswith("2026-11-23T11:20:00.123")


async def test_queue_full_falls_back_without_blocking(
    kafka_bootstrap: str, topic: str, mongo_url: str, db_name: str, stored: Any
) -> None:
    logger = WideLogger(config(kafka_bootstrap, topic, mongo_url, db_name, queue_size=5))
    await logger.start()
    for i in range(200):  # no await in between: the publisher cannot keep up, the queue overflows
        logger.finalize({"event_id": f"burst-{i}"})
    await logger.close()
    c = logger.counters
    assert c.dropped == 0
    assert c.published + c.fallback == 200
    assert c.fallback >= 195
    assert len(await stored()) == c.fallback


async def test_invalid_event_is_reduced_not_lost(mongo_url: str, db_name: str, stored: Any) -> None:
    logger = WideLogger(config("127.0.0.1:9", "log-events", mongo_url, db_name, mq_enabled=False))
    async with logger:
        logger.finalize({"event_id": "big", "status": 500, "body": "x" * 400_000})
        logger.finalize({"event_id": "odd", "path": "/p", "handle": object()})
    assert logger.counters.repaired == 2
    assert logger.counters.dropped == 0
    docs = await stored()
    assert docs["big"]["status"] == 500
    assert len(docs["big"]["body"]) == 1024
    assert "limit" in docs["big"]["wide_logging_error"]
    assert docs["big"]["truncated"] is True
    assert "truncated" not in docs["odd"]
    assert docs["odd"]["path"] == "/p"
    assert docs["odd"]["wide_logging_reduced"] is True


async def test_finalize_from_another_thread(mongo_url: str, db_name: str, stored: Any) -> None:
    logger = WideLogger(config("127.0.0.1:9", "log-events", mongo_url, db_name, mq_enabled=False))
    async with logger:
        worker = threading.Thread(target=lambda: [logger.finalize({"event_id": f"t-{i}"}) for i in range(10)])
        worker.start()
        await asyncio.to_thread(worker.join)
        await asyncio.sleep(0.05)  # the hand-overs run on the loop
    assert len(await stored()) == 10


async def test_middleware_builds_one_event_per_request(mongo_url: str, db_name: str, stored: Any) -> None:
    logger = WideLogger(config("127.0.0.1:9", "log-events", mongo_url, db_name, mq_enabled=False))

    async def ok(request: Request) -> JSONResponse:
        annotate(user_id="u-42", cart_items=3)
        return JSONResponse({"ok": True})

    async def boom(request: Request) -> JSONResponse:
        raise RuntimeError("payment provider timed out")

    app = Starlette(routes=[Route("/orders/{oid}", ok), Route("/boom", boom), Route("/healthz", ok)])
    app.add_middleware(WideEventMiddleware, logger=logger)
    async with logger:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            r = await client.get("/orders/7?x=1", headers={"X-Request-ID": "req-1"})
            assert r.headers["x-request-id"] == "req-1"
            assert (await client.get("/boom", headers={"X-User-ID": "u-9"})).status_code == 500
            await client.get("/healthz")  # skipped
    docs = list((await stored()).values())
    assert len(docs) == 2
    ok_doc = next(d for d in docs if d["path"] == "/orders/7")
    keys = ("method", "status", "request_id", "user_id", "cart_items", "query", "level")
    assert {k: ok_doc[k] for k in keys} == {
        "method": "GET", "status": 200, "request_id": "req-1", "user_id": "u-42", "cart_items": 3,
        "query": "x=1", "level": "info",
    }  # fmt: skip
    assert ok_doc["duration_ms"] >= 0
    assert ok_doc["service"] == "test-app"
    boom_doc = next(d for d in docs if d["path"] == "/boom")
    assert boom_doc["status"] == 500
    assert boom_doc["level"] == "error"
    assert boom_doc["user_id"] == "u-9"
    assert boom_doc["error"] == {"type": "RuntimeError", "message": "payment provider timed out"}


async def test_job_context_manager_records_errors(mongo_url: str, db_name: str, stored: Any) -> None:
    logger = WideLogger(config("127.0.0.1:9", "log-events", mongo_url, db_name, mq_enabled=False))
    async with logger:
        with wide_event(logger, "report", tenant="t1") as ev:
            ev["rows"] = 5

        def failing_job() -> None:
            with wide_event(logger, "import"):
                annotate(row=17)
                raise ValueError("bad row")

        with pytest.raises(ValueError, match="bad row"):
            failing_job()
    docs = {d["operation"]: d for d in (await stored()).values()}
    assert docs["report"]["rows"] == 5
    assert docs["report"]["level"] == "info"
    assert docs["import"]["row"] == 17
    assert docs["import"]["level"] == "error"
    assert docs["import"]["error"]["type"] == "ValueError"


async def test_oversized_event_is_truncated_and_publishing_goes_on(
    kafka_bootstrap: str, topic: str, mongo_url: str, db_name: str
) -> None:
    """400 fields of 1,000 characters used to kill the publisher task (ValidationError outside the try)."""
    logger = WideLogger(config(kafka_bootstrap, topic, mongo_url, db_name))
    async with logger:
        logger.finalize({"event_id": "wide", **{f"field_{i}": "y" * 1000 for i in range(400)}})
        await asyncio.wait_for(logger.drain(), 30)
        logger.finalize({"event_id": "after", "i": 1})
        await asyncio.wait_for(logger.drain(), 30)
    c = logger.counters
    assert (c.published, c.fallback, c.dropped, c.truncated, c.internal_errors) == (2, 0, 0, 1, 0)
    records = {
        r.key: json.loads(r.value) for r in await read_all(kafka_bootstrap, topic, expect=2) if r.value
    }
    assert records[b"wide"]["truncated"] is True
    assert records[b"after"]["i"] == 1


async def test_publisher_task_survives_an_unexpected_error(
    kafka_bootstrap: str, topic: str, mongo_url: str, db_name: str, stored: Any
) -> None:
    logger = WideLogger(config(kafka_bootstrap, topic, mongo_url, db_name))
    original = logger._publish
    calls = 0

    async def fails_once(raws: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("injected bug in the publish path")
        return await original(raws)

    logger._publish = fails_once  # type: ignore[method-assign]
    async with logger:
        logger.finalize({"event_id": "first"})
        await asyncio.wait_for(logger.drain(), 30)
        logger.finalize({"event_id": "second"})
        await asyncio.wait_for(logger.drain(), 30)
    c = logger.counters
    assert (c.published, c.fallback, c.dropped, c.internal_errors) == (1, 1, 0, 1)
    assert set(await stored()) == {"first"}  # the batch of the failed attempt went to MongoDB
