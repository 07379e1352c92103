"""search-indexer: drain rate vs raw async_bulk vs naive index(); produce→searchable latency; rebuild rate.

In one run, on the local broker and Elasticsearch-protocol server (started via devservers.ensure):

(a) the indexer (ConsumerRunner + MessageSink) at the `make run` defaults (no batch tuning) drains a backlog
    of N ``message.created`` events produced before it started;
(b) raw ``async_bulk`` of the very same documents (chunks of MQ_MAX_BATCH) into a fresh index with the
    same mapping and settings (same schema);
(b') the same into an index that maps nothing (``dynamic: false``: ``_id`` and ``_source`` only, minimal);
(c) naive: one ``index()`` call per event (on a sample; a rate is a rate);
(d) p99 produce→searchable while producing at half of (a)'s rate (sampled messages, searched by id);
(e) rebuild by replay of everything above into a new index, then the alias swap: events/s.

Targets (issue 19): a >= 0.9 x b, a >= 0.7 x b'; a >= 5 x c; p99 produce→searchable <= 2 s.

Run: ``.venv/bin/python -m benchmarks.bench_search_indexer`` (``BENCH_SI_EVENTS`` = N, default 20000).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
import uuid
from typing import Any

from aiokafka import AIOKafkaProducer
from consumer_runtime import ConsumerRunner, configure_logging
from consumer_runtime.testing import delete_topics, wait_until
from consumer_runtime.topics import ensure_topics
from devservers import ensure
from elasticsearch import AsyncElasticsearch
from elasticsearch.helpers import async_bulk
from platform_events import MessageCreatedEvent, encode
from search_indexer import handlers as h
from search_indexer.config import Settings
from search_indexer.rebuild import RebuildManager
from search_indexer.sink import MessageSink
from search_indexer.store import MessageStore

from benchmarks._common import Timer, rate, report
from benchmarks._targets import Target, backlog, backlog_targets, headline, naive_ceiling, raw_batch, targets

N = int(os.environ.get("BENCH_SI_EVENTS", "20000"))
NAIVE_SAMPLE = int(os.environ.get("BENCH_SI_NAIVE", "2000"))
LATENCY_SECONDS = float(os.environ.get("BENCH_SI_LATENCY_S", "10"))
BATCH = raw_batch()  # the raw baselines' bulk size: MQ_MAX_BATCH
WORDS = [
    "배포",
    "완료",
    "서버",
    "점검",
    "프로젝트",
    "회의",
    "일정",
    "장애",
    "복구",
    "리뷰",
    "deploy",
    "release",
]


def event(i: int, prefix: str) -> MessageCreatedEvent:
    words = " ".join(WORDS[(i * k) % len(WORDS)] for k in (1, 3, 7, 11))
    return MessageCreatedEvent.new(
        {
            "message_id": f"{prefix}{i}",
            "channel_id": f"ch_{i % 50}",
            "author_id": f"user_{i % 500}",
            "content": f"메시지 {i}: {words} 관련 공유드립니다",
            "mentions": [f"user_{(i + 1) % 500}"],
            "attachments": [],
        },
        event_id=f"evt_{prefix}{i}",
    )


async def produce_all(bootstrap: str, topic: str, events: list[MessageCreatedEvent]) -> float:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_batch_size=512 * 1024
    )
    await producer.start()
    try:
        with Timer() as t:
            for start in range(0, len(events), 5000):
                futs = [
                    await producer.send(topic, encode(e), key=e.channel_id.encode())
                    for e in events[start : start + 5000]
                ]
                await asyncio.gather(*futs)
        return t.seconds
    finally:
        await producer.stop()


async def drain(settings: Settings, store: MessageStore, total: int) -> dict[str, Any]:
    runner = ConsumerRunner(
        name="bench-search-indexer", settings=settings, topics=settings.topic_specs(), sink=MessageSink(store)
    )
    started = time.perf_counter()
    await runner.start()
    first: float | None = None
    try:
        while runner.counts.stored + runner.counts.dead_lettered < total:
            if first is None and runner.counts.consumed > 0:
                first = time.perf_counter()
            if time.perf_counter() - started > 120:
                raise RuntimeError(f"drain stalled: {runner.status()}")
            await asyncio.sleep(0.01)
        done = time.perf_counter()
    finally:
        await runner.close()
    return {
        "batches": runner.counts.batches,
        "wall_s": done - started,
        "steady_s": done - (first or started),
        "dead": runner.counts.dead_lettered,
    }


async def raw_bulk(es: AsyncElasticsearch, index: str, docs: list[dict[str, Any]]) -> float:
    with Timer() as t:
        ok, errors = await async_bulk(
            es,
            ({"_op_type": "create", "_index": index, "_id": d["message_id"], "_source": d} for d in docs),
            chunk_size=BATCH,
            max_chunk_bytes=512 * 1024 * 1024,
            raise_on_error=True,
        )
    assert ok == len(docs), (ok, errors)
    return t.seconds


async def naive(es: AsyncElasticsearch, index: str, docs: list[dict[str, Any]]) -> float:
    with Timer() as t:
        for d in docs:
            await es.index(index=index, id=d["message_id"], document=d)
    return t.seconds


async def latency(settings: Settings, store: MessageStore, topic: str, target_rate: float) -> dict[str, Any]:
    """Produce at ``target_rate`` for LATENCY_SECONDS; every 100th message is timed until it is searchable.

    The stand-in server scans every document on each search, so the probe searches run every 250 ms (the
    latency resolution) against a fresh index: polling harder would measure the probe, not the indexer.
    """
    runner = ConsumerRunner(
        name="bench-search-indexer", settings=settings, topics=settings.topic_specs(), sink=MessageSink(store)
    )
    await runner.start()
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all", linger_ms=2)
    await producer.start()
    sent_at: dict[str, float] = {}
    seen_at: dict[str, float] = {}
    stop = asyncio.Event()

    async def poll() -> None:
        while not (stop.is_set() and len(seen_at) == len(sent_at)):
            pending = [m for m in sent_at if m not in seen_at]
            if pending:
                issued = time.perf_counter()  # what a search finds was searchable when it was issued
                resp = await store.es.search(
                    index=store.alias,
                    query={"terms": {"message_id": pending}},
                    size=len(pending),
                    source=False,
                )
                for hit in resp["hits"]["hits"]:
                    seen_at.setdefault(hit["_id"], issued)
            await asyncio.sleep(0.25)

    poller = asyncio.create_task(poll())
    produced = 0
    try:
        # let the group settle first (Tansu takes a few seconds to assign): latency is about steady state
        await wait_until(lambda: runner.status().assignment, timeout=60, what="partitions assigned")
        tick = 0.01
        per_tick = target_rate * tick
        start = time.perf_counter()
        owed = 0.0
        while time.perf_counter() - start < LATENCY_SECONDS:
            owed += per_tick
            futs = []
            while owed >= 1:
                e = event(produced, "lat-")
                futs.append(await producer.send(topic, encode(e), key=e.channel_id.encode()))
                if produced % 100 == 0:
                    sent_at[e.message_id] = time.perf_counter()
                produced += 1
                owed -= 1
            await asyncio.sleep(max(0.0, start + (produced / target_rate) - time.perf_counter()))
        await producer.flush()
        elapsed = time.perf_counter() - start
        stop.set()
        await asyncio.wait_for(poller, 60)
    finally:
        stop.set()
        poller.cancel()
        await producer.stop()
        await runner.close()
    lat = sorted(seen_at[m] - sent_at[m] for m in sent_at)
    q = statistics.quantiles(lat, n=100) if len(lat) >= 2 else lat * 99
    return {
        "produced": produced,
        "actual_rate": produced / elapsed,
        "samples": len(lat),
        "p50_s": q[49],
        "p99_s": q[98],
        "max_s": lat[-1],
    }


async def main() -> None:
    configure_logging("bench-search-indexer", "WARNING", json=False)
    ep = ensure(["kafka", "elasticsearch"])
    run = uuid.uuid4().hex[:8]
    base = f"bench-si-{run}"
    topics = [f"{base}.created", f"{base}.updated", f"{base}.deleted"]
    alias = f"bench-si-{run}"
    settings = Settings(  # what `make run` gives the service (its defaults), on this run's own names
        kafka_bootstrap_servers=ep.kafka_bootstrap,
        kafka_enable_idempotence=False,
        kafka_consumer_group=f"{base}-group",
        kafka_topic_messages_created=topics[0],
        kafka_topic_messages_updated=topics[1],
        kafka_topic_messages_deleted=topics[2],
        elasticsearch_url=ep.elasticsearch_url,
        search_index_alias=alias,
    )
    es = AsyncElasticsearch(ep.elasticsearch_url, request_timeout=120)
    store = MessageStore.from_settings(settings)
    raw_index, naive_index, minimal_index = f"{alias}-rawbulk", f"{alias}-naive", f"{alias}-minimal"
    rows: list[dict[str, Any]] = []
    summary: dict[str, Any] = {}
    try:
        await ensure_topics(settings, topics + [f"{t}.dlq" for t in topics])
        await store.ensure_alias()
        events = [event(i, "m") for i in range(N)]
        docs = [h.to_source(h.from_event(e)) for e in events]
        produce_s = await produce_all(ep.kafka_bootstrap, topics[0], events)
        rows.append(
            {"step": "produce (setup)", "events": N, "seconds": produce_s, "events_per_s": rate(N, produce_s)}
        )

        d = await drain(settings, store, N)
        a = rate(N, d["steady_s"])
        rows.append(
            {
                "step": "(a) indexer drain",
                "events": N,
                "seconds": d["steady_s"],
                "events_per_s": a,
                "note": f"first fetch→last commit; wall incl. group join {d['wall_s']:.1f}s",
            }
        )
        await store.refresh()
        assert await store.count() == N

        for idx in (raw_index, naive_index):
            await store.create_index(idx)
        raw_s = await raw_bulk(es, raw_index, docs)
        b = rate(N, raw_s)
        rows.append(
            {
                "step": "(b) raw async_bulk",
                "events": N,
                "seconds": raw_s,
                "events_per_s": b,
                "note": f"chunks of {BATCH}, same documents, same mapping",
            }
        )
        await es.indices.create(
            index=minimal_index,
            settings={
                "number_of_shards": settings.search_index_shards,
                "number_of_replicas": settings.search_index_replicas,
                "refresh_interval": settings.search_index_refresh_interval,
            },
            mappings={"dynamic": False},
        )
        minimal_s = await raw_bulk(es, minimal_index, docs)
        b_min = rate(N, minimal_s)
        rows.append(
            {
                "step": "(b') raw async_bulk, minimal index",
                "events": N,
                "seconds": minimal_s,
                "events_per_s": b_min,
                "note": f"chunks of {BATCH}, same documents, nothing mapped",
            }
        )
        await store.delete_index(minimal_index)
        sample = docs[:NAIVE_SAMPLE]
        naive_s = await naive(es, naive_index, sample)
        c = rate(len(sample), naive_s)
        rows.append(
            {
                "step": "(c) naive index() per event",
                "events": len(sample),
                "seconds": naive_s,
                "events_per_s": c,
                "note": "sample of the same documents",
            }
        )
        for idx in (raw_index, naive_index):
            await store.delete_index(idx)

        # a fresh, empty index behind the alias for the latency phase (the rebuild below restores everything)
        for idx in await store.alias_indices():
            await store.delete_index(idx)
        await store.ensure_alias()
        lat = await latency(settings, store, topics[0], a / 2)
        rows.append(
            {
                "step": "(d) produce→searchable at a/2",
                "events": lat["produced"],
                "seconds": LATENCY_SECONDS,
                "events_per_s": lat["actual_rate"],
                "note": f"p50 {lat['p50_s']:.3f}s p99 {lat['p99_s']:.3f}s max {lat['max_s']:.3f}s "
                f"({lat['samples']} samples)",
            }
        )

        total_events = N + lat["produced"]
        manager = RebuildManager(settings, store)
        with Timer() as t:
            await manager.start()
            st = await manager.wait(timeout_s=150)
        assert st["state"] == "done", st
        rebuild_rate = rate(st["replayed"], t.seconds)
        rows.append(
            {
                "step": "(e) rebuild by replay",
                "events": st["replayed"],
                "seconds": t.seconds,
                "events_per_s": rebuild_rate,
                "note": f"wall incl. index create, group join, swap; documents {st['documents']}",
            }
        )
        assert st["replayed"] >= total_events, st
        assert st["documents"] == total_events, st

        summary = {
            "backlog": backlog(
                events=N,
                service_eps=a,
                raw_same_eps=b,
                raw_minimal_eps=b_min,
                batches=int(d["batches"]),
                how=(
                    f"async_bulk of {BATCH} documents per request into an index with the service's mapping "
                    "and settings (same schema) and into one that maps nothing (`dynamic: false`, minimal)"
                ),
            ),
            "events": N,
            "a_drain_per_s": round(a),
            "b_raw_bulk_per_s": round(b),
            "c_naive_per_s": round(c),
            "a_over_b": round(a / b, 2),
            "a_over_c": round(a / c, 2),
            "p99_produce_to_searchable_s": round(lat["p99_s"], 3),
            "headline": headline(
                service_eps=a,
                raw_eps=b,
                naive_eps=c,
                p50_s=lat["p50_s"],
                p99_s=lat["p99_s"],
                latency_of=f"produce→searchable at {lat['actual_rate']:,.0f} ev/s",
            ),
            "targets": targets(
                *backlog_targets(a, b, b_min, minimal_goal=0.7),
                Target(
                    "× naive",
                    a / c,
                    ">=",
                    5,
                    why_missed=naive_ceiling(a, b, c, 5, "_bulk", "one index call per event"),
                ),
                Target(
                    "p99 produce→searchable",
                    lat["p99_s"],
                    "<=",
                    2.0,
                    "s",
                    why_missed="a batch's fill time + the index's 1 s refresh interval + noida-db's bulk "
                    "latency under concurrent load on 2 cores",
                ),
            ),
            "rebuild_events_per_s": round(rebuild_rate),
            "rebuild_status_rate_eps": st["rate_eps"],
        }
    finally:
        for idx in await store.alias_indices():
            await store.delete_index(idx)
        for idx in (raw_index, naive_index, minimal_index):
            await store.delete_index(idx)
        await store.close()
        await es.close()
        await delete_topics(ep.kafka_bootstrap, topics + [f"{t}.dlq" for t in topics])
    report("search_indexer", rows, summary=summary)


if __name__ == "__main__":
    asyncio.run(main())
