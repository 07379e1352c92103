"""`make bench-memory`: resident memory of each sink process while it drains a large backlog (issue 19).

    python -m benchmarks.memory                      # MEMORY_EVENTS (default 1,000,000) per topic
    MEMORY_EVENTS=50000 python -m benchmarks.memory  # a short run

What it does:

1. Produces the backlog before any service runs: ``MEMORY_EVENTS`` factory issues (chatbot-issue-events),
   wide log events (log-events) and chat messages with one mention (platform.messages.created, read by both
   the search-indexer and the notifier), on this run's own topic names.
2. Starts the four sinks as separate processes (tests/e2e/e2e_harness.py's Stack) with the `make run`
   defaults: none of the harness's test timings (batch timeout, session timeout, retry backoff, pool size) is
   passed on, so every ``MQ_*``/``KAFKA_*`` setting is the runtime's default.
3. Samples each process's VmRSS every ``MEMORY_SAMPLE_S`` (0.5 s) until its consumer group has committed the
   whole backlog, then reads the kernel's own peak (VmHWM) of that process — per process, never summed over
   a process group. The search-indexer stops after ``MEMORY_SEARCH_EVENTS`` (200,000): the Elasticsearch
   stand-in keeps every document in its own memory.
4. Prints a table, writes ``benchmarks/results/memory.json``; the target is ≤ 150 MB per process.

Not part of `make bench` (a 1M backlog per topic takes longer than its 15 minute budget on 2 cores); the
report (benchmarks/results/REPORT.md) shows the last result when there is one.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
for _p in (REPO / "tests" / "faults", REPO / "tests" / "e2e"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from e2e_harness import SINKS, Names, Stack, committed_offsets, produce, shared_endpoints  # noqa: E402
from faults_lib import event_for  # noqa: E402

from benchmarks._common import report  # noqa: E402
from benchmarks._targets import Target, targets  # noqa: E402

N = int(os.environ.get("MEMORY_EVENTS", "1000000"))
#: the Elasticsearch stand-in keeps every document in its own memory (about 20 KB each: 738,000 documents
#: took it to 15 GB and made it stop answering), so the search-indexer is measured on the first part of the
#: backlog and then stopped; a real Elasticsearch can take MEMORY_SEARCH_EVENTS=MEMORY_EVENTS
SEARCH_N = min(N, int(os.environ.get("MEMORY_SEARCH_EVENTS", "200000")))
SAMPLE_S = float(os.environ.get("MEMORY_SAMPLE_S", "0.5"))
TIMEOUT_S = float(os.environ.get("MEMORY_TIMEOUT_S", "3600"))
GOAL_MB = 150.0
#: the sinks' consumed topic (its default name) per service
TOPIC = {
    "issue-ingestor": "chatbot-issue-events",
    "log-sink": "log-events",
    "search-indexer": "platform.messages.created",
    "notifier": "platform.messages.created",
}
#: what the e2e harness sets to make tests fast; the defaults of `make run` are measured here instead
HARNESS_TIMINGS = (
    "MQ_BATCH_TIMEOUT_MS",
    "KAFKA_SESSION_TIMEOUT_MS",
    "KAFKA_HEARTBEAT_INTERVAL_MS",
    "RETRY_BACKOFF_INITIAL_MS",
    "RETRY_BACKOFF_MAX_MS",
    "SHUTDOWN_TIMEOUT_S",
    "DB_POOL_SIZE",
    "SEARCH_INDEX_REFRESH_INTERVAL",
    "LOG_LEVEL",
)


class DefaultsStack(Stack):
    """The harness's stack without its test timings: each service runs at the `make run` defaults."""

    def env_for(self, name: str, instance: str = "") -> dict[str, str]:
        env = super().env_for(name, instance)
        for key in HARNESS_TIMINGS:
            env.pop(key, None)
        return env


def log(msg: str) -> None:
    print(f"[memory {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def progress_of(topic: str) -> Any:
    def progress(produced: int) -> None:
        if produced % 200_000 == 0:
            log(f"  {topic}: {produced:,} produced")

    return progress


def peak_target(row: dict[str, Any]) -> Target:
    return Target(f"{row['service']} peak RSS", row["rss_peak_mb"], "<=", GOAL_MB, unit="MB")


def message_event(i: int) -> tuple[bytes, bytes]:
    """A chat message with one mention (the notifier stores and publishes one notification per message)."""
    key, raw = event_for("notifier", i)
    value = json.loads(raw)
    value["payload"]["mentions"] = [f"user{i % 97}"]
    return key, json.dumps(value, ensure_ascii=False).encode()


async def caught_up(bootstrap: str, group: str, topic: str, ends: dict[int, int], events: int) -> bool:
    """The group committed the whole backlog (``events`` = all of it) or at least ``events`` records."""
    committed = await committed_offsets(bootstrap, group, topic)
    if events < sum(ends.values()):
        return sum(committed.values()) >= events
    return all(committed.get(p, 0) >= end for p, end in ends.items())


def events_of(name: str) -> int:
    return SEARCH_N if name == "search-indexer" else N


async def main() -> int:
    names = Names.fresh("mem")
    ep = shared_endpoints()
    workdir = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    stack = DefaultsStack(names, ep, workdir)
    rows: list[dict[str, Any]] = []
    try:
        from consumer_runtime.settings import KafkaClientSettings
        from consumer_runtime.topics import ensure_topics

        await ensure_topics(
            KafkaClientSettings(kafka_bootstrap_servers=ep.kafka),
            [names.topic(t) for t in dict.fromkeys(TOPIC.values())],
        )
        makers = {
            "chatbot-issue-events": lambda i: event_for("issue-ingestor", i),
            "log-events": lambda i: event_for("log-sink", i),
            "platform.messages.created": message_event,
        }
        ends: dict[str, dict[int, int]] = {}
        t0 = time.monotonic()
        for default, make in makers.items():
            log(f"producing {N:,} records to {names.topic(default)}")
            ends[default] = await produce(
                ep.kafka,
                names.topic(default),
                (make(i) for i in range(N)),
                progress=progress_of(names.topic(default)),
            )
        log(f"backlog produced in {time.monotonic() - t0:,.0f}s; starting {', '.join(SINKS)}")

        started = time.monotonic()
        for name in SINKS:
            stack.spawn(name)
        await asyncio.gather(*(stack.wait_ready(name, timeout=120) for name in SINKS))
        ready_at = time.monotonic()
        first = {name: stack.procs[name].rss_kb() for name in SINKS}
        samples: dict[str, list[int]] = {name: [] for name in SINKS}
        done: dict[str, float] = {}
        peak: dict[str, int] = {}
        next_check = 0.0
        while len(done) < len(SINKS):
            now = time.monotonic()
            if now - started > TIMEOUT_S:
                raise TimeoutError(f"not drained after {TIMEOUT_S:.0f}s: {sorted(set(SINKS) - set(done))}")
            for name in SINKS:
                if name in done:
                    continue
                proc = stack.procs[name]
                if not proc.alive():
                    tail = proc.log_tail()
                    raise RuntimeError(f"{name} exited while draining; log {proc.log_file}:\n{tail}")
                rss = proc.rss_kb()
                if rss is not None:
                    samples[name].append(rss)
            if now >= next_check:
                next_check = now + 5.0
                for name in SINKS:
                    if name in done:
                        continue
                    topic = names.topic(TOPIC[name])
                    count = events_of(name)
                    if await caught_up(ep.kafka, names.group(name), topic, ends[TOPIC[name]], count):
                        done[name] = time.monotonic() - started
                        peak[name] = stack.procs[name].rss_kb("VmHWM") or max(samples[name])
                        if count < N:  # measured on part of the backlog: it need not take the rest
                            stack.terminate(name)
                        log(f"{name}: drained in {done[name]:,.0f}s, peak RSS {peak[name] / 1024:,.0f} MB")
                progress = {n: f"{max(s or [0]) / 1024:,.0f} MB" for n, s in samples.items()}
                log(f"  {now - started:,.0f}s: peak so far {progress}")
            await asyncio.sleep(SAMPLE_S)

        for name in SINKS:
            seen = sorted(samples[name])
            rows.append(
                {
                    "service": name,
                    "events": events_of(name),
                    "drain_s": round(done[name], 1),
                    "events_per_s": round(events_of(name) / done[name]),
                    "rss_ready_mb": round((first.get(name) or 0) / 1024, 1),
                    "rss_median_mb": round(seen[len(seen) // 2] / 1024, 1) if seen else None,
                    "rss_peak_mb": round(peak[name] / 1024, 1),
                }
            )
        summary = {
            "events_per_topic": N,
            "search_indexer_events": SEARCH_N,
            "defaults": "make run defaults (no MQ_*/KAFKA_* overrides)",
            "ready_after_s": round(ready_at - started, 1),
            "targets": targets(*(peak_target(r) for r in rows)),
        }
        report("memory", rows, summary=summary)
        return 0 if all(r["rss_peak_mb"] <= GOAL_MB for r in rows) else 1
    finally:
        await stack.close()


async def until_signalled() -> int:
    """``main`` that a SIGINT or SIGTERM cancels, so its ``finally`` stops the services and drops the data
    (a background job's SIGINT is ignored by default, and SIGTERM would end Python without clean-up)."""
    task = asyncio.ensure_future(main())
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    try:
        return await task
    except asyncio.CancelledError:
        log("interrupted: services stopped, run data dropped")
        return 130


def run(argv: Sequence[str] | None = None) -> int:
    return asyncio.run(until_signalled())


if __name__ == "__main__":
    raise SystemExit(run())
