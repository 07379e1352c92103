"""log-sink: how close does the consumer get to MongoDB's raw bulk rate, and what does finalize() cost?

In one run, on the same server and the same documents:
  (a) the log-sink (ConsumerRunner + its sink) at the `make run` defaults (no batch tuning) draining a
      backlog of N events produced before it started,
  (b) raw AsyncMongoClient insert_many (unordered) of the same documents, MQ_MAX_BATCH per call, into a
      collection with the service's indexes (same schema),
  (b') the same into a collection with no index but ``_id`` (minimal),
  (c) naive insert_one per event (on a sample; its rate is what matters),
  (d) WideLogger.finalize() latency (p50/p99) vs a direct insert_one per event (p50/p99).
Targets (issue 19): a >= 0.9 x b, a >= 0.7 x b'; a >= 10 x c; finalize p99 <= direct p99 / 20.

    .venv/bin/python -m benchmarks.bench_log_sink      # BENCH_LOG_SINK_N=40000
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import time
import uuid
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaProducer
from consumer_runtime import ConsumerRunner, configure_logging
from consumer_runtime.testing import delete_topics
from consumer_runtime.topics import ensure_topics
from devservers import ensure
from log_sink.config import Settings
from log_sink.sink import WideEventSink
from log_sink.store import WideEventStore
from platform_events import LOG_EVENTS, decode
from pymongo import AsyncMongoClient
from wide_logging import WIDE_EVENTS, WideLogger, WideLoggingConfig, ensure_indexes, to_document

from benchmarks._common import Timer, pct, rate, report
from benchmarks._targets import Target, backlog, backlog_targets, headline, naive_ceiling, raw_batch, targets

N = int(os.environ.get("BENCH_LOG_SINK_N", "40000"))
NAIVE_N = int(os.environ.get("BENCH_LOG_SINK_NAIVE_N", "3000"))
LATENCY_N = int(os.environ.get("BENCH_LOG_SINK_LATENCY_N", "5000"))
DIRECT_N = int(os.environ.get("BENCH_LOG_SINK_DIRECT_N", "1000"))
BATCH = raw_batch()  # the raw baselines' bulk size: MQ_MAX_BATCH


def wide_event(i: int, run: str) -> dict[str, Any]:
    """A realistic request event (~450 bytes)."""
    return {
        "event_id": f"{run}-{i}",
        "timestamp": f"2026-11-23T10:{(i // 60) % 60:02d}:{i % 60:02d}.{i % 1000:03d}Z",
        "service": ("gateway", "orders", "payments")[i % 3],
        "kind": "http_request",
        "method": "POST" if i % 4 == 0 else "GET",
        "path": f"/api/orders/{i % 997}",
        "route": "/api/orders/{order_id}",
        "status": 500 if i % 50 == 0 else 200,
        "level": "error" if i % 50 == 0 else "info",
        "duration_ms": round(3 + (i % 97) * 0.37, 3),
        "request_id": uuid.UUID(int=i).hex,
        "user_id": f"user-{i % 5000}",
        "client_ip": f"10.0.{i % 250}.{i % 200}",
        "user_agent": "Mozilla/5.0 (X11; Linux x86_64) bench",
        "cart": {"items": i % 7, "total_krw": (i % 7) * 12_900},
    }


async def poll(done: Callable[[], bool], interval: float) -> None:
    while not done():  # noqa: ASYNC110 - polling a counter of the runner under measurement
        await asyncio.sleep(interval)


async def produce_all(bootstrap: str, topic: str, values: list[bytes], keys: list[bytes]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=20, max_batch_size=512 * 1024
    )
    await producer.start()
    try:
        futures = [await producer.send(topic, v, key=k) for v, k in zip(values, keys, strict=True)]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def main() -> None:
    configure_logging("bench_log_sink", "WARNING", json=False)
    ep = ensure(["kafka", "mongo"])
    run = uuid.uuid4().hex[:8]
    topic, db = f"bench-log-sink-{run}", f"bench_log_sink_{run}"
    latency_topic = f"{topic}-finalize"
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(ep.mongo_url, tz_aware=True)
    settings = Settings(  # what `make run` gives the service (its defaults), on this run's own names
        kafka_bootstrap_servers=ep.kafka_bootstrap,
        kafka_consumer_group=f"bench-log-sink-{run}",
        kafka_log_topic=topic,
        kafka_enable_idempotence=False,
        mongo_url=ep.mongo_url,
        log_mongo_db=db,
    )
    rows: list[dict[str, Any]] = []
    try:
        events = [wide_event(i, run) for i in range(N)]
        values = [json.dumps(e, separators=(",", ":")).encode() for e in events]
        keys = [e["event_id"].encode() for e in events]
        await ensure_topics(settings, [topic, f"{topic}.dlq", latency_topic])
        print(f"producing {N} events ({sum(map(len, values)) / N:.0f} B avg) to {topic} ...", flush=True)
        await produce_all(ep.kafka_bootstrap, topic, values, keys)

        # (a) the log-sink draining the topic
        store = WideEventStore(ep.mongo_url, db, retention_s=settings.retention_s)
        await store.open()
        runner = ConsumerRunner(
            name="log-sink", settings=settings, topics=[LOG_EVENTS.renamed(topic)], sink=WideEventSink(store)
        )
        t_start = time.perf_counter()
        await runner.start()
        await poll(lambda: bool(runner.status().assignment), 0.01)
        t_assigned = time.perf_counter()
        await poll(lambda: runner.counts.stored >= N, 0.02)
        t_done = time.perf_counter()
        batches = runner.counts.batches
        await runner.close()
        await store.close()
        assert await client[db][WIDE_EVENTS].count_documents({}) == N
        sink_s = t_done - t_assigned
        join = f"+{t_assigned - t_start:.1f}s group join"
        rows.append({"case": "a: log-sink drain at the defaults", "events": N, "seconds": sink_s,
                     "events_per_s": rate(N, sink_s), "batches": batches, "note": join})  # fmt: skip

        # (b) raw insert_many of the same documents, MQ_MAX_BATCH per call, same indexes
        docs = [to_document(decode(LOG_EVENTS, v)) for v in values]
        raw_coll = client[db]["raw_insert_many"]
        await ensure_indexes(raw_coll, retention_s=settings.retention_s)
        with Timer() as t:
            for i in range(0, N, BATCH):
                await raw_coll.insert_many(docs[i : i + BATCH], ordered=False)
        rows.append({"case": f"b: raw insert_many x{BATCH}, same schema", "events": N, "seconds": t.seconds,
                     "events_per_s": rate(N, t.seconds), "note": "same docs, same indexes"})  # fmt: skip
        raw_s = t.seconds

        # (b') the same into a collection with only _id
        minimal = client[db]["raw_minimal"]
        with Timer() as t:
            for i in range(0, N, BATCH):
                await minimal.insert_many([dict(d) for d in docs[i : i + BATCH]], ordered=False)
        rows.append({"case": f"b': raw insert_many x{BATCH}, minimal", "events": N, "seconds": t.seconds,
                     "events_per_s": rate(N, t.seconds), "note": "same docs, _id only"})  # fmt: skip
        minimal_s = t.seconds
        await minimal.drop()

        # (c) naive insert_one per event, into the same collection as (b) (same size, same indexes: the
        # stand-in server slows down as a collection grows, so an empty collection would flatter (c))
        sample = [to_document(decode(LOG_EVENTS, json.dumps(wide_event(i, f"{run}-naive")).encode()))
                  for i in range(NAIVE_N)]  # fmt: skip
        with Timer() as t:
            for doc in sample:
                await raw_coll.insert_one(doc)
        naive_rate = rate(len(sample), t.seconds)
        rows.append({"case": "c: naive insert_one", "events": len(sample), "seconds": t.seconds,
                     "events_per_s": naive_rate, "note": "sample into (b)'s collection"})  # fmt: skip

        # (d) request-path cost: finalize() vs a direct insert_one
        cfg = WideLoggingConfig(
            service="bench", kafka_bootstrap_servers=ep.kafka_bootstrap, log_topic=latency_topic,
            enable_idempotence=False, mongo_url=ep.mongo_url, mongo_db=db,
        )  # fmt: skip
        logger = WideLogger(cfg)
        await logger.start()
        finalize_us: list[float] = []
        for i in range(LATENCY_N):
            ev = wide_event(i, f"{run}-fin")
            t0 = time.perf_counter_ns()
            logger.finalize(ev)
            finalize_us.append((time.perf_counter_ns() - t0) / 1000)
            await asyncio.sleep(0)  # the request handler yields; the publisher works in the gaps
        with Timer() as drain:
            await logger.close()
        counters = logger.counters
        direct_coll = raw_coll
        direct_us: list[float] = []
        for i in range(DIRECT_N):
            doc = to_document(decode(LOG_EVENTS, json.dumps(wide_event(i, f"{run}-dir")).encode()))
            t0 = time.perf_counter_ns()
            await direct_coll.insert_one(doc)
            direct_us.append((time.perf_counter_ns() - t0) / 1000)
        for name, lat, n in (
            ("d: finalize()", finalize_us, LATENCY_N),
            ("d: direct insert_one", direct_us, DIRECT_N),
        ):
            rows.append({"case": name, "events": n, "p50_us": pct(lat, 50), "p99_us": pct(lat, 99),
                         "mean_us": statistics.fmean(lat)})  # fmt: skip

        a, b, b_min = rate(N, sink_s), rate(N, raw_s), rate(N, minimal_s)
        summary = {
            "backlog": backlog(
                events=N,
                service_eps=a,
                raw_same_eps=b,
                raw_minimal_eps=b_min,
                batches=batches,
                how=(
                    f"insert_many (unordered) of {BATCH} documents per call into a collection with the "
                    "service's indexes (same schema) and into one with only `_id` (minimal)"
                ),
            ),
            "headline": headline(
                service_eps=a,
                raw_eps=b,
                naive_eps=naive_rate,
                p50_s=pct(finalize_us, 50) / 1e6,
                p99_s=pct(finalize_us, 99) / 1e6,
                latency_of="finalize() on the request path",
            ),
            "targets": targets(
                *backlog_targets(a, b, b_min, minimal_goal=0.7),
                Target(
                    "× naive",
                    a / naive_rate,
                    ">=",
                    10,
                    why_missed=naive_ceiling(a, b, naive_rate, 10, "insert_many", "insert_one per event"),
                ),
                Target(
                    "direct insert_one p99 ÷ finalize() p99",
                    pct(direct_us, 99) / pct(finalize_us, 99),
                    ">=",
                    20,
                ),
            ),
            "direct_p50_over_finalize_p50": round(pct(direct_us, 50) / pct(finalize_us, 50), 1),
            "finalize_counters": {
                "published": counters.published,
                "fallback": counters.fallback,
                "dropped": counters.dropped,
            },
            "finalize_drain_s": round(drain.seconds, 2),
        }
        report("log_sink", rows, summary=summary)
    finally:
        await client.drop_database(db)
        await client.close()
        await delete_topics(ep.kafka_bootstrap, [topic, f"{topic}.dlq", latency_topic])


if __name__ == "__main__":
    asyncio.run(main())
