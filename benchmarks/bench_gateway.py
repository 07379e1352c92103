"""Gateway overhead: p50/p99 of GET issue by id and of message search, through the gateway vs calling the
owning service directly, at a fixed concurrency (50) and at concurrency 1, in one run.

Each server runs in its own process (issue-ingestor, search-indexer, gateway — as deployed), all over the
local Kafka/MariaDB/Elasticsearch stand-ins; the load generator is this process (httpx, keep-alive).
Everything it creates (topics, database + user, indexes) is its own and removed at the end.

Target (issue 8): gateway overhead (gateway p50 − direct p50) <= 2 ms, per endpoint. At concurrency 50 on a
small machine the load generator, the three services and the datastores share the cores, so those numbers
are dominated by CPU queueing; concurrency 1 measures the hop's own cost. Both are reported, met/missed each.

    cd /work/main && .venv/bin/python -m benchmarks.bench_gateway
    # BENCH_GW_CONCURRENCY=50 BENCH_GW_REQUESTS=1500 BENCH_GW_SERIAL=600 BENCH_GW_ROUNDS=6
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from consumer_runtime.testing import topic_env
from devservers import free_port

from benchmarks._common import Timer, pct, rate, report
from benchmarks._targets import Target, headline, targets

CONCURRENCY = int(os.environ.get("BENCH_GW_CONCURRENCY", "50"))
REQUESTS = int(os.environ.get("BENCH_GW_REQUESTS", "1500"))  # per (endpoint, via) at CONCURRENCY
SERIAL_REQUESTS = int(os.environ.get("BENCH_GW_SERIAL", "600"))  # the same at concurrency 1
ROUNDS = int(os.environ.get("BENCH_GW_ROUNDS", "6"))  # each split in rounds alternating direct/gateway
ISSUES = int(os.environ.get("BENCH_GW_ISSUES", "1000"))
MESSAGES = int(os.environ.get("BENCH_GW_MESSAGES", "1000"))
TARGET_MS = 2.0
MAX_ERROR_RATE = 0.01  # failed requests (non-200, timeouts) tolerated and reported; more fail the run
ADMIN = "bench-admin-token"
WORDS = ["배포", "프레스", "장애", "점검", "완료", "유압", "용접", "도장", "조립", "알림"]
STARTED = time.monotonic()


def say(message: str) -> None:
    """Progress line (the runner streams it through)."""
    print(f"[{time.monotonic() - STARTED:6.1f}s] {message}", flush=True)


def tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# ------------------------------------------------------------------------------------------- the servers
@dataclass
class Server:
    name: str
    module: str
    env: dict[str, str]
    log: Path
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def spawn(self) -> None:
        self.port = free_port()
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", self.module],
                env={**os.environ, **self.env, "HTTP_PORT": str(self.port)},
                stdout=out,
                stderr=subprocess.STDOUT,
            )  # same process group: the runner's peak RSS counts the servers too

    async def start(self, timeout: float = 90) -> None:
        """Spawn and wait for ``/healthz``. The port is picked free just before the spawn, so another
        process (an outgoing connection's ephemeral port) can take it in between: then respawn elsewhere."""
        for attempt in range(1, 4):
            self.spawn()
            try:
                await self._wait_healthy(timeout)
                return
            except _PortTaken:
                say(f"{self.name}: port {self.port} was taken before it bound (attempt {attempt}); retrying")
        raise RuntimeError(f"{self.name} could not bind a port in 3 attempts; log {self.log}")

    async def _wait_healthy(self, timeout: float) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=2) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    log = tail(self.log)
                    if "address already in use" in log.lower():
                        raise _PortTaken
                    raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; its log:\n{log}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{self.url}/healthz")).status_code == 200:
                        return
                await asyncio.sleep(0.2)
        raise RuntimeError(f"{self.name} did not answer {self.url}/healthz within {timeout}s")

    def cpu_seconds(self) -> float:
        """CPU time (user + system, all threads) the process has used so far."""
        if self.proc is None:
            return 0.0
        try:
            stat = Path(f"/proc/{self.proc.pid}/stat").read_text()
        except OSError:
            return 0.0
        fields = stat[stat.rindex(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: uvicorn's graceful shutdown (lifespan exit)

    def reap(self) -> None:
        if self.proc is None:
            return
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


class _PortTaken(Exception):
    pass


@dataclass
class Stack:
    """issue-ingestor, search-indexer and the gateway in front of them, on this run's own names."""

    ep: Any
    prefix: str = field(default_factory=lambda: f"bench-gw-{uuid.uuid4().hex[:6]}")
    logs: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="bench-gateway-")))
    servers: dict[str, Server] = field(default_factory=dict)

    @property
    def db(self) -> str:
        return self.prefix.replace("-", "_")

    @property
    def user(self) -> str:
        return f"bgw_{self.prefix[-6:]}"

    def common_env(self) -> dict[str, str]:
        p = self.prefix
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.ep.kafka_bootstrap,
            "KAFKA_ENABLE_IDEMPOTENCE": "false",
            "LOG_LEVEL": "WARNING",
            "HTTP_HOST": "127.0.0.1",
            **topic_env(lambda default: f"{p}-{default}"),
            "KAFKA_CONTROL_TOPIC": f"{p}-control",
        }

    async def start(self) -> None:
        from devservers import ensure_mysql_database

        ep, common = self.ep, self.common_env()
        ensure_mysql_database(self.db, self.user, "bench-pw", port=ep.mysql_port)
        self.servers["ingestor"] = Server(
            "issue-ingestor",
            "issue_ingestor",
            {
                **common,
                "KAFKA_CONSUMER_GROUP": f"{self.prefix}-ii",
                "DB_HOST": f"{ep.mysql_host}:{ep.mysql_port}",
                "DB_NAME": self.db,
                "DB_USERNAME": self.user,
                "DB_PASSWORD": "bench-pw",
            },
            self.logs / "issue-ingestor.log",
        )
        self.servers["search"] = Server(
            "search-indexer",
            "search_indexer",
            {
                **common,
                "KAFKA_CONSUMER_GROUP": f"{self.prefix}-si",
                "ELASTICSEARCH_URL": ep.elasticsearch_url,
                "SEARCH_INDEX_ALIAS": f"{self.prefix}-messages",
                "SEARCH_INDEX_REPLICAS": "0",
            },
            self.logs / "search-indexer.log",
        )
        await asyncio.gather(self.servers["ingestor"].start(), self.servers["search"].start())
        self.servers["gateway"] = self.gateway_server("gateway", self.logs / "gateway.log")
        await self.servers["gateway"].start()
        # /healthz only says the process answers. Publishing before the consumers hold their partitions
        # (topics created by each service at start-up, group joined) is what could leave the data half
        # consumed and the poll below timing out: wait for the assignments and the gateway's Kafka.
        await poll(self._consumers_assigned, "both consumers assigned their partitions", 120)
        await poll(self._gateway_ready, "gateway /readyz (Kafka reachable)", 60)

    def gateway_server(self, name: str, log: Path, **extra_env: str) -> Server:
        return Server(
            name,
            "gateway",
            {
                **self.common_env(),
                "ADMIN_TOKEN": ADMIN,
                "ISSUE_INGESTOR_URL": self.servers["ingestor"].url,
                "SEARCH_INDEXER_URL": self.servers["search"].url,
                **extra_env,
            },
            log,
        )

    async def _consumers_assigned(self) -> bool:
        async with httpx.AsyncClient(timeout=5) as client:
            for key in ("ingestor", "search"):
                with contextlib.suppress(httpx.HTTPError, ValueError):
                    status = (await client.get(f"{self.servers[key].url}/consumer/status")).json()
                    if status.get("assignment"):
                        continue
                return False
        return True

    async def _gateway_ready(self) -> bool:
        async with httpx.AsyncClient(timeout=5) as client:
            with contextlib.suppress(httpx.HTTPError):
                return (await client.get(f"{self.servers['gateway'].url}/readyz")).status_code == 200
        return False

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()
        for server in self.servers.values():
            server.reap()

    def explain(self) -> str:
        return "\n".join(f"--- {s.name} ({s.log}), last lines:\n{tail(s.log)}" for s in self.servers.values())

    async def cleanup(self) -> None:
        """Best effort, every step on its own: a leftover is named, never turned into a failed run."""
        from aiokafka.admin import AIOKafkaAdminClient
        from devservers import drop_mysql_database_async

        ep, prefix = self.ep, self.prefix
        try:
            admin = AIOKafkaAdminClient(bootstrap_servers=ep.kafka_bootstrap)
            await admin.start()
            try:
                mine = [t for t in await admin.list_topics() if t.startswith(prefix)]
                if mine:
                    await admin.delete_topics(mine)
            finally:
                await admin.close()
        except Exception as exc:
            say(f"cleanup: topics {prefix}* not deleted: {exc!r}")
        try:
            await drop_mysql_database_async(self.db, self.user, port=ep.mysql_port)
        except Exception as exc:
            say(f"cleanup: database {self.db} / user {self.user} not dropped: {exc!r}")
        try:
            async with httpx.AsyncClient(base_url=ep.elasticsearch_url, timeout=30) as es:
                for index in (await es.get(f"/_cat/indices/{prefix}*", params={"format": "json"})).json():
                    await es.delete(f"/{index['index']}")
        except Exception as exc:
            say(f"cleanup: indexes {prefix}* not deleted: {exc!r}")


async def poll(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.3)
    raise RuntimeError(f"timed out ({timeout:.0f}s) waiting for {what}")


# ------------------------------------------------------------------------------------------- data + load
async def seed(stack: Stack) -> tuple[list[str], float]:
    """Publish ISSUES issues and MESSAGES messages through the gateway; wait until stored / indexed."""
    gateway = stack.servers["gateway"].url
    issue_ids = [f"PRESS_{i:04d}_{stack.prefix[-6:]}" for i in range(ISSUES)]
    async with httpx.AsyncClient(base_url=gateway, timeout=30) as gw:
        sem = asyncio.Semaphore(50)

        async def post(path: str, body: dict[str, Any]) -> None:
            async with sem:
                for attempt in range(5):  # a 503 (Kafka busy) is retried; anything else is a failure
                    response = await gw.post(path, json=body)
                    if response.status_code < 300:
                        return
                    if response.status_code != 503 or attempt == 4:
                        raise RuntimeError(f"POST {path}: {response.status_code} {response.text[:300]}")
                    await asyncio.sleep(0.5 * 2**attempt)

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
        say(f"published {ISSUES} issues + {MESSAGES} messages via the gateway in {publish_t.seconds:.1f}s")
        seen = {"issues": -1, "messages": -1}

        async def stored(what: str, path: str, params: dict[str, Any], wanted: int) -> bool:
            with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
                r = await gw.get(path, params=params)
                seen[what] = r.json()["total"] if r.status_code == 200 else seen[what]
            return seen[what] >= wanted

        try:
            await poll(lambda: stored("issues", "/api/v1/issues", {"limit": 1}, ISSUES), "issues stored")
            await poll(
                lambda: stored("messages", "/api/v1/search/messages", {"q": "메시지", "limit": 1}, MESSAGES),
                "messages indexed",
            )
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}; last seen {seen}") from None
    say(f"stored: {seen['issues']} issues, indexed: {seen['messages']} messages")
    return issue_ids, rate(ISSUES + MESSAGES, publish_t.seconds)


async def measure(
    base: str, paths: list[str], count: int, concurrency: int = CONCURRENCY, errors: list[str] | None = None
) -> list[float]:
    """``count`` GETs spread over ``concurrency`` workers; returns the latencies (ms) of the 200 answers.

    A non-200 answer or a failed request is not timed; it is appended to ``errors`` (when given — the
    caller reports them and fails above MAX_ERROR_RATE), else raised at once."""
    latencies: list[float] = []
    queue = [paths[i % len(paths)] for i in range(count)]
    random.shuffle(queue)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:

        async def worker() -> None:
            while queue:
                path = queue.pop()
                started = time.perf_counter()
                try:
                    response = await client.get(path)
                except httpx.HTTPError as exc:
                    problem = f"GET {base}{path}: {exc!r}"
                else:
                    if response.status_code == 200:
                        latencies.append((time.perf_counter() - started) * 1000)
                        continue
                    problem = f"GET {base}{path}: {response.status_code} {response.text[:200]}"
                if errors is None:
                    raise RuntimeError(problem)
                errors.append(problem)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies


async def compare(
    name: str,
    direct: tuple[str, list[str]],
    gateway: tuple[str, list[str]],
    concurrency: int,
    total: int,
    answering: dict[str, Server],
) -> tuple[list[dict[str, Any]], dict[str, float], list[float]]:
    """Direct and gateway in alternating rounds (drift — GC, ES merges, other load — hits both alike).

    ``server_cpu_ms_per_req``: CPU time of the process answering (the owning service when direct, the
    gateway alone when through it) per request — the hop's cost independent of what else runs."""
    results: dict[str, list[float]] = {"direct": [], "gateway": []}
    elapsed = {"direct": 0.0, "gateway": 0.0}
    cpu = {"direct": 0.0, "gateway": 0.0}
    errors: dict[str, list[str]] = {"direct": [], "gateway": []}
    round_overheads: list[float] = []  # p50 gateway - p50 direct, per round
    for _ in range(ROUNDS):
        round_p50: dict[str, float] = {}
        for via, (base, paths) in (("direct", direct), ("gateway", gateway)):
            cpu_before = answering[via].cpu_seconds()
            with Timer() as t:
                lat = await measure(base, paths, max(1, total // ROUNDS), concurrency, errors[via])
            results[via] += lat
            round_p50[via] = pct(lat, 50)
            elapsed[via] += t.seconds
            cpu[via] += answering[via].cpu_seconds() - cpu_before
        round_overheads.append(round_p50["gateway"] - round_p50["direct"])
    for via, problems in errors.items():
        if problems:
            say(f"{name} c={concurrency} {via}: {len(problems)} failed requests, first: {problems[0]}")
        if len(problems) > MAX_ERROR_RATE * total:
            raise RuntimeError(f"{name} c={concurrency} {via}: {len(problems)} of {total} requests failed")
    rows = []
    for via, lat in results.items():
        rows.append(
            {
                "endpoint": name,
                "concurrency": concurrency,
                "via": via,
                "requests": len(lat),
                "errors": len(errors[via]),
                "p50_ms": pct(lat, 50),
                "p99_ms": pct(lat, 99),
                "mean_ms": statistics.fmean(lat),
                "req_per_s": rate(len(lat), elapsed[via]),
                "server_cpu_ms_per_req": cpu[via] * 1000 / len(lat),
            }
        )
    overhead = {f"p{p}": pct(results["gateway"], p) - pct(results["direct"], p) for p in (50, 99)}
    say(
        f"{name} c={concurrency}: direct p50 {rows[0]['p50_ms']:.2f} p99 {rows[0]['p99_ms']:.2f} | gateway "
        f"p50 {rows[1]['p50_ms']:.2f} p99 {rows[1]['p99_ms']:.2f} ms | overhead p50 {overhead['p50']:.2f} ms"
        f" | gateway CPU {rows[1]['server_cpu_ms_per_req']:.2f} ms/request"
    )
    return rows, overhead, round_overheads


def why_missed(concurrency: int, cpu_ms: float, direct_p50_ms: float) -> str:
    """What limits the overhead figure on this machine (shown by the report only when missed)."""
    cores = os.cpu_count() or 1
    if concurrency > cores:
        return (
            f"{cores} cores shared by the load generator, 3 services and their datastores are saturated "
            f"at concurrency {concurrency} (direct p50 already {direct_p50_ms:.0f} ms of queueing): the "
            f"gateway's {cpu_ms:.2f} ms CPU per request waits in the same run queue, and run-to-run spread "
            "is larger than the target"
        )
    return (
        f"one more loopback hop (2 extra socket round trips, 2 process wake-ups) plus {cpu_ms:.2f} ms of "
        f"gateway CPU per request (HTTP server + FastAPI + upstream client + a wide event to Kafka) on "
        f"{cores} shared cores"
    )


async def main() -> int:
    from devservers import ensure

    say("devservers: kafka, mysql, elasticsearch")
    stack = Stack(ensure(["kafka", "mysql", "elasticsearch"]))
    ok = False
    try:
        say(f"starting issue-ingestor, search-indexer, gateway ({stack.prefix}; logs in {stack.logs})")
        await stack.start()
        say("all three ready (consumers assigned, gateway Kafka reachable)")
        issue_ids, published_per_s = await seed(stack)
        urls = {k: s.url for k, s in stack.servers.items()}
        issue_paths = [f"/issues/{i}" for i in issue_ids]
        search_paths = [f"/messages/search?q={w}&limit=10" for w in WORDS]
        cases = [
            ("GET issue by id", "issue", (urls["ingestor"], issue_paths), stack.servers["ingestor"]),
            ("search", "search", (urls["search"], search_paths), stack.servers["search"]),
        ]
        gateway_paths = {"issue": [f"/api/kafka{p}" for p in issue_paths], "search": search_paths}
        rows: list[dict[str, Any]] = []
        summary: dict[str, Any] = {
            "concurrency": CONCURRENCY,
            "published_per_s_via_gateway": published_per_s,
        }
        goals: list[Target] = []
        overhead_rows: list[dict[str, Any]] = []
        for name, key, direct, owner in cases:
            gateway = (urls["gateway"], gateway_paths[key])
            say(f"{name}: warm-up")
            await measure(*direct, 300, CONCURRENCY, [])  # connections, caches (failures: counted later)
            await measure(*gateway, 300, CONCURRENCY, [])
            for concurrency, total in ((CONCURRENCY, REQUESTS), (1, SERIAL_REQUESTS)):
                say(
                    f"{name}: {total} requests direct + {total} via the gateway, concurrency "
                    f"{concurrency}, {ROUNDS} alternating rounds"
                )
                answering = {"direct": owner, "gateway": stack.servers["gateway"]}
                case_rows, overhead, per_round = await compare(
                    name, direct, gateway, concurrency, total, answering
                )
                rows += case_rows
                direct_row, via_row = case_rows
                cpu_ms = via_row["server_cpu_ms_per_req"]
                summary[f"{key}_c{concurrency}_gateway_cpu_ms_per_req"] = round(cpu_ms, 3)
                for p, value in overhead.items():
                    summary[f"{key}_c{concurrency}_gateway_overhead_{p}_ms"] = round(value, 2)
                overhead_rows.append(
                    {
                        "endpoint": name,
                        "concurrency": concurrency,
                        "direct_p50_ms": direct_row["p50_ms"],
                        "via_p50_ms": via_row["p50_ms"],
                        "overhead_p50_ms": overhead["p50"],
                        "overhead_p50_rounds_ms": [round(x, 3) for x in per_round],
                        "direct_p99_ms": direct_row["p99_ms"],
                        "via_p99_ms": via_row["p99_ms"],
                        "overhead_p99_ms": overhead["p99"],
                        "gateway_cpu_ms_per_req": cpu_ms,
                    }
                )
                goals.append(
                    Target(
                        f"{name} c={concurrency} gateway overhead p50",
                        round(overhead["p50"], 2),
                        "<=",
                        TARGET_MS,
                        "ms",
                        why_missed=why_missed(concurrency, cpu_ms, direct_row["p50_ms"]),
                        spread=(round(min(per_round), 2), round(max(per_round), 2)),
                    )
                )
        issue_c50 = next(r for r in rows if r["concurrency"] == CONCURRENCY and r["via"] == "gateway")
        summary["headline"] = headline(
            service_eps=issue_c50["req_per_s"],
            p50_s=issue_c50["p50_ms"] / 1000,
            p99_s=issue_c50["p99_ms"] / 1000,
            latency_of=f"GET issue by id via the gateway at concurrency {CONCURRENCY}",
            unit="requests",
        )
        summary["overhead"] = overhead_rows
        summary["targets"] = targets(*goals)
        summary["target_result"] = "; ".join(
            f"{t.name} {t.measured:.2f} ms "
            f"{('MET' if t.met else 'MISSED') if t.decided else 'NOT DECIDED'} (<= {t.goal:g} ms)"
            for t in goals
        )
        summary["cpus"] = os.cpu_count()
        report("gateway", rows, summary=summary)
        ok = True
    except Exception as exc:
        print(f"bench_gateway FAILED: {exc}\n{stack.explain()}", file=sys.stderr, flush=True)
        raise
    finally:
        say("stopping the servers, deleting topics, database, indexes")
        stack.stop()
        await stack.cleanup()
        if ok:
            shutil.rmtree(stack.logs, ignore_errors=True)
        else:
            print(f"server logs kept in {stack.logs}", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
