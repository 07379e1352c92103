"""notifier: how fast mention notifications are stored (vs raw insert_many) and how fast they reach a stream.

Run: ``.venv/bin/python -m benchmarks.bench_notifier`` (starts the local Kafka + MongoDB stand-ins if needed,
uses its own topics and database, removes them afterwards; ~1–2 minutes on 2 cores).

1. drain: N message events with 0–5 mentions are produced first; the notifier's consumer (the real
   ConsumerRunner + NotificationSink: preferences lookup, insert_many, publish to Kafka, checkpoint) drains
   them; notifications stored per second from the first record fetched to the last notification stored.
2. raw: ``insert_many`` of the same number of equivalent documents, same batch size, same indexes.
3. naive: one event at a time: insert_one per notification + publish-and-wait per notification.
4. live: the real app (uvicorn) with SSE clients connected for the mentioned users; events produced at half
   the drain rate; latency = SSE receipt − the moment the event was handed to the producer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import statistics
import time
import uuid
from typing import Any

import httpx
import uvicorn
from aiokafka import AIOKafkaProducer
from consumer_runtime import ConsumerRunner
from consumer_runtime.testing import delete_topics, produce
from devservers import ensure
from notifier.app import create_app
from notifier.config import Settings
from notifier.handlers import Source, plan
from notifier.publisher import NotificationPublisher
from notifier.sink import NotificationSink
from notifier.store import NotificationStore
from platform_events import MESSAGES_CREATED, MessageCreatedEvent, encode, now_ms
from pymongo import AsyncMongoClient

from benchmarks._common import Timer, rate, report
from benchmarks._targets import Target, headline, targets

N_EVENTS = 6000
BATCH_EVENTS = 200  # MQ_BATCH_SIZE for the drain; ~500 notifications per batch at 2.5 mentions/event
N_NAIVE = 300
LIVE_USERS = 20
LIVE_SECONDS = 10.0
USERS = [f"user_{i:03d}" for i in range(200)]
rng = random.Random(7)


async def until(predicate: Any, interval: float = 0.005, timeout: float = 120.0) -> None:
    """Poll ``predicate`` (a cheap in-process check) until true; the benchmark's own clock, no events."""
    deadline = time.perf_counter() + timeout
    while not predicate():
        if time.perf_counter() > deadline:
            raise TimeoutError(f"benchmark condition not met in {timeout}s")
        await asyncio.sleep(interval)


def make_event(users: list[str], max_mentions: int = 5) -> MessageCreatedEvent:
    author = rng.choice(users)
    mentions = rng.sample(users, rng.randint(0, max_mentions))
    return MessageCreatedEvent.new(
        {
            "message_id": f"msg_{uuid.uuid4().hex[:12]}",
            "channel_id": f"ch_{rng.randint(0, 30)}",
            "author_id": author,
            "content": "프로젝트 배포 완료 — 확인 부탁드립니다. " * rng.randint(1, 4),
            "mentions": mentions,
        }
    )


def expected_notifications(events: list[MessageCreatedEvent]) -> int:
    return sum(len({u for u in e.payload.mentions if u != e.payload.author_id}) for e in events)


def settings_for(ep: Any, topic: str, db: str, **extra: Any) -> Settings:
    return Settings(
        kafka_bootstrap_servers=ep.kafka_bootstrap,
        kafka_consumer_group=f"bench-notifier-{uuid.uuid4().hex[:8]}",
        kafka_enable_idempotence=False,
        kafka_topic_messages_created=topic,
        kafka_topic_notifications_sent=f"{topic}-sent",
        mongo_url=ep.mongo_url,
        notifier_mongo_db=db,
        log_json=False,
        log_level="WARNING",
        **extra,
    )


async def drain(ep: Any, topic: str, db: str, events: list[MessageCreatedEvent]) -> dict[str, Any]:
    settings = settings_for(ep, topic, db, mq_batch_size=BATCH_EVENTS, kafka_max_poll_records=BATCH_EVENTS)
    store = NotificationStore(settings.mongo_url, db)
    await store.open()
    publisher = NotificationPublisher(settings, settings.kafka_topic_notifications_sent)
    await publisher.start()
    sink = NotificationSink(store, publisher, title="새 멘션", preview_chars=200)
    runner = ConsumerRunner(
        name="bench", settings=settings, topics=[MESSAGES_CREATED.renamed(topic)], sink=sink
    )
    with Timer() as produced:
        await produce(
            ep.kafka_bootstrap,
            topic,
            [encode(e) for e in events],
            keys=[e.channel_id.encode() for e in events],
        )
    expected = expected_notifications(events)
    await runner.start()
    try:
        await until(lambda: runner.counts.consumed > 0)
        started = time.perf_counter()
        await until(lambda: runner.counts.stored >= len(events))
        seconds = time.perf_counter() - started
    finally:
        await runner.close()
        await publisher.close()
    stored = await store.notifications.count_documents({})
    await store.close()
    assert stored == expected, f"stored {stored}, expected {expected}"
    return {
        "events": len(events),
        "notifications": stored,
        "seconds": seconds,
        "produce_s": produced.seconds,
        "batches": runner.counts.batches,
    }


async def raw_insert(ep: Any, db: str, events: list[MessageCreatedEvent], chunk: int) -> dict[str, Any]:
    store = NotificationStore(ep.mongo_url, db)
    await store.open()
    docs: list[dict[str, Any]] = []
    for i, e in enumerate(events):
        planned, _ = plan(
            e, Source("raw", 0, i), muted={}, created_at=now_ms(), title="새 멘션", preview_chars=200
        )
        docs.extend({**d, "seq": i} for d in planned)
    with Timer() as t:
        for k in range(0, len(docs), chunk):
            await store.notifications.insert_many(docs[k : k + chunk], ordered=False)
    await store.close()
    return {"notifications": len(docs), "seconds": t.seconds}


async def naive(ep: Any, topic: str, db: str, events: list[MessageCreatedEvent]) -> dict[str, Any]:
    """One event at a time: a preferences lookup, insert_one and publish-and-wait per notification."""
    store = NotificationStore(ep.mongo_url, db)
    await store.open()
    producer = AIOKafkaProducer(bootstrap_servers=ep.kafka_bootstrap, acks="all")
    await producer.start()
    count = 0
    try:
        with Timer() as t:
            for i, e in enumerate(events):
                planned, _ = plan(
                    e, Source(topic, 0, i), muted={}, created_at=now_ms(), title="새 멘션", preview_chars=200
                )
                for d in planned:
                    await store.preferences.find_one({"_id": d["user_id"]})
                    await store.notifications.insert_one(d)
                    await producer.send_and_wait(f"{topic}-sent", json.dumps(d, ensure_ascii=False).encode())
                    count += 1
    finally:
        await producer.stop()
        await store.close()
    return {"notifications": count, "seconds": t.seconds}


async def live(ep: Any, topic: str, db: str, notif_rate: float) -> dict[str, Any]:
    settings = settings_for(ep, topic, db)
    app = create_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, access_log=False))
    serving = asyncio.create_task(server.serve())
    await until(lambda: server.started, 0.02)
    url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    http = httpx.AsyncClient(base_url=url, timeout=None)
    users = USERS[:LIVE_USERS]
    sent_at: dict[str, float] = {}
    latencies: list[float] = []
    readers: list[asyncio.Task[None]] = []

    async def read(user: str) -> None:
        async with http.stream("GET", f"/notifications/{user}/stream") as resp:
            async for line in resp.aiter_lines():
                if line.startswith("data:"):
                    got = time.perf_counter()
                    item = json.loads(line[5:])
                    at = sent_at.get(item["event_id"])
                    if at is not None:
                        latencies.append(got - at)

    try:
        while True:  # consuming (group joined, partitions assigned) + live tail connected; /readyz answers
            # 200 "degraded" already while the consumer joins its group, which is not what is measured here
            r = await http.get("/readyz")
            checks = r.json().get("checks", {}) if r.status_code == 200 else {}
            if checks.get("consuming") == "ok" and checks.get("live_tail") == "ok":
                break
            await asyncio.sleep(0.2)
        readers = [asyncio.create_task(read(u)) for u in users]
        await until(lambda: app.state.hub.connections >= len(users), 0.02)
        producer = AIOKafkaProducer(**settings.producer_kwargs())
        await producer.start()
        events_per_s = notif_rate / (LIVE_USERS and 2.5)
        interval = 1.0 / events_per_s
        expected = 0
        started = time.perf_counter()
        n = 0
        while time.perf_counter() - started < LIVE_SECONDS:
            e = make_event(users)
            target = started + n * interval
            delay = target - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            sent_at[e.event_id] = time.perf_counter()
            await producer.send(topic, encode(e), key=e.channel_id.encode())
            expected += expected_notifications([e])
            n += 1
        await producer.flush()
        await producer.stop()
        with contextlib.suppress(TimeoutError):  # a shortfall shows in the "delivered" figure
            await until(lambda: len(latencies) >= expected, 0.05, timeout=15)
    finally:
        for task in readers:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await http.aclose()
        server.should_exit = True
        await serving
    lat = sorted(latencies)
    q = statistics.quantiles(lat, n=100) if len(lat) >= 2 else [float("nan")] * 99
    return {
        "events": n,
        "events_per_s": n / LIVE_SECONDS,
        "expected": expected,
        "delivered": len(lat),
        "p50_ms": q[49] * 1000,
        "p99_ms": q[98] * 1000,
        "max_ms": (lat[-1] * 1000) if lat else float("nan"),
    }


async def main() -> None:
    ep = ensure(["kafka", "mongo"])
    run = uuid.uuid4().hex[:8]
    topic, live_topic, db = f"bench-notifier-{run}", f"bench-notifier-live-{run}", f"bench_notifier_{run}"
    raw_db, naive_db = f"{db}_raw", f"{db}_naive"
    events = [make_event(USERS) for _ in range(N_EVENTS)]
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(ep.mongo_url)
    try:
        d = await drain(ep, topic, db, events)
        chunk = max(1, round(d["notifications"] / max(1, d["batches"])))
        r = await raw_insert(ep, raw_db, events, chunk)
        nv = await naive(ep, topic, naive_db, events[:N_NAIVE])
        service_rate = rate(d["notifications"], d["seconds"])
        print(f"drain: {d} -> {service_rate:,.0f}/s; raw: {r}; naive: {nv}", flush=True)
        raw_rate = rate(r["notifications"], r["seconds"])
        naive_rate = rate(nv["notifications"], nv["seconds"])
        lv = await live(ep, live_topic, db, service_rate / 2)
    finally:
        for name in (db, raw_db, naive_db):
            await mongo.drop_database(name)
        await mongo.close()
        await delete_topics(
            ep.kafka_bootstrap,
            [t for base in (topic, live_topic) for t in (base, f"{base}.dlq", f"{base}-sent")],
        )
    rows = [
        {
            "case": "service drain (consume+prefs+insert+publish+commit)",
            "notifications": d["notifications"],
            "seconds": d["seconds"],
            "notifications_per_s": service_rate,
        },
        {
            "case": f"raw insert_many ({chunk}/call)",
            "notifications": r["notifications"],
            "seconds": r["seconds"],
            "notifications_per_s": raw_rate,
        },
        {
            "case": "naive one at a time",
            "notifications": nv["notifications"],
            "seconds": nv["seconds"],
            "notifications_per_s": naive_rate,
        },
    ]
    summary = {
        "events": d["events"],
        "service_vs_raw": service_rate / raw_rate,
        "service_vs_naive": service_rate / naive_rate,
        "live_events_per_s": lv["events_per_s"],
        "live_delivered": f"{lv['delivered']}/{lv['expected']}",
        "live_p50_ms": lv["p50_ms"],
        "live_p99_ms": lv["p99_ms"],
        "live_max_ms": lv["max_ms"],
        "headline": headline(
            service_eps=service_rate,
            raw_eps=raw_rate,
            naive_eps=naive_rate,
            p50_s=lv["p50_ms"] / 1000,
            p99_s=lv["p99_ms"] / 1000,
            latency_of=f"produce→live SSE at {lv['events_per_s']:,.0f} ev/s",
            unit="notifications",
        ),
        "targets": targets(
            Target("× raw bulk", service_rate / raw_rate, ">=", 0.7),
            Target("p99 produce→live SSE", lv["p99_ms"], "<=", 1000, "ms"),
        ),
    }
    report("notifier", rows, summary=summary)


if __name__ == "__main__":
    asyncio.run(main())
