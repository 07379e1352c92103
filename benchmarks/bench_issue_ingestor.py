"""issue-ingestor: how close does the service, at the `make run` defaults, get to MySQL's own bulk rate?

In one run, on the same MariaDB and the same events (N factory issues, 20 % with a solved follow-up):
  (a) the service (create_app: consumer runtime + the issue sink) at the `make run` defaults (no batch
      tuning) draining a backlog of N events produced before it started;
  (b) raw bulk into the same schema: the rows the service writes (issues, their event history, sessions)
      with asyncmy ``executemany`` upserts, MQ_MAX_BATCH events per transaction;
  (b') raw bulk into a minimal table (the issue columns, primary key only): one upsert per event, the same
      bulk size — (b) ÷ (b') is the schema's cost, (a) ÷ (b) the pipeline's;
  (c) a naive loop: one INSERT ... ON DUPLICATE KEY UPDATE + COMMIT per event (on a sample);
  (d) produce→row latency at the defaults while a separate process produces at half of (a)'s rate: an
      event counts as stored when its offset is committed, which happens only after the MySQL commit.
Targets (issue 19): a >= 0.9 x b, a >= 0.3 x b'; a >= 10 x c; p99 latency <= 0.5 s.

    .venv/bin/python -m benchmarks.bench_issue_ingestor      # BENCH_ISSUE_EVENTS=30000
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks._common import Timer, rate, report
from benchmarks._targets import (
    Target,
    backlog,
    backlog_targets,
    headline,
    naive_ceiling,
    raw_batch,
    targets,
)

N = int(os.environ.get("BENCH_ISSUE_EVENTS", "30000"))
BATCH = raw_batch()  # the raw baselines' bulk size: MQ_MAX_BATCH
NAIVE_SAMPLE = int(os.environ.get("BENCH_ISSUE_NAIVE", "2000"))
LATENCY_SECONDS = float(os.environ.get("BENCH_ISSUE_LATENCY_S", "8"))
PASSWORD = "bench-pw"
MODES = ["프레스", "용접기", "도장설비", "차량조립설비"]
PROCESSES = ["장애접수", "정기점검"]


def make_events(n: int, prefix: str) -> list[tuple[bytes, bytes]]:
    """(key, value) pairs: issues reported, every 5th solved later; all JSON as the monitors send it."""
    base = datetime(2025, 8, 8, tzinfo=UTC)
    out: list[tuple[bytes, bytes]] = []
    issues = n - n // 5
    for i in range(issues):
        issue = f"{prefix}_{i:07d}"
        body: dict[str, Any] = {
            "issue": issue,
            "processType": PROCESSES[i % 2],
            "modeType": MODES[i % 4],
            "modeLogId": f"{prefix}_LOG_{i:07d}",
            "description": f"100톤 프레스 유압 이상 #{i}",
            "isSolved": False,
            "timestamp": (base + timedelta(milliseconds=i)).isoformat().replace("+00:00", "Z"),
        }
        out.append((issue.encode(), json.dumps(body, ensure_ascii=False).encode()))
        if i % 4 == 0 and len(out) < n:
            solved = {**body, "isSolved": True, "description": f"조치 완료 #{i}"}
            solved["timestamp"] = (
                (base + timedelta(hours=1, milliseconds=i)).isoformat().replace("+00:00", "Z")
            )
            out.append((issue.encode(), json.dumps(solved, ensure_ascii=False).encode()))
    return out[:n]


async def produce_all(bootstrap: str, topic: str, events: list[tuple[bytes, bytes]]) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=20, max_batch_size=512 * 1024
    )
    await producer.start()
    try:
        futures = [await producer.send(topic, value=v, key=k) for k, v in events]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def produce_at_rate(
    bootstrap: str, topic: str, prefix: str, per_second: float, seconds: float, out: str
) -> None:
    """Runs in its own process: produce at a steady rate, write (partition, offset, send time) lines."""

    async def run() -> None:
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=2)
        await producer.start()
        total = int(per_second * seconds)
        events = make_events(total, prefix)
        sent: list[tuple[asyncio.Future[Any], float]] = []
        start = time.monotonic()
        try:
            for n, (key, value) in enumerate(events):
                delay = start + n / per_second - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                at = time.time()
                sent.append((await producer.send(topic, value=value, key=key), at))
            metas = await asyncio.gather(*(f for f, _ in sent))
        finally:
            await producer.stop()
        lines = [f"{md.partition} {md.offset} {at}" for md, (_, at) in zip(metas, sent, strict=True)]
        Path(out).write_text("\n".join(lines) + "\n")  # noqa: ASYNC240 - after the measurement

    asyncio.run(run())


async def main() -> None:
    from asgi_lifespan import LifespanManager
    from consumer_runtime.testing import delete_topics, wait_until
    from consumer_runtime.topics import ensure_topics
    from devservers import drop_mysql_database_async, ensure, ensure_mysql_database_async
    from issue_ingestor.app import create_app
    from issue_ingestor.config import Settings
    from issue_ingestor.handlers import IssueRow, make_version

    # the datastore adapter and its statements (the service's sink, issue_ingestor.sink.IssueSink, runs them)
    from issue_ingestor.store import INSERT_EVENTS, UPSERT_ISSUES, UPSERT_SESSIONS, IssueStore, utc_now_naive
    from platform_events import parse_timestamp

    ep = ensure(["kafka", "mysql"])
    tag = uuid.uuid4().hex[:8]
    db_name, user = f"bench_ii_{tag}", f"bii_{tag}"
    topic, lat_topic = f"bench-ii-{tag}", f"bench-ii-lat-{tag}"
    await ensure_mysql_database_async(db_name, user, PASSWORD, port=ep.mysql_port)

    def settings(group: str, topic_name: str) -> Settings:
        """What `make run` gives the service (its defaults), on this run's own names and database."""
        return Settings(
            kafka_bootstrap_servers=ep.kafka_bootstrap,
            kafka_enable_idempotence=False,
            kafka_control_enabled=False,
            kafka_consumer_group=group,
            kafka_topic_chatbot_issues=topic_name,
            db_host=f"{ep.mysql_host}:{ep.mysql_port}",
            db_name=db_name,
            db_username=user,
            db_password=PASSWORD,
        )

    base = settings(f"bench-ii-{tag}", topic)
    admin = IssueStore(base)
    await admin.open()

    async def wipe() -> None:
        async with admin.connection() as conn, conn.cursor() as cur:
            await cur.execute("SHOW TABLES")
            tables = {row[0] for row in await cur.fetchall()}
            for table in ("ChatbotSession", "ChatbotIssueEvent", "ChatbotIssue", "MinimalIssue"):
                if table in tables:
                    await cur.execute(f"DELETE FROM {table}")
            await conn.commit()

    async def count(table: str = "ChatbotIssue") -> int:
        async with admin.connection() as conn, conn.cursor() as cur:
            await cur.execute(f"SELECT COUNT(*) FROM {table}")
            (n,) = await cur.fetchone()
            await conn.commit()
        return int(n)

    rows: list[dict[str, Any]] = []
    summary: dict[str, Any] = {"events": N, "raw_batch": BATCH}
    try:
        events = make_events(N, f"B{tag}")
        await ensure_topics(base, [topic, f"{topic}.dlq", lat_topic, f"{lat_topic}.dlq"])
        with Timer() as t_prod:
            await produce_all(ep.kafka_bootstrap, topic, events)
        print(f"produced {N} events in {t_prod.seconds:.1f}s", flush=True)
        distinct = len({k for k, _ in events})

        # (a) the service drains the topic
        app = create_app(base)
        runner = app.state.runner
        async with LifespanManager(app, startup_timeout=60, shutdown_timeout=60):
            await wait_until(
                lambda: runner.counts.consumed > 0, timeout=60, interval=0.005, what="first fetch"
            )
            first = time.perf_counter()
            await wait_until(lambda: runner.counts.stored >= N, timeout=300, interval=0.01, what="drained")
            drain_s = time.perf_counter() - first
            batches = runner.counts.batches
        assert await count() == distinct, "service stored a wrong number of rows"
        a = rate(N, drain_s)
        rows.append(
            {
                "case": "a: service drain at the defaults (Kafka→MySQL)",
                "events": N,
                "seconds": drain_s,
                "events_per_s": a,
                "batches": batches,
            }
        )
        print(f"(a) {a:,.0f} events/s", flush=True)

        # (b) raw executemany upserts of the same rows, same batch size
        await wipe()
        issue_params: list[tuple[Any, ...]] = []
        event_params: list[tuple[Any, ...]] = []
        session_params: list[tuple[Any, ...]] = []
        opened: dict[str, datetime] = {}
        for i, (_key, value) in enumerate(events):
            body = json.loads(value)
            when = parse_timestamp(body["timestamp"])
            ts = when.replace(tzinfo=None)
            version = make_version(when, 0, i)
            row = IssueRow(
                body["issue"], body["processType"], body["modeType"], body["modeLogId"], body["description"],
                body["isSolved"], ts, 0, i, 1, version, version,
            )  # fmt: skip
            issue_params.append(row.params(utc_now_naive()))
            event_params.append((body["issue"], version, body["isSolved"]))
            if body["isSolved"]:
                session_params.append((body["issue"], 1, "closed", opened[body["issue"]], ts))
            else:
                opened[body["issue"]] = ts
                session_params.append((body["issue"], 1, "open", ts, None))
        with Timer() as t_raw:
            async with admin.connection() as conn, conn.cursor() as cur:
                for start in range(0, N, BATCH):
                    await cur.executemany(UPSERT_ISSUES, issue_params[start : start + BATCH])
                    await cur.executemany(INSERT_EVENTS, event_params[start : start + BATCH])
                    await cur.executemany(UPSERT_SESSIONS, session_params[start : start + BATCH])
                    await conn.commit()
        assert await count() == distinct
        b = rate(N, t_raw.seconds)
        rows.append(
            {
                "case": f"b: raw executemany, same schema ({BATCH}/txn)",
                "events": N,
                "seconds": t_raw.seconds,
                "events_per_s": b,
            }
        )
        print(f"(b) {b:,.0f} events/s", flush=True)

        # (b') raw bulk into a minimal table: ChatbotIssue's columns, its primary key only
        async with admin.connection() as conn, conn.cursor() as cur:
            await cur.execute("CREATE TABLE IF NOT EXISTS MinimalIssue LIKE ChatbotIssue")
            await cur.execute(
                "SELECT DISTINCT INDEX_NAME FROM information_schema.STATISTICS "
                "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'MinimalIssue' AND INDEX_NAME <> 'PRIMARY'"
            )
            for (index,) in await cur.fetchall():
                await cur.execute(f"ALTER TABLE MinimalIssue DROP INDEX `{index}`")
            await conn.commit()
        upsert_minimal = UPSERT_ISSUES.replace("INTO ChatbotIssue ", "INTO MinimalIssue ", 1)
        assert upsert_minimal != UPSERT_ISSUES
        with Timer() as t_min:
            async with admin.connection() as conn, conn.cursor() as cur:
                for start in range(0, N, BATCH):
                    await cur.executemany(upsert_minimal, issue_params[start : start + BATCH])
                    await conn.commit()
        assert await count("MinimalIssue") == distinct
        b_min = rate(N, t_min.seconds)
        rows.append(
            {
                "case": f"b': raw executemany, minimal table ({BATCH}/txn)",
                "events": N,
                "seconds": t_min.seconds,
                "events_per_s": b_min,
            }
        )
        print(f"(b') {b_min:,.0f} events/s", flush=True)

        # (c) naive: one upsert + commit per event
        await wipe()
        sample = min(NAIVE_SAMPLE, N)
        with Timer() as t_naive:
            async with admin.connection() as conn, conn.cursor() as cur:
                for params in issue_params[:sample]:
                    await cur.execute(UPSERT_ISSUES, params)
                    await conn.commit()
        c = rate(sample, t_naive.seconds)
        rows.append(
            {
                "case": "c: naive INSERT+COMMIT each",
                "events": sample,
                "seconds": t_naive.seconds,
                "events_per_s": c,
            }
        )
        print(f"(c) {c:,.0f} events/s", flush=True)

        # (d) produce→row latency at half of (a)'s rate
        await wipe()
        target = a / 2
        lat_app = create_app(settings(f"bench-ii-lat-{tag}", lat_topic))
        lat_runner = lat_app.state.runner
        seen: dict[int, list[tuple[int, float]]] = {}
        with tempfile.TemporaryDirectory() as tmp:
            out = str(Path(tmp) / "sent.txt")
            async with LifespanManager(lat_app, startup_timeout=60, shutdown_timeout=60):
                await wait_until(lambda: lat_runner.status().assignment, timeout=60, what="assignment")
                proc = multiprocessing.get_context("spawn").Process(
                    target=produce_at_rate,
                    args=(ep.kafka_bootstrap, lat_topic, f"L{tag}", target, LATENCY_SECONDS, out),
                )
                proc.start()
                expected = int(target * LATENCY_SECONDS)
                deadline = time.monotonic() + LATENCY_SECONDS + 60
                while time.monotonic() < deadline:
                    now = time.time()
                    for part in lat_runner.status().assignment:
                        committed = part.committed
                        history = seen.setdefault(part.partition, [])
                        if committed is not None and (not history or history[-1][0] != committed):
                            history.append((committed, now))
                    if lat_runner.counts.stored >= expected and not proc.is_alive():
                        break
                    await asyncio.sleep(0.002)
                proc.join(30)
            latencies = []
            by_second: dict[int, list[float]] = {}
            first_at: float | None = None
            for line in Path(out).read_text().splitlines():  # noqa: ASYNC240 - after the measurement
                part_s, off_s, at_s = line.split()
                part, off, at = int(part_s), int(off_s), float(at_s)
                done_at = next((t for committed, t in seen.get(part, []) if committed > off), None)
                if done_at is not None:
                    latencies.append(done_at - at)
                    by_second.setdefault(int(at - first_at) if first_at else 0, []).append(done_at - at)
                if first_at is None:
                    first_at = at
        latencies.sort()
        if os.environ.get("BENCH_ISSUE_DEBUG"):
            for sec, values in sorted(by_second.items()):
                print(sec, len(values), round(max(values), 3), round(statistics.median(values), 3))
            print(lat_runner.counts, lat_runner.last_batch)
        if latencies:
            p50 = statistics.median(latencies)
            p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
            rows.append(
                {
                    "case": f"d: latency at {target:,.0f} ev/s",
                    "events": len(latencies),
                    "p50_s": p50,
                    "p99_s": p99,
                    "max_s": latencies[-1],
                }
            )
            summary["latency_rate_per_s"] = target
            summary["latency_p50_s"] = p50
            summary["latency_p99_s"] = p99
            summary["latency_events"] = len(latencies)
        summary.update(
            {
                "a_events_per_s": a,
                "b_events_per_s": b,
                "b_minimal_events_per_s": b_min,
                "c_events_per_s": c,
                "a_over_b": a / b,
                "a_over_b_minimal": a / b_min,
                "a_over_c": a / c,
                "backlog": backlog(
                    events=N,
                    service_eps=a,
                    raw_same_eps=b,
                    raw_minimal_eps=b_min,
                    batches=batches,
                    how=(
                        f"same schema: per {BATCH} events one transaction of executemany upserts of the "
                        "issues, their event history and sessions; minimal: `ChatbotIssue`'s columns with "
                        "only the primary key, one upsert per event"
                    ),
                ),
                "headline": headline(
                    service_eps=a,
                    raw_eps=b,
                    naive_eps=c,
                    p50_s=summary.get("latency_p50_s"),
                    p99_s=summary.get("latency_p99_s"),
                    latency_of=f"produce→stored at {summary.get('latency_rate_per_s', 0):,.0f} ev/s",
                ),
                "targets": targets(
                    *backlog_targets(
                        a,
                        b,
                        b_min,
                        minimal_goal=0.3,
                        same_gap=(
                            "per batch the service also locks and reads its issues' rows and latest sessions "
                            "(SELECT … FOR UPDATE: sessions open and close on it; the history only for late "
                            "events), decodes and validates every event and commits the offsets, one step "
                            "after the other; the raw case only writes"
                        ),
                    ),
                    Target(
                        "× naive",
                        a / c,
                        ">=",
                        10,
                        why_missed=naive_ceiling(a, b, c, 10, "executemany", "INSERT+COMMIT per event"),
                    ),
                    Target("p99 produce→stored", summary.get("latency_p99_s", float("inf")), "<=", 0.5, "s"),
                ),
            }
        )
        report("issue_ingestor", rows, summary=summary)
    finally:
        await admin.close()
        await delete_topics(ep.kafka_bootstrap, [topic, f"{topic}.dlq", lat_topic, f"{lat_topic}.dlq"])
        await drop_mysql_database_async(db_name, user, port=ep.mysql_port)


if __name__ == "__main__":
    from consumer_runtime import configure_logging

    configure_logging("bench-issue-ingestor", "WARNING", json=False)
    asyncio.run(main())
