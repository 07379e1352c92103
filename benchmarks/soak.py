"""`make soak`: a chaos soak of the whole platform; exits 1 unless every event is stored exactly once.

    python -m benchmarks.soak                 # SOAK_S seconds of load + faults (default 300)
    SOAK_S=60 python -m benchmarks.soak       # a short run (the `faults`-marked test runs this)

What it does (docs/soak.md has the details):

1. Servers of its own: a durable broker (Tansu on an S3 stand-in), MariaDB, MongoDB and Elasticsearch, each a
   private instance on its own port (never the shared ones); two replicas of every sink plus the gateway, as
   processes (tests/e2e/e2e_harness.py's Stack).
2. Calibration: a burst of events on every topic, drained by the sinks; the soak's rate is half of the
   measured drain rate (capped by ``SOAK_MAX_RATE`` per topic, default 150/s; ``SOAK_RATE`` sets it).
3. Steady load on every topic: factory issues (half get an isSolved follow-up), wide log events, messages
   with two mentions; 1 % poison records. Every ``SOAK_FAULT_EVERY_S`` (10 s) one random fault: SIGKILL a
   sink replica and restart it; SIGKILL MariaDB or MongoDB and restart it (Elasticsearch: SIGTERM, its
   stand-in keeps data only on a clean stop); restart the broker; operator stop+start or pause+resume of a
   service's consumer through the gateway.
4. Quiesce, then compare the ledger of what the producer got acknowledged with what every store holds,
   counted by signals the stores' unique keys cannot hide (tests/faults/faults_lib.py): missing and
   duplicated per sink (notifications and notifications.sent included), every poison record in each
   group's DLQ with its headers, every replica ready within 10 s of the last fault.
5. Report: ``benchmarks/results/soak/soak.json`` and ``SOAK.md`` (events per sink, faults by kind, recovery
   p50/max, missing, duplicated, dead-lettered); progress on the terminal while it runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
for _p in (REPO / "tests" / "faults", REPO / "tests" / "e2e"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from e2e_harness import SINKS, Endpoints, Names, Stack  # noqa: E402
from faults_lib import (  # noqa: E402
    BASE,
    CHECKS,
    PrivateMariaDB,
    Tally,
    event_for,
    read_s3_topic,
    sent_tally_of,
    stored,
)

from benchmarks._common import RESULTS, pct  # noqa: E402

OUT = RESULTS / "soak"
TOPIC = {"issues": "chatbot-issue-events", "logs": "log-events", "messages": "platform.messages.created"}
FEED = {"issue-ingestor": "issues", "log-sink": "logs", "search-indexer": "messages", "notifier": "messages"}
STORE = {
    "issue-ingestor": "mysql",
    "log-sink": "mongo",
    "notifier": "mongo",
    "search-indexer": "elasticsearch",
}
REPLICAS = ("", "2")
POISON_EVERY = 100  # 1 %
POISON = [b"{not json", b"\xff\xfe\x00", b"[1, 2, 3]", b'{"event_type": "nope"}']
FAULTS = ("kill_replica", "kill_datastore", "broker_restart", "operator_stop_start", "operator_pause_resume")
READY_AFTER_LAST_FAULT_S = 10.0
DLQ_HEADERS = ("dlq.original.topic", "dlq.original.partition", "dlq.original.offset", "dlq.error.class")


def log(msg: str) -> None:
    print(f"[soak {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --------------------------------------------------------------------------------------------- ledger
@dataclass
class Ledger:
    """What the producer got acknowledged (acks=all): the truth the stores are compared with."""

    next: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TOPIC, 0))
    issues: set[str] = field(default_factory=set)
    solved: set[str] = field(default_factory=set)
    logs: set[str] = field(default_factory=set)
    messages: set[int] = field(default_factory=set)
    poison: dict[str, set[str]] = field(default_factory=lambda: {t: set() for t in TOPIC})
    follow_ups: list[int] = field(default_factory=list)  # opened issues still to be solved
    records: int = 0

    def chunk(self, per_topic: int) -> tuple[dict[str, list[tuple[bytes, bytes]]], dict[str, Any]]:
        """The next ``per_topic`` records of every topic and what they add to the ledger once acknowledged."""
        out: dict[str, list[tuple[bytes, bytes]]] = {t: [] for t in TOPIC}
        adds: dict[str, Any] = {"issues": set(), "solved": set(), "logs": set(), "messages": set(),
                                "poison": {t: set() for t in TOPIC}}  # fmt: skip
        for topic in TOPIC:
            for _ in range(per_topic):
                i = self.next[topic]
                self.next[topic] += 1
                if i % POISON_EVERY == POISON_EVERY // 2:
                    key = f"poison-{topic}-{i}"
                    out[topic].append((key.encode(), POISON[i % len(POISON)]))
                    adds["poison"][topic].add(key)
                    continue
                sink = {"issues": "issue-ingestor", "logs": "log-sink", "messages": "notifier"}[topic]
                out[topic].append(event_for(sink, i))
                if topic == "issues":
                    adds["issues"].add(f"F{i:07d}")
                    if i % 2 == 0:
                        self.follow_ups.append(i)
                elif topic == "logs":
                    adds["logs"].add(f"ev{i:07d}")
                else:
                    adds["messages"].add(i)
        # follow-ups of issues opened in earlier chunks (same key → same partition → after the open)
        while self.follow_ups and self.follow_ups[0] < self.next["issues"] - per_topic:
            j = self.follow_ups.pop(0)
            fkey, raw = event_for("issue-ingestor", j)
            value = json.loads(raw)
            value["isSolved"] = True
            value["timestamp"] = (BASE + timedelta(seconds=j, milliseconds=500)).isoformat()
            out["issues"].append((fkey, json.dumps(value, ensure_ascii=False).encode()))
            adds["solved"].add(f"F{j:07d}")
        return out, adds

    def commit(self, adds: dict[str, Any], n: int) -> None:
        for k in ("issues", "solved", "logs", "messages"):
            getattr(self, k).update(adds[k])
        for t, keys in adds["poison"].items():
            self.poison[t].update(keys)
        self.records += n

    def expected(self, check: str) -> set[str]:
        if check == "issue-ingestor":
            return set(self.issues)
        if check == "log-sink":
            return set(self.logs)
        if check == "search-indexer":
            return {f"msg{i:07d}" for i in self.messages}
        return {f"evt{i:07d}:{u}" for i in self.messages for u in ("user_a", "user_b")}


# --------------------------------------------------------------------------------------------- servers
class Servers:
    """The soak's private broker and datastores (started, killed and restarted by their PID only)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.broker: Any = None
        self.mysql: PrivateMariaDB | None = None
        self.mongo: Any = None
        self.es: Any = None

    def start(self) -> Endpoints:
        from devservers import start_private

        self.broker = start_private("kafka", data_dir=self.workdir / "broker", storage="s3")
        self.mysql = PrivateMariaDB(self.workdir / "mysql").install()
        self.mysql.start()
        self.mongo = start_private("mongo", data_dir=self.workdir / "mongo")
        self.es = start_private("elasticsearch", data_dir=self.workdir / "es")
        return Endpoints(
            kafka=self.broker.address, mysql_port=self.mysql.port, mongo_url=self.mongo.address,
            elasticsearch_url=self.es.address,
        )  # fmt: skip

    def kill_restart(self, kind: str, down_s: float) -> str:
        """Crash a datastore and start it again; returns how (SIGKILL or SIGTERM)."""
        if kind == "mysql":
            assert self.mysql is not None
            assert self.mysql.popen is not None
            self.mysql.popen.kill()  # our own child, by PID
            self.mysql.popen.wait(10)
            self.mysql.popen = None
            time.sleep(down_s)
            self.mysql.start(timeout=60)
            return "SIGKILL"
        srv = self.mongo if kind == "mongo" else self.es
        how = "SIGKILL"
        if kind == "elasticsearch":
            srv.stop(timeout=10)  # the ES stand-in keeps its data only across a clean stop
            how = "SIGTERM"
        else:
            srv.kill()
        time.sleep(down_s)
        srv.start()
        return how

    def restart_broker(self, down_s: float) -> None:
        self.broker.stop(timeout=5)
        time.sleep(down_s)
        self.broker.start()

    def ensure_up(self) -> None:
        for srv in (self.broker, self.mongo, self.es):
            if srv is not None and not srv.running:
                srv.start()
        if self.mysql is not None and (self.mysql.popen is None or self.mysql.popen.poll() is not None):
            self.mysql.start(timeout=60)

    def close(self) -> None:
        for srv in (self.mongo, self.es):
            if srv is not None:
                with contextlib.suppress(Exception):
                    srv.stop(timeout=10)
        if self.mysql is not None:
            with contextlib.suppress(Exception):
                self.mysql.stop()
        if self.broker is not None:
            with contextlib.suppress(Exception):
                self.broker.close(timeout=5)


# --------------------------------------------------------------------------------------------- the soak
@dataclass
class Fault:
    kind: str
    target: str
    at_s: float
    done_s: float = 0.0
    ready_s: float | None = None  # from the end of the fault's action to every replica's /readyz 200
    recovered_s: float | None = None  # … to every replica ready *and* its consumer running (consuming again)


class Soak:
    def __init__(self, duration_s: float, workdir: Path, *, seed: int | None = None) -> None:
        self.duration_s = duration_s
        self.workdir = workdir
        self.rng = random.Random(seed)
        chosen = [k.strip() for k in os.environ.get("SOAK_FAULTS", "").split(",") if k.strip()]
        self.kinds = chosen or list(FAULTS)
        if unknown := set(self.kinds) - set(FAULTS):
            raise SystemExit(f"SOAK_FAULTS: unknown kinds {sorted(unknown)} (known: {', '.join(FAULTS)})")
        self.servers = Servers(workdir)
        self.ledger = Ledger()
        self.stack: Stack | None = None
        self.faults: list[Fault] = []
        self.t0 = time.monotonic()
        self.rate = 0.0
        self.max_rate = 0.0
        self.resent_chunks = 0
        self.stop_load = asyncio.Event()
        self.not_ready_seen: dict[str, str] = {}  # the last not-ready answer per replica
        self.not_ready_log: list[dict[str, Any]] = []  # each change of a replica's not-ready answer
        self._current: dict[str, str] = {}  # replicas not ready now → their answer
        self._watchers: list[asyncio.Task[None]] = []

    def now(self) -> float:
        return round(time.monotonic() - self.t0, 2)

    # ------------------------------------------------------------------ set-up
    async def setup(self) -> None:
        log(f"starting private broker (durable), MariaDB, MongoDB, Elasticsearch under {self.workdir}")
        ep = await asyncio.to_thread(self.servers.start)
        self.stack = Stack(Names.fresh("soak"), ep, self.workdir / "stack", env={"MQ_BATCH_SIZE": "200"})
        self.stack.ensure_mysql()
        await self.stack.start(*SINKS, timeout=120)
        await self.stack.start(*SINKS, instance="2", timeout=120)
        await self.stack.start("gateway", timeout=60)
        log(f"stack up: 2 replicas of {', '.join(SINKS)} + gateway ({self.stack.names.rid})")

    # ------------------------------------------------------------------ producing
    async def _send(self, producer: Any, records: dict[str, list[tuple[bytes, bytes]]]) -> None:
        assert self.stack is not None
        pending = []
        for name, recs in records.items():
            topic = self.stack.names.topic(TOPIC[name])
            for key, value in recs:
                pending.append(await producer.send(topic, value=value, key=key))
        await asyncio.gather(*pending)

    async def _send_until_acked(self, producer: Any, per_topic: int) -> None:
        """One chunk, sent again in full until every record is acknowledged (at least once, as any
        producer does through a broker restart; the sinks' idempotent writes make it exactly once)."""
        from aiokafka.errors import KafkaError

        records, adds = self.ledger.chunk(per_topic)
        n = sum(len(v) for v in records.values())
        while True:
            try:
                await asyncio.wait_for(self._send(producer, records), 30)
                break
            except (KafkaError, OSError, TimeoutError):
                self.resent_chunks += 1
                await asyncio.sleep(0.5)
        self.ledger.commit(adds, n)

    async def _producer(self) -> Any:
        from aiokafka import AIOKafkaProducer

        assert self.stack is not None
        producer = AIOKafkaProducer(
            bootstrap_servers=self.stack.ep.kafka, acks="all", linger_ms=5, request_timeout_ms=5000,
            retry_backoff_ms=200, max_batch_size=512 * 1024,
        )  # fmt: skip
        await producer.start()
        return producer

    async def calibrate(self, burst: int) -> None:
        """Half the measured drain rate of the slowest sink, for a burst on every topic."""
        producer = await self._producer()
        try:
            t = time.monotonic()
            for _ in range(burst // 500):
                await self._send_until_acked(producer, 500)
        finally:
            await producer.stop()
        await self.drained(timeout=180)
        elapsed = time.monotonic() - t
        self.max_rate = burst / elapsed
        cap = float(os.environ.get("SOAK_MAX_RATE", "150"))
        self.rate = float(os.environ.get("SOAK_RATE", "0")) or min(self.max_rate / 2, cap)
        log(f"calibration: {burst} events per topic drained in {elapsed:.1f}s → max {self.max_rate:.0f}/s "
            f"per topic; soak rate {self.rate:.0f}/s per topic")  # fmt: skip

    async def load(self) -> None:
        """``rate`` events per topic and second, in chunks every 0.2 s; up to 25 chunks in flight (a broker
        restart stalls the acknowledgements: then the load waits instead of piling up)."""
        producer = await self._producer()
        in_flight = asyncio.Semaphore(25)
        chunks: set[asyncio.Task[None]] = set()

        async def one(n: int) -> None:
            try:
                await self._send_until_acked(producer, n)
            finally:
                in_flight.release()

        try:
            tick = 0.2
            carry = 0.0
            next_at = time.monotonic()
            while not self.stop_load.is_set():
                carry += self.rate * tick
                n = int(carry)
                carry -= n
                if n:
                    await in_flight.acquire()
                    task = asyncio.create_task(one(n))
                    chunks.add(task)
                    task.add_done_callback(chunks.discard)
                next_at += tick
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
                next_at = max(next_at, time.monotonic() - tick)  # a stall does not turn into a burst
            if chunks:
                await asyncio.gather(*chunks)
        finally:
            await producer.stop()

    # ------------------------------------------------------------------ readiness
    async def replica_ready(self, client: httpx.AsyncClient, name: str, inst: str) -> tuple[bool, bool]:
        """(ready: ``/readyz`` 200 — what a load balancer or Kubernetes acts on, also "degraded" while the
        consumer joins its group; consuming: ready and the consumer ``running``)."""
        assert self.stack is not None
        key = self.stack.key(name, inst)
        try:
            r = await client.get(f"{self.stack.url(name, inst)}/readyz")
            st = (await client.get(f"{self.stack.url(name, inst)}/consumer/status")).json()
        except (httpx.HTTPError, ValueError) as exc:
            self._not_ready(key, repr(exc)[:200])
            return False, False
        ready = r.status_code == 200
        consuming = ready and st.get("state") == "running"
        if not consuming:
            self._not_ready(key, f"readyz {r.status_code}, state {st.get('state')}: {r.text[:200]}")
        else:
            self._current.pop(key, None)
        return ready, consuming

    def _not_ready(self, key: str, why: str) -> None:
        if self._current.get(key) != why:
            self.not_ready_log.append({"t": self.now(), "replica": key, "answer": why})
        self._current[key] = self.not_ready_seen[key] = why

    async def all_ready(self) -> tuple[bool, bool]:
        """(every replica ready, every replica consuming)."""
        async with httpx.AsyncClient(timeout=3) as c:
            answers = await asyncio.gather(
                *(self.replica_ready(c, name, inst) for name in SINKS for inst in REPLICAS)
            )
        return all(r for r, _ in answers), all(c for _, c in answers)

    async def _watch(self, fault: Fault, timeout: float = 180.0) -> None:
        while time.monotonic() - self.t0 - fault.done_s < timeout:
            ready, consuming = await self.all_ready()
            if ready and fault.ready_s is None:
                fault.ready_s = round(self.now() - fault.done_s, 2)
            if consuming:
                fault.recovered_s = round(self.now() - fault.done_s, 2)
                return
            await asyncio.sleep(0.5)

    # ------------------------------------------------------------------ faults
    async def inject(self, kind: str) -> Fault:
        assert self.stack is not None
        stack = self.stack
        fault = Fault(kind, "", self.now())
        if kind == "kill_replica":
            name, inst = self.rng.choice(SINKS), self.rng.choice(REPLICAS)
            fault.target = stack.key(name, inst)
            stack.kill(name, inst)
            await asyncio.sleep(1.0)
            stack.spawn(name, inst)
        elif kind == "kill_datastore":
            store = self.rng.choice(("mysql", "mongo", "elasticsearch"))
            how = await asyncio.to_thread(self.servers.kill_restart, store, 2.0)
            fault.target = f"{store} ({how})"
        elif kind == "broker_restart":
            fault.target = "kafka (s3)"
            await asyncio.to_thread(self.servers.restart_broker, 2.0)
        else:
            service = self.rng.choice(SINKS)
            first, then = ("stop", "start") if kind == "operator_stop_start" else ("pause", "resume")
            fault.target = f"{service} {first}+{then}"
            async with httpx.AsyncClient(
                base_url=stack.url("gateway"), headers=stack.admin_headers(), timeout=30
            ) as gw:
                for action in (first, then):
                    r = await gw.post(f"/api/v1/services/{service}/{action}")
                    if r.status_code not in (200, 202):
                        fault.target += f" ({action}: HTTP {r.status_code} {r.text[:120]})"
                    if action == first:
                        await asyncio.sleep(2.0)
        fault.done_s = self.now()
        self.faults.append(fault)
        self._watchers.append(asyncio.create_task(self._watch(fault)))
        log(f"fault {len(self.faults)}: {kind} → {fault.target} ({fault.done_s - fault.at_s:.1f}s)")
        return fault

    async def chaos(self, every_s: float) -> None:
        end = self.t0 + self.duration_s
        next_at = time.monotonic() + every_s
        while next_at < end:
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            await self.inject(self.rng.choice(self.kinds))
            next_at += every_s
            while next_at < time.monotonic():  # a slow fault (e.g. MariaDB recovery) skips a tick
                next_at += every_s
        await asyncio.sleep(max(0.0, end - time.monotonic()))

    async def progress(self) -> None:
        while True:
            await asyncio.sleep(5)
            kinds = Counter(f.kind for f in self.faults)
            async with httpx.AsyncClient(timeout=3) as c:
                answers = await asyncio.gather(
                    *(self.replica_ready(c, name, inst) for name in SINKS for inst in REPLICAS)
                )
            ready, consuming = sum(r for r, _ in answers), sum(c for _, c in answers)
            log(f"t={self.now():.0f}s produced {self.ledger.records} records; faults {dict(kinds)}; "
                f"replicas ready {ready}, consuming {consuming} of {len(answers)}")  # fmt: skip

    # ------------------------------------------------------------------ quiesce + compare
    async def lag_zero(self) -> bool:
        assert self.stack is not None
        async with httpx.AsyncClient(timeout=5) as c:
            for name in SINKS:
                for inst in REPLICAS:
                    st = (await c.get(f"{self.stack.url(name, inst)}/consumer/status")).json()
                    if st.get("state") != "running" or st.get("lag") or st.get("buffered"):
                        return False
        return True

    async def drained(self, timeout: float) -> bool:
        assert self.stack is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                counts = {s: (await stored(s, self.stack)).stored for s in SINKS}
                if all(counts[s] >= len(self.ledger.expected(s)) for s in SINKS) and await self.lag_zero():
                    return True
            await asyncio.sleep(2)
        return False

    async def dead_letters(self) -> dict[str, dict[str, Any]]:
        assert self.stack is not None
        out: dict[str, dict[str, Any]] = {}
        from consumer_runtime.dlq import decode_headers

        for name, topic in TOPIC.items():
            dlq_topic = self.stack.names.dlq(topic)
            letters = await asyncio.to_thread(read_s3_topic, self.servers.broker, dlq_topic)
            for sink in (s for s in SINKS if FEED[s] == name):
                group = self.stack.names.group(sink)
                mine = [r for r in letters if decode_headers(r.headers).get("dlq.consumer.group") == group]
                keys = Counter((r.key or b"").decode() for r in mine)
                bad_headers = [
                    (r.key or b"").decode()
                    for r in mine
                    if not all(decode_headers(r.headers).get(h) for h in DLQ_HEADERS)
                ]
                want = self.ledger.poison[name]
                out[sink] = {
                    "poison": len(want),
                    "dead_lettered": len(set(keys) & want),
                    "missing": sorted(want - set(keys))[:5],
                    "missing_n": len(want - set(keys)),
                    "letters": sum(keys.values()),  # more than poison: dead-lettered again after a redelivery
                    "without_headers": len(bad_headers),
                }
        return out

    async def run(self, every_s: float, calibration: int) -> dict[str, Any]:
        await self.setup()
        self.t0 = time.monotonic()
        await self.calibrate(calibration)
        self.t0 = time.monotonic()
        log(f"soak: {self.duration_s:.0f}s, a fault every {every_s:.0f}s")
        loading = asyncio.create_task(self.load())
        printing = asyncio.create_task(self.progress())
        try:
            await self.chaos(every_s)
        finally:
            self.stop_load.set()
            await loading
        last = self.faults[-1] if self.faults else None
        if self._watchers:
            await asyncio.wait(self._watchers, timeout=180)
        ready_after_last = last.ready_s if last is not None else 0.0
        consuming_after_last = last.recovered_s if last is not None else 0.0
        log(f"load stopped: {self.ledger.records} records produced; quiescing")
        await asyncio.to_thread(self.servers.ensure_up)
        drained = await self.drained(timeout=240 + self.ledger.records / 200)
        printing.cancel()
        assert self.stack is not None
        rows: list[dict[str, Any]] = []
        tallies: dict[str, Tally] = {}
        dlq = await self.dead_letters()
        for check in CHECKS:
            if check == "notifier.sent":  # as the broker stored it (its S3 objects), see docs/soak.md
                sent = self.stack.names.topic("platform.notifications.sent")
                tally = sent_tally_of(await asyncio.to_thread(read_s3_topic, self.servers.broker, sent))
            else:
                tally = await stored(check, self.stack)
            tallies[check] = tally
            want = self.ledger.expected(check)
            v = tally.verdict(want)
            row: dict[str, Any] = {
                "sink": check,
                "events": len(want),
                "stored": tally.stored,
                "missing": len(v["missing"]),
                "duplicated": len(v["duplicated"]),
                "unexpected": len(v["unexpected"]),
                "counted by": tally.signal,
                "examples": {k: v[k][:3] for k in v if v[k]},
            }
            if check == "issue-ingestor":
                wrong = (tally.solved ^ self.ledger.solved) & set(want)
                row["isSolved wrong"] = len(wrong)
                if wrong:
                    row["examples"]["isSolved wrong"] = sorted(wrong)[:3]
            if check == "notifier.sent":
                row["resent by producer retries"] = sum(tally.resent.values())
            if check in dlq:
                row["dead-lettered"] = f"{dlq[check]['dead_lettered']}/{dlq[check]['poison']}"
            rows.append(row)
        recov = [f.recovered_s for f in self.faults if f.recovered_s is not None]
        by_kind: dict[str, dict[str, Any]] = {}
        for kind in FAULTS:
            fs = [f for f in self.faults if f.kind == kind]
            rs = [f.recovered_s for f in fs if f.recovered_s is not None]
            ready = [f.ready_s for f in fs if f.ready_s is not None]
            by_kind[kind] = {
                "count": len(fs),
                "ready_p50_s": pct(ready, 50) if ready else None,
                "ready_max_s": max(ready) if ready else None,
                "recovery_p50_s": pct(rs, 50) if rs else None,
                "recovery_max_s": max(rs) if rs else None,
                "not_recovered": len(fs) - len(rs),
            }
        failures = []
        for row in rows:
            if row["missing"] or row["duplicated"] or row["unexpected"] or row.get("isSolved wrong"):
                failures.append(
                    f"{row['sink']}: {row['missing']} missing, {row['duplicated']} duplicated, "
                    f"{row['unexpected']} unexpected, {row.get('isSolved wrong', 0)} isSolved wrong"
                )
        for sink, d in dlq.items():
            if d["missing_n"] or d["without_headers"]:
                failures.append(f"{sink}: {d['missing_n']} poison records not in the DLQ, "
                                f"{d['without_headers']} without headers")  # fmt: skip
        if not drained:
            failures.append("not drained: some replica not running with lag 0 at the end")
        if ready_after_last is None or ready_after_last > READY_AFTER_LAST_FAULT_S:
            failures.append(
                f"not every replica ready within {READY_AFTER_LAST_FAULT_S:.0f}s of the last fault "
                f"({ready_after_last}); last not-ready answers: {self.not_ready_seen}"
            )
        not_recovered = [f"{f.kind} {f.target} at {f.at_s}s" for f in self.faults if f.recovered_s is None]
        if not_recovered:
            failures.append(f"never recovered from: {not_recovered}")
        return {
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "duration_s": self.duration_s,
            "fault_every_s": every_s,
            "max_rate_per_topic": round(self.max_rate, 1),
            "rate_per_topic": round(self.rate, 1),
            "records_produced": self.ledger.records,
            "chunks_resent": self.resent_chunks,
            "rows": rows,
            "faults_by_kind": by_kind,
            "recovery_p50_s": pct(recov, 50) if recov else None,
            "recovery_max_s": max(recov) if recov else None,
            "ready_after_last_fault_s": ready_after_last,
            "consuming_after_last_fault_s": consuming_after_last,
            "dead_letters": dlq,
            "faults": [vars(f) for f in self.faults],
            "not_ready": self.not_ready_log[-300:],
            "failures": failures,
            "ok": not failures,
            "run": self.stack.names.rid,
        }

    async def close(self) -> None:
        for w in self._watchers:
            w.cancel()
        if self.stack is not None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.servers.ensure_up)
            await self.stack.close(drop_data=False)  # the private servers (and their data) go next
        await asyncio.to_thread(self.servers.close)


# --------------------------------------------------------------------------------------------- report
def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"# Chaos soak — {result['at']}",
        "",
        f"{result['duration_s']:.0f} s, a fault every {result['fault_every_s']:.0f} s, "
        f"{result['rate_per_topic']:.0f} events/s per topic (calibrated max "
        f"{result['max_rate_per_topic']:.0f}/s), "
        f"{result['records_produced']} records produced ({result['chunks_resent']} chunks resent), "
        f"two replicas per sink. **{'PASS' if result['ok'] else 'FAIL'}**",
        "",
        "| sink | events | stored | missing | duplicated | dead-lettered | counted by |",
        "|---|--:|--:|--:|--:|--:|---|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['sink']} | {r['events']} | {r['stored']} | {r['missing']} | {r['duplicated']} | "
            f"{r.get('dead-lettered', '–')} | {r['counted by']} |"
        )
    for r in result["rows"]:
        if "resent by producer retries" in r:
            lines += [
                "",
                f"{r['sink']}: {r['resent by producer retries']} records are a second copy of the *same* "
                "produced record (same bytes, same CreateTime): the broker wrote a produce request twice "
                "because aiokafka retried it after a broker restart cut the answer. Not a second publish by "
                "the notifier (those are `duplicated`); an idempotent producer "
                "(`KAFKA_ENABLE_IDEMPOTENCE=true` on Apache Kafka) prevents them; the local broker (Tansu) "
                "implements none.",
            ]
    lines += [
        "",
        "| fault | count | ready p50 | ready max | consuming p50 | consuming max | not recovered |",
        "|---|--:|--:|--:|--:|--:|--:|",
    ]

    def secs(v: float | None) -> str:
        return f"{v:.1f} s" if v is not None else "–"

    for kind, d in result["faults_by_kind"].items():
        lines.append(
            f"| {kind} | {d['count']} | {secs(d.get('ready_p50_s'))} | {secs(d.get('ready_max_s'))} | "
            f"{secs(d['recovery_p50_s'])} | {secs(d['recovery_max_s'])} | {d['not_recovered']} |"
        )
    lines += [
        "",
        "Ready = every replica's `/readyz` answers 200; consuming = ready and every consumer `running` (a "
        "restarted replica waits for its group's rebalance, ~session timeout + join on this broker).",
        f"Consuming again after a fault: p50 {result['recovery_p50_s']} s, max {result['recovery_max_s']} s. "
        f"After the last fault: ready in {result['ready_after_last_fault_s']} s, consuming in "
        f"{result.get('consuming_after_last_fault_s')} s.",
    ]
    if result["failures"]:
        lines += ["", "Failures:", *[f"- {f}" for f in result["failures"]]]
    return "\n".join(lines) + "\n"


async def soak(
    duration_s: float, *, every_s: float = 10.0, calibration: int = 2000, out: Path = OUT
) -> dict[str, Any]:
    """Run the soak; write ``out``/soak.json and ``out``/SOAK.md; return the result (``ok``: passed)."""
    workdir = Path(tempfile.mkdtemp(prefix="soak-"))
    s = Soak(duration_s, workdir, seed=int(os.environ["SOAK_SEED"]) if os.environ.get("SOAK_SEED") else None)
    try:
        result = await s.run(every_s, calibration)
    finally:
        await s.close()
    result["workdir"] = str(workdir)
    await asyncio.to_thread(write_report, result, out)
    return result


def write_report(result: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "soak.json").write_text(json.dumps(result, indent=2, ensure_ascii=False, default=str) + "\n")
    (out / "SOAK.md").write_text(markdown(result))


def main() -> int:
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # the broker restarts: its errors are expected
    duration = float(os.environ.get("SOAK_S", "300"))
    every = float(os.environ.get("SOAK_FAULT_EVERY_S", "10"))
    result = asyncio.run(soak(duration, every_s=every))
    print(markdown(result))
    print(f"-> {OUT / 'soak.json'}, {OUT / 'SOAK.md'} (service logs: {result['workdir']})")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
