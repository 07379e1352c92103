"""Tracing off vs on, in one run: what OpenTelemetry costs the gateway's publish path and a sink.

Tracing is set up exactly as a service gets it from `make run` with ``OTEL_EXPORTER_OTLP_ENDPOINT`` set
(``consumer_runtime.tracing.configure_tracing`` from the environment: a ``BatchSpanProcessor`` with the SDK's
defaults, ``OTLPSpanExporter`` over HTTP/protobuf), exporting to a local OTLP receiver this benchmark starts
(``benchmarks._otlp_sink``, its own process). "Off" is the `make run` default: no ``OTEL_*`` variable.

(g) gateway publish path: ``POST /messages`` (validate, produce to ``platform.messages.created``, a wide
    event) driven by wrk at concurrency ``BENCH_TRACE_CONCURRENCY`` against two gateway processes at the
    `make run` defaults, one without and one with the OTLP endpoint, alternating for ``BENCH_TRACE_ROUNDS``
    rounds of ``BENCH_TRACE_ROUND_S`` s (the order flips each round). On: a SERVER span per request, the
    produce's PRODUCER span, its ``traceparent`` on the record.
(s) a sink: the search-indexer (ConsumerRunner + MessageSink at the `make run` defaults) draining the same
    backlog of ``BENCH_TRACE_SINK_N`` ``message.created`` records, each with a ``traceparent`` of its own (as
    traced requests through the gateway produce them), off and on alternating for ``BENCH_TRACE_SINK_ROUNDS``
    rounds, each drain in a fresh process (tracing is per process) with a new consumer group and index. On: a
    CONSUMER span per batch linked to every record's context, Elasticsearch's bulk spans.

Reported: requests (events) per second off and on, on ÷ off overall and per round, CPU per request of the
gateway, spans the receiver got. No target: the issue asks for the figure (docs/observability.md).

    .venv/bin/python -m benchmarks bench_tracing       # alone, through the runner (wall time, RSS)
    .venv/bin/python -m benchmarks.bench_tracing       # alone
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from benchmarks._common import delete_run_topics, report
from benchmarks._targets import headline
from benchmarks._wrk import alternating, combined, ratio_rounds, run_wrk_on
from benchmarks.bench_gateway import Server, poll

CONCURRENCY = int(os.environ.get("BENCH_TRACE_CONCURRENCY", "50"))
ROUNDS = int(os.environ.get("BENCH_TRACE_ROUNDS", "3"))
ROUND_S = int(os.environ.get("BENCH_TRACE_ROUND_S", "4"))
SINK_N = int(os.environ.get("BENCH_TRACE_SINK_N", "20000"))
SINK_ROUNDS = int(os.environ.get("BENCH_TRACE_SINK_ROUNDS", "2"))
ADMIN = "bench-admin-token"
MAX_ERROR_RATE = 0.01  # failed requests tolerated (reported); more fail the run
STARTED = time.monotonic()
CASES = ("off", "on")


def say(message: str) -> None:
    print(f"[{time.monotonic() - STARTED:6.1f}s] {message}", flush=True)


def otel_env(case: str, endpoint: str) -> dict[str, str]:
    """The environment difference between the cases: only the endpoint (everything else at its default)."""
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint} if case == "on" else {}


def clean_env() -> dict[str, str]:
    """This process's environment without any ``OTEL_*`` of the developer's shell (it would turn "off" on)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}


async def sink_stats(url: str) -> dict[str, int]:
    async with httpx.AsyncClient(timeout=5) as client:
        stats: dict[str, int] = (await client.get(f"{url}/stats")).json()
        return stats


# ------------------------------------------------------------------------------------------- gateway
async def gateway_case(ep: Any, prefix: str, logs: Path, otlp: str) -> dict[str, Any]:
    from consumer_runtime.testing import topic_env

    common = {
        "KAFKA_BOOTSTRAP_SERVERS": ep.kafka_bootstrap,
        "KAFKA_ENABLE_IDEMPOTENCE": "false",
        "LOG_LEVEL": "WARNING",
        "HTTP_HOST": "127.0.0.1",
        "ADMIN_TOKEN": ADMIN,
        # wrk publishes as fast as the gateway answers, as one caller: no abuse limit in a benchmark
        "PUBLISH_RATE_LIMIT": "1000000/second",
        **topic_env(lambda default: f"{prefix}-{default}"),
        "KAFKA_CONTROL_TOPIC": f"{prefix}-control",
    }
    servers = {
        case: Server(
            f"gateway (tracing {case})",
            "gateway",
            {**common, **otel_env(case, otlp)},
            logs / f"gw-{case}.log",
        )
        for case in CASES
    }
    script = logs / "post.lua"
    body = {"channel_id": "ch_bench", "author_id": "user_001", "content": "배포 완료 공유드립니다",
            "mentions": ["user_002"]}  # fmt: skip
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = {json.dumps(json.dumps(body, ensure_ascii=False), ensure_ascii=False)}\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Authorization"] = "Bearer {ADMIN}"\n'  # GATEWAY_AUTH=required (the default)
    )
    try:
        # Server.spawn passes os.environ on: the cases differ only in what otel_env adds
        with _environ(clean_env()):
            for server in servers.values():
                await server.start()
        for case, server in servers.items():
            await poll(lambda s=server: _ready(s.url), f"gateway ({case}) /readyz", 60)
            auth = {"Authorization": f"Bearer {ADMIN}"}
            async with httpx.AsyncClient(base_url=server.url, timeout=30, headers=auth) as gw:
                check = await gw.post("/messages", json=body)  # warm: producer connected, first metadata
                if check.status_code != 200:
                    raise RuntimeError(f"POST /messages ({case}): {check.status_code} {check.text[:300]}")
                traced = "x-trace-id" in check.headers
                if traced != (case == "on"):
                    raise RuntimeError(
                        f"gateway ({case}) answers {'with' if traced else 'without'} X-Trace-ID"
                    )
        before = await sink_stats(otlp)
        runs: dict[str, list[dict[str, Any]]] = {case: [] for case in CASES}
        for i, case in alternating(CASES, ROUNDS):
            server = servers[case]
            res = await run_wrk_on(server, f"{server.url}/messages", CONCURRENCY, ROUND_S, "-s", str(script))
            res["round"] = i
            runs[case].append(res)
            say(
                f"gateway POST /messages round {i} tracing {case:3s} {res['req_per_s']:8,.0f} req/s  "
                f"p50 {res['p50_ms']:.2f} ms  p99 {res['p99_ms']:.2f} ms  "
                f"CPU {res['server_cpu_ms_per_req']:.2f} ms/req  errors {res['errors']}"
            )
        total = sum(r["requests"] for rs in runs.values() for r in rs)
        errors = sum(r["errors"] for rs in runs.values() for r in rs)
        if errors > MAX_ERROR_RATE * total:
            raise RuntimeError(f"{errors} of {total} requests failed (non-2xx or socket errors): not a rate")
        await asyncio.sleep(6)  # the batch processor's 5 s schedule: the last spans reach the receiver
        after = await sink_stats(otlp)
    finally:
        for server in servers.values():
            server.stop()
        for server in servers.values():
            server.reap()
    off, on = combined(runs["off"]), combined(runs["on"])
    requests_on = sum(r["requests"] for r in runs["on"])
    spans = after["spans"] - before["spans"]
    return {
        "path": "gateway POST /messages",
        "unit": "requests",
        "how": f"wrk -t1 -c{CONCURRENCY}, {ROUNDS} alternating rounds of {ROUND_S} s per case",
        "off_per_s": off["req_per_s"],
        "on_per_s": on["req_per_s"],
        "on_over_off": on["req_per_s"] / off["req_per_s"],
        "on_over_off_rounds": ratio_rounds(runs["on"], runs["off"]),
        "off_p50_ms": off["p50_ms"],
        "on_p50_ms": on["p50_ms"],
        "off_p99_ms": off["p99_ms"],
        "on_p99_ms": on["p99_ms"],
        "off_cpu_ms_per_unit": off["server_cpu_ms_per_req"],
        "on_cpu_ms_per_unit": on["server_cpu_ms_per_req"],
        "errors": off["errors"] + on["errors"],
        "spans_exported": spans,
        "spans_per_unit": spans / requests_on if requests_on else None,
        "rounds": runs,
    }


async def _ready(url: str) -> bool:
    async with httpx.AsyncClient(timeout=5) as client:
        with contextlib.suppress(httpx.HTTPError):
            return (await client.get(f"{url}/readyz")).status_code == 200
    return False


@contextlib.contextmanager
def _environ(env: dict[str, str]) -> Any:
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


# ------------------------------------------------------------------------------------------- sink
def _si_settings(ep_kafka: str, es_url: str, base: str, group: str, alias: str) -> Any:
    from search_indexer.config import Settings

    return Settings(  # what `make run` gives the service (its defaults), on this run's own names
        kafka_bootstrap_servers=ep_kafka,
        kafka_enable_idempotence=False,
        kafka_consumer_group=group,
        kafka_topic_messages_created=f"{base}.created",
        kafka_topic_messages_updated=f"{base}.updated",
        kafka_topic_messages_deleted=f"{base}.deleted",
        elasticsearch_url=es_url,
        search_index_alias=alias,
    )


async def drain_child(spec: dict[str, Any]) -> dict[str, Any]:
    """One drain, in this (fresh) process: tracing as `run_service` sets it up from the environment."""
    from consumer_runtime import configure_logging, tracing
    from search_indexer.store import MessageStore

    from benchmarks.bench_search_indexer import drain

    configure_logging("bench-tracing", "WARNING", json=False)
    on = tracing.configure_tracing("search-indexer")  # before the store's client, as run_service does
    settings = _si_settings(spec["kafka"], spec["es"], spec["base"], spec["group"], spec["alias"])
    store = MessageStore.from_settings(settings)
    try:
        await store.ensure_alias()
        cpu = time.process_time()
        d = await drain(settings, store, spec["n"])
        tracing.shutdown_tracing()  # flush: the export of the last spans counts too
        d["cpu_s"] = time.process_time() - cpu  # the whole drain (group join included), all threads
        await store.refresh()
        count = await store.count()
        if count != spec["n"]:
            raise RuntimeError(f"indexed {count} of {spec['n']}")
    finally:
        with contextlib.suppress(Exception):
            for index in await store.alias_indices():
                await store.delete_index(index)
        await store.close()
        tracing.shutdown_tracing()  # (when the drain failed)
    return {**d, "tracing": on, "events_per_s": spec["n"] / d["steady_s"]}


async def produce_backlog(bootstrap: str, topic: str, n: int) -> None:
    from aiokafka import AIOKafkaProducer
    from platform_events import encode

    from benchmarks.bench_search_indexer import event

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_batch_size=512 * 1024
    )
    await producer.start()
    try:
        for start in range(0, n, 5000):
            futures = []
            for i in range(start, min(n, start + 5000)):
                e = event(i, "t")
                traceparent = f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01".encode()
                futures.append(
                    await producer.send(
                        topic, encode(e), key=e.channel_id.encode(), headers=[("traceparent", traceparent)]
                    )
                )
            await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def sink_case(ep: Any, prefix: str, otlp: str) -> dict[str, Any]:
    from consumer_runtime.topics import ensure_topics

    base = f"{prefix}-si"
    settings = _si_settings(ep.kafka_bootstrap, ep.elasticsearch_url, base, f"{base}-g", f"{base}-x")
    topics = [f"{base}.{t}" for t in ("created", "updated", "deleted")]
    await ensure_topics(settings, topics + [f"{t}.dlq" for t in topics])
    say(f"producing a backlog of {SINK_N} message.created records, each with a traceparent of its own")
    await produce_backlog(ep.kafka_bootstrap, topics[0], SINK_N)
    runs: dict[str, list[dict[str, Any]]] = {case: [] for case in CASES}
    for i, case in alternating(CASES, SINK_ROUNDS):
        spec = {
            "kafka": ep.kafka_bootstrap,
            "es": ep.elasticsearch_url,
            "base": base,
            "group": f"{base}-{case}-{i}",
            "alias": f"{base}-{case}-{i}",
            "n": SINK_N,
        }
        before = await sink_stats(otlp)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "benchmarks.bench_tracing", "--drain", json.dumps(spec),
            env={**clean_env(), **otel_env(case, otlp)}, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(proc.communicate(), 300)
        if proc.returncode:
            raise RuntimeError(f"drain ({case}, round {i}) exited with {proc.returncode}")
        res = json.loads(out.decode().strip().splitlines()[-1])
        if res["tracing"] != (case == "on"):
            raise RuntimeError(f"drain ({case}): tracing {'on' if res['tracing'] else 'off'}")
        res["spans_exported"] = (await sink_stats(otlp))["spans"] - before["spans"]
        res["round"] = i
        runs[case].append(res)
        say(
            f"search-indexer drain round {i} tracing {case:3s} {res['events_per_s']:8,.0f} events/s  "
            f"CPU {res['cpu_s'] * 1000 / SINK_N:.3f} ms/event ({res['batches']} batches, "
            f"{res['spans_exported']} spans exported)"
        )
    rates = {case: SINK_N * len(runs[case]) / sum(r["steady_s"] for r in runs[case]) for case in CASES}
    cpu = {case: sum(r["cpu_s"] for r in runs[case]) * 1000 / (SINK_N * len(runs[case])) for case in CASES}
    spans_on = sum(r["spans_exported"] for r in runs["on"])
    return {
        "path": "search-indexer drain (make run defaults)",
        "unit": "events",
        "how": (
            f"a backlog of {SINK_N:,} message.created records, each with its own traceparent, drained "
            f"{SINK_ROUNDS}× per case (alternating), a fresh process, consumer group and index each time"
        ),
        "off_per_s": rates["off"],
        "on_per_s": rates["on"],
        "on_over_off": rates["on"] / rates["off"],
        "on_over_off_rounds": [
            round(on["events_per_s"] / off["events_per_s"], 3)
            for on, off in zip(runs["on"], runs["off"], strict=True)
        ],
        "off_cpu_ms_per_unit": cpu["off"],
        "on_cpu_ms_per_unit": cpu["on"],
        "spans_exported": spans_on,
        "spans_per_unit": spans_on / (SINK_N * len(runs["on"])) if runs["on"] else None,
        "rounds": runs,
    }


# ------------------------------------------------------------------------------------------- main
async def main() -> int:
    from devservers import ensure

    ep = ensure(["kafka", "elasticsearch"])
    prefix = f"bench-trc-{uuid.uuid4().hex[:6]}"
    logs = Path(tempfile.mkdtemp(prefix="bench-tracing-"))
    receiver = Server("OTLP receiver", "benchmarks._otlp_sink", {}, logs / "otlp.log", args=("{port}",))
    rows: list[dict[str, Any]] = []
    try:
        await receiver.start()
        otlp = receiver.url
        results = [await gateway_case(ep, prefix, logs, otlp), await sink_case(ep, prefix, otlp)]
        for r in results:
            rows.append(
                {
                    "path": r["path"],
                    "off_per_s": r["off_per_s"],
                    "on_per_s": r["on_per_s"],
                    "on_over_off": r["on_over_off"],
                    "rounds": ", ".join(f"{x:.2f}" for x in r["on_over_off_rounds"]),
                    "spans": r["spans_exported"],
                }
            )
        report(
            "tracing",
            rows,
            summary={
                "headline": headline_of(results),
                "tracing": [{k: v for k, v in r.items() if k != "rounds"} for r in results],
                "rounds": {r["path"]: r["rounds"] for r in results},
                "exporter": "BatchSpanProcessor (SDK defaults) + OTLPSpanExporter, HTTP/protobuf to a local "
                "receiver in its own process (benchmarks._otlp_sink)",
                "otlp_receiver": await sink_stats(otlp),
            },
        )
    finally:
        receiver.stop()
        receiver.reap()
        await delete_run_topics(ep.kafka_bootstrap, prefix, say)
    return 0


def headline_of(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The report's main-table row: no rate of its own, the on ÷ off ratios in its "latency of" cell."""
    ratios = "; ".join(f"{r['path']} {r['on_over_off']:.2f}" for r in results)
    return headline(latency_of=f"tracing on ÷ off: {ratios} (section below)")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--drain":
        print(json.dumps(asyncio.run(drain_child(json.loads(sys.argv[2])))), flush=True)
    else:
        sys.exit(asyncio.run(main()))
