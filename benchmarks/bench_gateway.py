"""Gateway overhead: p50/p99 of GET issue by id and of message search, through the gateway vs calling the
owning service directly, at a fixed concurrency, in one run.

Each server runs in its own process (issue-ingestor, search-indexer, gateway — as deployed), all over the
local Kafka/MariaDB/Elasticsearch stand-ins; the load generator is this process (httpx, keep-alive).
Everything it creates (topics, database + user, indexes) is its own and removed at the end.

    cd /work/main && .venv/bin/python -m benchmarks.bench_gateway
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from benchmarks._common import Timer, rate, report

CONCURRENCY = 50
REQUESTS = 1500  # per (endpoint, path) at CONCURRENCY, split in rounds alternating gateway/direct
SERIAL_REQUESTS = 300  # the same at concurrency 1: the hop's own cost, without queueing on 2 cores
ROUNDS = 3
ISSUES = 1000
MESSAGES = 1000
ADMIN = "bench-admin-token"
WORDS = ["배포", "프레스", "장애", "점검", "완료", "유압", "용접", "도장", "조립", "알림"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(module: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    out = log.open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", module],
        env={**os.environ, **env},
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


async def wait_http(url: str, proc: subprocess.Popen[bytes], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=2) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{what} exited with {proc.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(url)).status_code == 200:
                    return
            await asyncio.sleep(0.2)
    raise RuntimeError(f"{what} did not answer {url} within {timeout}s")


async def poll(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.3)
    raise RuntimeError(f"timed out waiting for {what}")


async def measure(base: str, paths: list[str], count: int, concurrency: int = CONCURRENCY) -> list[float]:
    """``count`` GETs spread over ``concurrency`` workers; returns per-request latencies (ms)."""
    latencies: list[float] = []
    queue = list(paths[i % len(paths)] for i in range(count))
    random.shuffle(queue)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:

        async def worker() -> None:
            while queue:
                path = queue.pop()
                started = time.perf_counter()
                response = await client.get(path)
                latencies.append((time.perf_counter() - started) * 1000)
                if response.status_code != 200:
                    raise RuntimeError(f"GET {base}{path}: {response.status_code} {response.text[:200]}")

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def main() -> None:
    from devservers import ensure, ensure_mysql_database

    ep = ensure(["kafka", "mysql", "elasticsearch"])
    prefix = f"bench-gw-{uuid.uuid4().hex[:6]}"
    db = prefix.replace("-", "_")
    user, password = f"bgw_{uuid.uuid4().hex[:6]}", "bench-pw"
    ensure_mysql_database(db, user, password, port=ep.mysql_port)
    logs = Path(tempfile.mkdtemp(prefix="bench-gateway-"))  # server logs; kept only when something fails
    kept = True
    ports = {"ingestor": free_port(), "search": free_port(), "gateway": free_port()}
    topics = {
        "KAFKA_TOPIC_CHATBOT_ISSUES": f"{prefix}-issues",
        "KAFKA_LOG_TOPIC": f"{prefix}-logs",
        "KAFKA_TOPIC_MESSAGES_CREATED": f"{prefix}-msg-created",
        "KAFKA_TOPIC_MESSAGES_UPDATED": f"{prefix}-msg-updated",
        "KAFKA_TOPIC_MESSAGES_DELETED": f"{prefix}-msg-deleted",
        "KAFKA_TOPIC_NOTIFICATIONS_SENT": f"{prefix}-ntf-sent",
        "KAFKA_TOPIC_USERS_ACTIVITY": f"{prefix}-activity",
        "KAFKA_CONTROL_TOPIC": f"{prefix}-control",
    }
    common = {
        "KAFKA_BOOTSTRAP_SERVERS": ep.kafka_bootstrap,
        "KAFKA_ENABLE_IDEMPOTENCE": "false",
        "LOG_LEVEL": "WARNING",
        "HTTP_HOST": "127.0.0.1",
        **topics,
    }
    urls = {k: f"http://127.0.0.1:{p}" for k, p in ports.items()}
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(
            start(
                "issue_ingestor",
                {
                    **common,
                    "HTTP_PORT": str(ports["ingestor"]),
                    "KAFKA_CONSUMER_GROUP": f"{prefix}-ii",
                    "DB_HOST": f"{ep.mysql_host}:{ep.mysql_port}",
                    "DB_NAME": db,
                    "DB_USERNAME": user,
                    "DB_PASSWORD": password,
                },
                logs / "issue-ingestor.log",
            )
        )
        procs.append(
            start(
                "search_indexer",
                {
                    **common,
                    "HTTP_PORT": str(ports["search"]),
                    "KAFKA_CONSUMER_GROUP": f"{prefix}-si",
                    "ELASTICSEARCH_URL": ep.elasticsearch_url,
                    "SEARCH_INDEX_ALIAS": f"{prefix}-messages",
                    "SEARCH_INDEX_REPLICAS": "0",
                },
                logs / "search-indexer.log",
            )
        )
        procs.append(
            start(
                "gateway",
                {
                    **common,
                    "HTTP_PORT": str(ports["gateway"]),
                    "ADMIN_TOKEN": ADMIN,
                    "ISSUE_INGESTOR_URL": urls["ingestor"],
                    "SEARCH_INDEXER_URL": urls["search"],
                },
                logs / "gateway.log",
            )
        )
        for (name, url), proc in zip(urls.items(), procs, strict=True):
            await wait_http(f"{url}/healthz", proc, name)

        # ---- data, published through the gateway
        async with httpx.AsyncClient(base_url=urls["gateway"], timeout=30) as gw:
            sem = asyncio.Semaphore(50)

            async def post(path: str, body: dict[str, Any]) -> None:
                async with sem:
                    response = await gw.post(path, json=body)
                    if response.status_code >= 300:
                        raise RuntimeError(f"{path}: {response.status_code} {response.text[:200]}")

            issue_ids = [f"PRESS_{i:04d}_{prefix[-6:]}" for i in range(ISSUES)]
            with Timer() as publish_t:
                await asyncio.gather(
                    *(
                        post(
                            "/api/v1/events/issues",
                            {
                                "issue": i,
                                "processType": "장애접수",
                                "modeType": "프레스",
                                "modeLogId": f"{i}_LOG",
                            },
                        )
                        for i in issue_ids
                    ),
                    *(
                        post(
                            "/messages",
                            {
                                "channel_id": f"ch_{n % 7}",
                                "author_id": f"user_{n % 13}",
                                "content": " ".join(random.sample(WORDS, 4)) + f" 메시지 {n}",
                            },
                        )
                        for n in range(MESSAGES)
                    ),
                )

            async def issues_stored() -> bool:
                r = await gw.get("/api/v1/issues", params={"limit": 1})
                return r.status_code == 200 and r.json()["total"] >= ISSUES

            async def messages_indexed() -> bool:
                r = await gw.get("/api/v1/search/messages", params={"q": "메시지", "limit": 1})
                return r.status_code == 200 and r.json()["total"] >= MESSAGES

            await poll(issues_stored, "issues stored")
            await poll(messages_indexed, "messages indexed")

        issue_paths = [f"/issues/{i}" for i in issue_ids]
        search_paths = [f"/messages/search?q={w}&limit=10" for w in WORDS]
        cases = [
            (
                "GET issue by id",
                urls["ingestor"],
                issue_paths,
                urls["gateway"],
                [f"/api/kafka{p}" for p in issue_paths],
            ),
            ("search", urls["search"], search_paths, urls["gateway"], search_paths),
        ]
        rows: list[dict[str, Any]] = []
        summary: dict[str, Any] = {
            "concurrency": CONCURRENCY,
            "published_per_s_via_gateway": rate(ISSUES + MESSAGES, publish_t.seconds),
        }
        for name, direct_url, direct_paths, gw_url, gw_paths in cases:
            await measure(direct_url, direct_paths, 300)  # warm-up: connections, caches
            await measure(gw_url, gw_paths, 300)
            for concurrency, total in ((CONCURRENCY, REQUESTS), (1, SERIAL_REQUESTS)):
                results: dict[str, list[float]] = {"direct": [], "gateway": []}
                elapsed = {"direct": 0.0, "gateway": 0.0}
                for _ in range(ROUNDS):  # alternate so drift (GC, ES merges) hits both alike
                    for via, base, paths in (
                        ("direct", direct_url, direct_paths),
                        ("gateway", gw_url, gw_paths),
                    ):
                        with Timer() as t:
                            results[via] += await measure(base, paths, total // ROUNDS, concurrency)
                        elapsed[via] += t.seconds
                for via in ("direct", "gateway"):
                    lat = results[via]
                    rows.append(
                        {
                            "endpoint": name,
                            "concurrency": concurrency,
                            "via": via,
                            "requests": len(lat),
                            "p50_ms": pct(lat, 50),
                            "p99_ms": pct(lat, 99),
                            "mean_ms": statistics.fmean(lat),
                            "req_per_s": rate(len(lat), elapsed[via]),
                        }
                    )
                key = f"{name.split()[0].lower()}_c{concurrency}"
                for p in (50, 99):
                    overhead = pct(results["gateway"], p) - pct(results["direct"], p)
                    summary[f"{key}_gateway_overhead_p{p}_ms"] = round(overhead, 2)
        summary["target"] = "gateway overhead <= 2 ms p50"
        summary["cpus"] = os.cpu_count()
        report("gateway", rows, summary=summary)
        shutil.rmtree(logs, ignore_errors=True)
        kept = False
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        await cleanup(ep, prefix, db, user)
        if kept:
            print(f"server logs kept in {logs}")


async def cleanup(ep: Any, prefix: str, db: str, user: str) -> None:
    import asyncmy
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=ep.kafka_bootstrap)
    await admin.start()
    try:
        mine = [t for t in await admin.list_topics() if t.startswith(prefix)]
        if mine:
            await admin.delete_topics(mine)
    finally:
        await admin.close()
    conn = await asyncmy.connect(
        host=ep.mysql_host, port=ep.mysql_port, user="root", password="", autocommit=True
    )
    try:
        async with conn.cursor() as cur:
            await cur.execute(f"DROP DATABASE IF EXISTS `{db}`")
            for host in ("%", "localhost"):
                await cur.execute(f"DROP USER IF EXISTS '{user}'@'{host}'")
    finally:
        conn.close()
    async with httpx.AsyncClient(base_url=ep.elasticsearch_url, timeout=30) as es:
        with contextlib.suppress(httpx.HTTPError):
            for index in (await es.get(f"/_cat/indices/{prefix}*", params={"format": "json"})).json():
                await es.delete(f"/{index['index']}")


if __name__ == "__main__":
    asyncio.run(main())
