"""HTTP benchmark with a real load generator (wrk): GET issue by id through the gateway, from the
issue-ingestor directly, and from a bare FastAPI endpoint answering the same JSON (the ceiling), in one run.

Each server runs in its own process on 127.0.0.1 (issue-ingestor and gateway as deployed, over the local
Kafka/MariaDB; the bare endpoint: ``benchmarks._bare``). ``wrk`` (C, one thread: the 2 cores are shared
with the servers) drives each target for ``BENCH_GW_ROUND_S`` seconds per round at concurrency 50, the
targets alternating within every round (the order flips each round, so drift hits all alike); then the
same at concurrency 1 for the hop's own latency. Everything the run creates (topics, database + user) is its
own and removed at the end.

Targets (issue 19): gateway ≥ 0.85× direct requests/s at c=50; direct ≥ 0.3× the bare endpoint at c=50.
Issue 8's c=1 gateway overhead (p50 via gateway − p50 direct ≤ 2 ms) is reported too.

    .venv/bin/python -m benchmarks.bench_gateway
    # BENCH_GW_CONCURRENCY=50 BENCH_GW_ROUNDS=3 BENCH_GW_ROUND_S=5 BENCH_GW_SERIAL_ROUND_S=3

``wrk`` (``benchmarks._wrk``) is Debian's package: ``make bench`` installs it when run as root (like
``make browser``), else asks for ``sudo apt-get install wrk``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
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

from benchmarks._common import Timer, delete_run_topics, report
from benchmarks._targets import Target, headline, targets
from benchmarks._wrk import alternating, combined, ratio_rounds, run_wrk, run_wrk_on, wrk_binary

CONCURRENCY = int(os.environ.get("BENCH_GW_CONCURRENCY", "50"))
ROUNDS = int(os.environ.get("BENCH_GW_ROUNDS", "3"))
ROUND_S = int(os.environ.get("BENCH_GW_ROUND_S", "5"))  # per target and round at CONCURRENCY
SERIAL_ROUND_S = int(os.environ.get("BENCH_GW_SERIAL_ROUND_S", "3"))  # the same at concurrency 1
ISSUES = int(os.environ.get("BENCH_GW_ISSUES", "200"))
WRK_THREADS = int(os.environ.get("BENCH_GW_WRK_THREADS", "1"))
GATEWAY_GOAL = 0.85  # gateway ÷ direct requests/s at c=50
BARE_GOAL = 0.3  # direct ÷ bare requests/s at c=50
OVERHEAD_MS = 2.0  # issue 8: p50 via gateway − p50 direct at c=1
MAX_ERROR_RATE = 0.01  # non-2xx answers and socket errors tolerated (reported); more fail the run
ADMIN = "bench-admin-token"
#: wrk's option: the gateway needs a token (GATEWAY_AUTH=required)
AUTH = ("-H", f"Authorization: Bearer {ADMIN}")
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
    args: tuple[str, ...] = ()
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def spawn(self) -> None:
        self.port = free_port()
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", self.module, *(a.format(port=self.port) for a in self.args)],
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
    """The issue-ingestor, the gateway in front of it, and the bare endpoint, on this run's own names."""

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
        await self.servers["ingestor"].start()
        self.servers["gateway"] = Server(
            "gateway",
            "gateway",
            {
                **common,
                "ADMIN_TOKEN": ADMIN,
                "ISSUE_INGESTOR_URL": self.servers["ingestor"].url,
                # the set-up publishes its issues as fast as it can: no abuse limit in a benchmark
                "PUBLISH_RATE_LIMIT": "1000000/second",
            },
            self.logs / "gateway.log",
        )
        await self.servers["gateway"].start()
        # /healthz only says the process answers: publish once the consumer holds its partitions and the
        # gateway reaches Kafka, or the seed could be half consumed when the poll below gives up
        await poll(self._consumer_assigned, "the issue-ingestor's consumer assigned its partitions", 120)
        await poll(self._gateway_ready, "gateway /readyz (Kafka reachable)", 60)

    async def start_bare(self, body: dict[str, Any]) -> None:
        body_file = self.logs / "bare-body.json"
        body_file.write_text(json.dumps(body, ensure_ascii=False))
        self.servers["bare"] = Server(
            "bare FastAPI", "benchmarks._bare", {}, self.logs / "bare.log", args=("{port}", str(body_file))
        )
        await self.servers["bare"].start()

    async def _consumer_assigned(self) -> bool:
        async with httpx.AsyncClient(timeout=5) as client:
            with contextlib.suppress(httpx.HTTPError, ValueError):
                status = (await client.get(f"{self.servers['ingestor'].url}/consumer/status")).json()
                return bool(status.get("assignment"))
        return False

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
        from devservers import drop_mysql_database_async

        ep = self.ep
        await delete_run_topics(ep.kafka_bootstrap, self.prefix, say)
        try:
            await drop_mysql_database_async(self.db, self.user, port=ep.mysql_port)
        except Exception as exc:
            say(f"cleanup: database {self.db} / user {self.user} not dropped: {exc!r}")


async def poll(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.3)
    raise RuntimeError(f"timed out ({timeout:.0f}s) waiting for {what}")


# ------------------------------------------------------------------------------------------- data + load
async def seed(stack: Stack) -> list[str]:
    """Publish ISSUES issues through the gateway; wait until the issue-ingestor stored them."""
    gateway = stack.servers["gateway"].url
    issue_ids = [f"PRESS_{i:04d}_{stack.prefix[-6:]}" for i in range(ISSUES)]
    auth = {"Authorization": f"Bearer {ADMIN}"}
    async with httpx.AsyncClient(base_url=gateway, timeout=30, headers=auth) as gw:
        sem = asyncio.Semaphore(20)

        async def post(issue: str) -> None:
            body = {
                "issue": issue,
                "processType": "장애접수",
                "modeType": "프레스",
                "modeLogId": f"{issue}_LOG",
            }
            async with sem:
                for attempt in range(5):  # a 503 (Kafka busy) is retried; anything else is a failure
                    response = await gw.post("/api/v1/events/issues", json=body)
                    if response.status_code < 300:
                        return
                    if response.status_code != 503 or attempt == 4:
                        raise RuntimeError(f"POST issue: {response.status_code} {response.text[:300]}")
                    await asyncio.sleep(0.5 * 2**attempt)

        with Timer() as publish_t:
            await asyncio.gather(*(post(i) for i in issue_ids))
        say(f"published {ISSUES} issues via the gateway in {publish_t.seconds:.1f}s")
        seen = {"total": -1}

        async def stored() -> bool:
            with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
                r = await gw.get("/api/v1/issues", params={"limit": 1})
                seen["total"] = r.json()["total"] if r.status_code == 200 else seen["total"]
            return seen["total"] >= ISSUES

        try:
            await poll(stored, "issues stored")
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}; last seen {seen}") from None
    say(f"stored: {seen['total']} issues")
    return issue_ids


async def rounds(
    urls: dict[str, str], concurrency: int, seconds: int, servers: dict[str, Server]
) -> dict[str, list[dict[str, Any]]]:
    """ROUNDS rounds, each target once per round, the order flipped every round."""
    out: dict[str, list[dict[str, Any]]] = {name: [] for name in urls}
    for i, name in alternating(list(urls), ROUNDS):
        res = await run_wrk_on(servers[name], urls[name], concurrency, seconds, *AUTH, threads=WRK_THREADS)
        res["round"] = i
        out[name].append(res)
        say(
            f"c={concurrency} round {i} {name:8s} {res['req_per_s']:8,.0f} req/s  p50 "
            f"{res['p50_ms']:.2f} ms  p99 {res['p99_ms']:.2f} ms  errors {res['errors']}"
        )
    return out


def why_gateway(cpu_gw: float, cpu_direct: float) -> str:
    cores = os.cpu_count() or 1
    return (
        f"through the gateway every request costs the gateway {cpu_gw:.2f} ms CPU on top of the service's "
        f"{cpu_direct:.2f} ms (HTTP server + FastAPI + upstream client + a wide event to Kafka), on the same "
        f"{cores} cores as wrk, the service and MariaDB: at saturation the two processes split the CPU"
    )


def why_bare(cpu_direct: float, cpu_bare: float) -> str:
    return (
        f"the service spends {cpu_direct:.2f} ms CPU per request (a pooled MariaDB query, row → model "
        f"validation, its middleware) against the bare endpoint's {cpu_bare:.2f} ms, and MariaDB shares the "
        "cores"
    )


async def main() -> int:
    from devservers import ensure

    wrk_binary()
    say("devservers: kafka, mysql")
    stack = Stack(ensure(["kafka", "mysql"]))
    ok = False
    try:
        say(f"starting issue-ingestor and gateway ({stack.prefix}; logs in {stack.logs})")
        await stack.start()
        issue_ids = await seed(stack)
        issue = issue_ids[len(issue_ids) // 2]
        direct_url = f"{stack.servers['ingestor'].url}/issues/{issue}"
        async with httpx.AsyncClient(timeout=10) as client:
            body = (await client.get(direct_url)).raise_for_status().json()
        await stack.start_bare(body)
        urls = {
            "bare": f"{stack.servers['bare'].url}/issues/{issue}",
            "direct": direct_url,
            "gateway": f"{stack.servers['gateway'].url}/api/kafka/issues/{issue}",
        }
        # the same token wrk sends (GATEWAY_AUTH=required at the gateway; the service's GET routes are open)
        async with httpx.AsyncClient(timeout=10, headers=dict([AUTH[1].split(": ", 1)])) as client:
            for name, url in urls.items():
                answer = (await client.get(url)).raise_for_status().json()
                if answer != body:
                    raise RuntimeError(f"{name} answers another body than the service: {answer} != {body}")
        say(f"wrk {shutil.which('wrk')}: GET one issue by id ({len(json.dumps(body))} B of JSON)")
        servers = {"bare": stack.servers["bare"], "direct": stack.servers["ingestor"],
                   "gateway": stack.servers["gateway"]}  # fmt: skip
        for url in urls.values():  # warm-up: connections, pools, caches
            await run_wrk(url, CONCURRENCY, 1, *AUTH, threads=WRK_THREADS)
        hot = await rounds(urls, CONCURRENCY, ROUND_S, servers)
        serial_urls = {k: urls[k] for k in ("direct", "gateway")}
        serial = await rounds(serial_urls, 1, SERIAL_ROUND_S, servers)

        rows: list[dict[str, Any]] = []
        figures: dict[tuple[str, int], dict[str, Any]] = {}
        for concurrency, runs in ((CONCURRENCY, hot), (1, serial)):
            for name, results in runs.items():
                fig = combined(results)
                figures[name, concurrency] = fig
                rows.append({"target": name, "concurrency": concurrency, **fig})
                total = fig["requests"] + fig["errors"]
                if fig["errors"] > MAX_ERROR_RATE * total:
                    raise RuntimeError(f"{name} c={concurrency}: {fig['errors']} of {total} requests failed")
        bare, direct, gw = (figures[k, CONCURRENCY] for k in ("bare", "direct", "gateway"))
        gw_over_direct = gw["req_per_s"] / direct["req_per_s"]
        direct_over_bare = direct["req_per_s"] / bare["req_per_s"]
        gw_rounds = ratio_rounds(hot["gateway"], hot["direct"])
        bare_rounds = ratio_rounds(hot["direct"], hot["bare"])
        d1, g1 = figures["direct", 1], figures["gateway", 1]
        overhead_rounds = [
            round(g["p50_ms"] - d["p50_ms"], 3)
            for g, d in zip(serial["gateway"], serial["direct"], strict=True)
        ]
        overhead_rows = [
            {
                "endpoint": "GET issue by id (wrk)",
                "concurrency": c,
                "direct_p50_ms": figures["direct", c]["p50_ms"],
                "via_p50_ms": figures["gateway", c]["p50_ms"],
                "overhead_p50_ms": figures["gateway", c]["p50_ms"] - figures["direct", c]["p50_ms"],
                "overhead_p50_rounds_ms": [
                    round(g["p50_ms"] - d["p50_ms"], 3)
                    for g, d in zip(runs["gateway"], runs["direct"], strict=True)
                ],
                "direct_p99_ms": figures["direct", c]["p99_ms"],
                "via_p99_ms": figures["gateway", c]["p99_ms"],
                "overhead_p99_ms": figures["gateway", c]["p99_ms"] - figures["direct", c]["p99_ms"],
            }
            for c, runs in ((CONCURRENCY, hot), (1, serial))
        ]
        summary: dict[str, Any] = {
            "load_generator": f"wrk -t{WRK_THREADS} --latency, {ROUNDS} alternating rounds of {ROUND_S} s "
            f"(c={CONCURRENCY}) and {SERIAL_ROUND_S} s (c=1) per target",
            "concurrency": CONCURRENCY,
            "http_ratios": {
                "bare_req_per_s": bare["req_per_s"],
                "direct_req_per_s": direct["req_per_s"],
                "gateway_req_per_s": gw["req_per_s"],
                "gateway_over_direct": gw_over_direct,
                "gateway_over_direct_rounds": gw_rounds,
                "direct_over_bare": direct_over_bare,
                "direct_over_bare_rounds": bare_rounds,
                "rounds": {
                    f"c{c}": {
                        name: [
                            {k: r[k] for k in ("round", "req_per_s", "p50_ms", "p99_ms", "errors")}
                            for r in rs
                        ]
                        for name, rs in runs.items()
                    }
                    for c, runs in ((CONCURRENCY, hot), (1, serial))
                },
            },
            "overhead": overhead_rows,
            "headline": headline(
                service_eps=gw["req_per_s"],
                p50_s=gw["p50_ms"] / 1000,
                p99_s=gw["p99_ms"] / 1000,
                latency_of=f"GET issue by id via the gateway, wrk c={CONCURRENCY}",
                unit="requests",
            ),
            "targets": targets(
                Target(
                    f"gateway ÷ direct req/s at c={CONCURRENCY}",
                    round(gw_over_direct, 3),
                    ">=",
                    GATEWAY_GOAL,
                    why_missed=why_gateway(gw["server_cpu_ms_per_req"], direct["server_cpu_ms_per_req"]),
                    spread=(min(gw_rounds), max(gw_rounds)),
                ),
                Target(
                    f"direct ÷ bare FastAPI req/s at c={CONCURRENCY}",
                    round(direct_over_bare, 3),
                    ">=",
                    BARE_GOAL,
                    why_missed=why_bare(direct["server_cpu_ms_per_req"], bare["server_cpu_ms_per_req"]),
                    spread=(min(bare_rounds), max(bare_rounds)),
                ),
                Target(
                    "c=1 gateway overhead p50",
                    round(g1["p50_ms"] - d1["p50_ms"], 3),
                    "<=",
                    OVERHEAD_MS,
                    "ms",
                    why_missed=(
                        f"one more loopback hop plus {g1['server_cpu_ms_per_req']:.2f} ms of gateway CPU per "
                        "request (HTTP server + FastAPI + upstream client + a wide event to Kafka)"
                    ),
                    spread=(min(overhead_rounds), max(overhead_rounds)),
                ),
            ),
            "cpus": os.cpu_count(),
        }
        report("gateway", rows, summary=summary)
        ok = True
    except Exception as exc:
        print(f"bench_gateway FAILED: {exc}\n{stack.explain()}", file=sys.stderr, flush=True)
        raise
    finally:
        say("stopping the servers, deleting topics and database")
        stack.stop()
        await stack.cleanup()
        if ok:
            shutil.rmtree(stack.logs, ignore_errors=True)
        else:
            print(f"server logs kept in {stack.logs}", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
