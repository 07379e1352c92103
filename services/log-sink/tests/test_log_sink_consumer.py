"""The log-sink end to end against the real local broker and MongoDB-protocol server."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from asgi_lifespan import LifespanManager
from consumer_runtime import ConsumerRunner, decode_headers
from consumer_runtime.testing import KafkaNames, produce, read_all, wait_until
from consumer_runtime.topics import ensure_topics
from devservers import free_port
from log_sink.app import create_app
from log_sink.config import Settings
from log_sink.sink import WideEventSink
from log_sink.store import WideEventStore
from platform_events import LOG_EVENTS
from pymongo import AsyncMongoClient
from wide_logging import WideLogger, WideLoggingConfig

pytestmark = pytest.mark.integration


def settings_for(bootstrap: str, names: KafkaNames, db: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "kafka_bootstrap_servers": bootstrap,
        "kafka_consumer_group": names.group,
        "kafka_log_topic": names.topic,
        "kafka_enable_idempotence": False,
        "kafka_session_timeout_ms": 6000,
        "kafka_heartbeat_interval_ms": 1000,
        "retry_backoff_initial_ms": 50,
        "retry_backoff_max_ms": 500,
        "log_mongo_db": db,
        "log_retention_days": 0,
        **overrides,
    }
    return Settings(**values)


TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


def body(i: int, **extra: Any) -> bytes:
    event = {"event_id": f"evt-{i}", "timestamp": "2026-11-23T10:00:00Z", "service": "svc", "i": i, **extra}
    return json.dumps(event, ensure_ascii=False).encode()


async def committed(bootstrap: str, group: str, topic: str) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        if not parts:
            await consumer.topics()
            parts = consumer.partitions_for_topic(topic) or set()
        total = 0
        for p in parts:
            total += await consumer.committed(TopicPartition(topic, p)) or 0
        return total
    finally:
        await consumer.stop()


@pytest.fixture
async def sink_parts(
    kafka_bootstrap: str, kafka_names: KafkaNames, fresh_db: str, mongo_url: str
) -> AsyncIterator[Callable[..., Any]]:
    """make(**settings overrides) -> (runner, store); everything is closed afterwards."""
    made: list[tuple[ConsumerRunner, WideEventStore]] = []

    async def make(group: str | None = None, **overrides: Any) -> tuple[ConsumerRunner, WideEventStore]:
        names = KafkaNames(kafka_names.topic, group or kafka_names.group)
        s = settings_for(kafka_bootstrap, names, fresh_db, mongo_url=mongo_url, **overrides)
        await ensure_topics(s, [names.topic, names.dlq])
        store = WideEventStore(s.mongo_url, s.log_mongo_db, retention_s=s.retention_s)
        await store.open()
        runner = ConsumerRunner(
            name="log-sink", settings=s, topics=[LOG_EVENTS.renamed(names.topic)], sink=WideEventSink(store)
        )
        made.append((runner, store))
        return runner, store

    yield make
    for runner, store in made:
        await runner.close()
        await store.close()


async def test_flushes_at_batch_size_and_on_stop(
    sink_parts: Callable[..., Any], kafka_bootstrap: str, kafka_names: KafkaNames
) -> None:
    # MQ_MAX_BATCH = MQ_BATCH_SIZE: no adaptive growth, so the 25 produced at once make batches of exactly 10
    runner, store = await sink_parts(mq_batch_size=10, mq_max_batch=10, mq_batch_timeout_ms=600_000)
    await runner.start()
    await produce(kafka_bootstrap, kafka_names.topic, [body(i) for i in range(25)], partition=0)

    async def stored(n: int) -> bool:
        return await store.count() == n

    await wait_until(lambda: stored(20), what="two full batches stored")
    await wait_until(lambda: runner.status().buffered == 5, what="the rest buffered")
    assert runner.counts.batches == 2
    assert runner.last_batch.records == 10
    assert await store.count() == 20  # the 5 left wait for the (10 min) timer, not flushed early
    await runner.stop()  # graceful stop flushes what is pending, then commits
    assert await store.count() == 25
    assert await committed(kafka_bootstrap, kafka_names.group, kafka_names.topic) == 25


async def test_flushes_on_timer(
    sink_parts: Callable[..., Any], kafka_bootstrap: str, kafka_names: KafkaNames
) -> None:
    runner, store = await sink_parts(mq_batch_size=1000, mq_batch_timeout_ms=300)
    await runner.start()
    await wait_until(lambda: runner.status().assignment, what="partitions assigned")
    await produce(kafka_bootstrap, kafka_names.topic, [body(i) for i in range(5)], partition=1)

    # far below MQ_BATCH_SIZE: only the timer can flush (and commit) these
    await wait_until(lambda: runner.counts.stored == 5 and runner.counts.commits >= 1, what="the timer flush")
    assert await store.count() == 5
    assert runner.last_batch is not None
    assert runner.last_batch.records <= 5


async def test_redelivery_stores_each_event_once(
    sink_parts: Callable[..., Any], kafka_bootstrap: str, kafka_names: KafkaNames
) -> None:
    values = [body(i) for i in range(30)] + [body(7, note="same event_id sent again")]
    await produce(kafka_bootstrap, kafka_names.topic, values, keys=[b"k%d" % (i % 3) for i in range(31)])
    first, store = await sink_parts(mq_batch_size=8, mq_batch_timeout_ms=100)
    await first.start()
    await wait_until(lambda: first.counts.stored == 31, what="first pass")
    await first.stop()
    # A second group re-reads everything from the start: exactly what a crash before the commit causes.
    again, _ = await sink_parts(group=f"{kafka_names.group}-again", mq_batch_size=8, mq_batch_timeout_ms=100)
    await again.start()
    await wait_until(lambda: again.counts.stored == 31, what="second pass")
    assert await store.count() == 30
    assert again.counts.dead_lettered == 0
    assert first.counts.dead_lettered == 0
    doc = await store.get("evt-7")
    assert doc is not None
    assert "note" not in doc


async def test_bad_events_go_to_the_dlq(
    sink_parts: Callable[..., Any], kafka_bootstrap: str, kafka_names: KafkaNames
) -> None:
    runner, store = await sink_parts(mq_batch_size=100, mq_batch_timeout_ms=200)
    await runner.start()
    bad = [
        b"not json {",
        b'{"timestamp": "2026-11-23T10:00:00Z", "service": "svc"}',  # no event_id
        body(100, blob="x" * 300_000),  # over the 256 KiB wide-event limit
        body(101, big=2**70),  # valid JSON, but no 64-bit integer holds it: MongoDB refuses the document
    ]
    await produce(kafka_bootstrap, kafka_names.topic, [body(1), *bad, body(2), body(3)], partition=0)
    letters = await read_all(kafka_bootstrap, kafka_names.dlq, expect=4)
    assert len(letters) == 4
    letters.sort(key=lambda m: int(decode_headers(m.headers)["dlq.original.offset"]))
    headers = [decode_headers(m.headers) for m in letters]
    assert [h["dlq.error.stage"] for h in headers] == ["decode", "decode", "decode", "sink"]
    assert "JSON" in headers[0]["dlq.error.message"]
    assert "event_id" in headers[1]["dlq.error.message"]
    assert "limit" in headers[2]["dlq.error.message"]
    assert "BSON" in headers[3]["dlq.error.message"]
    assert [m.value for m in letters] == bad  # the original bytes, untouched
    await wait_until(lambda: runner.counts.commits >= 1 and runner.status().buffered == 0, what="commit")
    assert sorted(d["event_id"] for d in (await store.find_all())) == ["evt-1", "evt-2", "evt-3"]


async def test_http_api(kafka_bootstrap: str, kafka_names: KafkaNames, fresh_db: str, mongo_url: str) -> None:
    s = settings_for(kafka_bootstrap, kafka_names, fresh_db, mongo_url=mongo_url, mq_batch_timeout_ms=100)
    app = create_app(s)
    values = [
        body(i, service="api" if i % 2 else "web", level="error" if i % 4 == 0 else "info",
             status=500 if i % 4 == 0 else 200, timestamp=f"2026-11-23T10:00:{i:02d}Z",
             **({"trace_id": TRACE_ID} if i % 3 == 0 else {}))
        for i in range(12)
    ]  # fmt: skip
    async with (
        LifespanManager(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://log-sink") as client,
    ):
        await produce(kafka_bootstrap, kafka_names.topic, values)

        async def all_stored() -> bool:
            return (await client.get("/logs", params={"limit": 100})).json()["count"] == 12

        await wait_until(all_stored, what="12 events queryable")
        r = await client.get("/logs", params={"service": "web", "level": "error"})
        assert [i["event_id"] for i in r.json()["items"]] == ["evt-8", "evt-4", "evt-0"]
        r = await client.get("/logs", params={"field": ["status:500"], "since": "2026-11-23T10:00:04Z"})
        assert [i["event_id"] for i in r.json()["items"]] == ["evt-8", "evt-4"]
        r = await client.get("/logs", params={"trace_id": TRACE_ID})
        assert [i["event_id"] for i in r.json()["items"]] == ["evt-9", "evt-6", "evt-3", "evt-0"]
        assert (await client.get("/logs", params={"trace_id": "not-a-trace"})).status_code == 422
        r = await client.get("/logs", params={"limit": 5})
        page1 = r.json()
        r = await client.get("/logs", params={"limit": 5, "cursor": page1["next_cursor"]})
        page2 = r.json()
        assert [i["i"] for i in page1["items"] + page2["items"]] == list(range(11, 1, -1))
        r = await client.get("/logs/evt-3")
        assert r.status_code == 200
        assert r.json()["timestamp"] == "2026-11-23T10:00:03Z"
        assert (await client.get("/logs/nope")).status_code == 404
        bad = await client.get("/logs", params={"field": "$where:1"})
        assert bad.status_code == 422
        assert "field" in bad.text
        assert (await client.get("/logs", params={"limit": 5000})).status_code == 422
        ready = await client.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"]["mongodb"] == "ok"
        status = (await client.get("/consumer/status")).json()
        assert status["group"] == kafka_names.group
        assert status["counts"]["stored"] == 12
        metrics = (await client.get("/metrics")).text
        assert "log_sink_events_inserted_total" in metrics
        assert (await client.get("/healthz")).json()["status"] == "ok"
        assert (await client.get("/docs")).status_code == 200


async def test_adapter_to_sink_stores_every_event_once(
    kafka_bootstrap: str,
    kafka_names: KafkaNames,
    fresh_db: str,
    mongo_url: str,
    sink_parts: Callable[..., Any],
) -> None:
    """Published events and their fallback copies (a publish that timed out but arrived) meet in MongoDB:
    each event_id is stored once."""
    await ensure_topics(settings_for(kafka_bootstrap, kafka_names, fresh_db), [kafka_names.topic])
    config = WideLoggingConfig(
        service="e2e", kafka_bootstrap_servers=kafka_bootstrap, log_topic=kafka_names.topic,
        enable_idempotence=False, mongo_url=mongo_url, mongo_db=fresh_db,
    )  # fmt: skip
    events = [{"event_id": f"e2e-{i}", "n": i} for i in range(200)]
    async with WideLogger(config) as published, WideLogger(config.with_(mq_enabled=False)) as direct:
        for ev in events:
            published.finalize(ev)
        for ev in events[::4]:
            direct.finalize(ev)
    assert published.counters.published == 200
    assert direct.counters.fallback == 50
    runner, store = await sink_parts(mq_batch_timeout_ms=100)
    await runner.start()
    await wait_until(lambda: runner.counts.stored == 200, what="sink drained the topic")
    assert await store.count() == 200


async def test_sigterm_flushes_pending_batch(
    kafka_bootstrap: str, kafka_names: KafkaNames, fresh_db: str, mongo_url: str, mongo: AsyncMongoClient[Any]
) -> None:
    """The real process: events wait for a 10-minute timer; SIGTERM stores and commits them before exit."""
    port = free_port()
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "KAFKA_CONSUMER_GROUP": kafka_names.group,
        "KAFKA_LOG_TOPIC": kafka_names.topic,
        "KAFKA_ENABLE_IDEMPOTENCE": "false",
        "KAFKA_SESSION_TIMEOUT_MS": "6000",
        "KAFKA_HEARTBEAT_INTERVAL_MS": "1000",
        "MQ_BATCH_SIZE": "1000",
        "MQ_BATCH_TIMEOUT_MS": "600000",
        "MONGO_URL": mongo_url,
        "LOG_MONGO_DB": fresh_db,
        "HTTP_HOST": "127.0.0.1",
        "HTTP_PORT": str(port),
    }
    proc = subprocess.Popen(  # noqa: ASYNC220 - a test starting the real process once
        [sys.executable, "-m", "log_sink"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:

            async def status() -> dict[str, Any] | None:
                try:
                    r = await client.get("/consumer/status")
                except httpx.TransportError:
                    return None
                return r.json() if r.status_code == 200 and r.json()["assignment"] else None

            await wait_until(status, timeout=60, interval=0.2, what="log-sink up with partitions")
            await produce(kafka_bootstrap, kafka_names.topic, [body(i) for i in range(7)])

            async def buffered() -> bool:
                return ((await status()) or {}).get("buffered") == 7

            await wait_until(buffered, what="7 events buffered")
        assert await mongo[fresh_db]["wide_events"].count_documents({}) == 0
        proc.send_signal(signal.SIGTERM)
        out, _ = await asyncio.to_thread(proc.communicate, timeout=60)
        # uvicorn finishes the graceful shutdown, then re-raises the signal it caught (exit by SIGTERM).
        assert proc.returncode in (0, -signal.SIGTERM), out.decode()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert await mongo[fresh_db]["wide_events"].count_documents({}) == 7
    assert await committed(kafka_bootstrap, kafka_names.group, kafka_names.topic) == 7
    lines = [json.loads(line) for line in out.decode().splitlines() if line.startswith("{")]
    batch = [line for line in lines if str(line.get("event", "")).startswith("Processed batch:")]
    assert batch
    assert batch[-1]["events"] == 7
    assert batch[-1]["success"] == 7
    assert batch[-1]["failures"] == 0
