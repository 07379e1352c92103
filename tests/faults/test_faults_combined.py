"""Combined faults, two replicas per sink: a datastore is down for ``FAULT_OUTAGE_S`` (30 s) while
(a) a replica restarts, (b) an operator stops and starts the consumer through the gateway, or (c) the broker
restarts (a durable private broker). After the datastore returns, every event is stored within 30 s, exactly
once (tests/faults/faults_lib.py's independent counts), every replica is running with lag 0; readiness is
honest throughout: no affected replica answers 200 while its datastore is down.

A hung datastore (SIGSTOP): every replica not ready within 10 s; after SIGCONT ready again and every event
stored once.

Private datastores (and broker) of the test's own. In `make test-faults` only (``-m faults``).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2e_harness import Stack, eventually, produce
from faults_lib import SINK_TOPIC, Datastore, Tally, event_for, expected_keys, stored

pytestmark = [pytest.mark.integration, pytest.mark.faults]

SINKS_OF = {
    "mysql": ("issue-ingestor",),
    "mongo": ("log-sink", "notifier"),
    "elasticsearch": ("search-indexer",),
}
REPLICAS = ("", "2")
RATE_PER_S = 200  # per topic
STORED_AFTER_RETURN_S = 30.0


@pytest.fixture
def outage_s() -> float:
    return float(os.environ.get("FAULT_OUTAGE_S", "").strip() or 30.0)


class Load:
    """Steady events on the topics of ``sinks`` until stopped; ``n`` = events produced per topic."""

    def __init__(self, stack: Stack, sinks: tuple[str, ...]) -> None:
        self.stack, self.n = stack, 0
        self.topics = {SINK_TOPIC[s]: s for s in sinks}
        self.stopped = asyncio.Event()
        self.resent = 0

    async def run(self) -> None:
        per_tick = RATE_PER_S // 5
        while not self.stopped.is_set():
            lo, hi = self.n, self.n + per_tick
            try:
                for topic, sink in self.topics.items():
                    await asyncio.wait_for(
                        produce(self.stack.ep.kafka, self.stack.names.topic(topic),
                                [event_for(sink, i) for i in range(lo, hi)]),
                        30,
                    )  # fmt: skip
            except Exception:  # the broker restarts (scenario c): send the chunk again
                self.resent += 1
                await asyncio.sleep(0.5)
                continue
            self.n = hi
            await asyncio.sleep(0.2)


async def _replica(c: httpx.AsyncClient, stack: Stack, sink: str, inst: str) -> tuple[int, dict[str, Any]]:
    try:
        r = await c.get(f"{stack.url(sink, inst)}/readyz")
        st = (await c.get(f"{stack.url(sink, inst)}/consumer/status")).json()
        return r.status_code, st
    except (httpx.HTTPError, ValueError) as exc:
        return 0, {"error": repr(exc)}


async def _all(stack: Stack, sinks: tuple[str, ...]) -> dict[str, tuple[int, dict[str, Any]]]:
    async with httpx.AsyncClient(timeout=4) as c:
        keys = [(s, i) for s in sinks for i in REPLICAS]
        got = await asyncio.gather(*(_replica(c, stack, s, i) for s, i in keys))
    return {stack.key(s, i): g for (s, i), g in zip(keys, got, strict=True)}


def _brief(st: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "state",
        "desired",
        "paused_by",
        "ready",
        "not_ready",
        "lag",
        "buffered",
        "pending_attempts",
        "error",
    )
    return {k: st.get(k) for k in keys if k in st}


class Honesty:
    """Samples every replica's /readyz while the datastore is down: a 200 then is a lie."""

    def __init__(self, stack: Stack, sinks: tuple[str, ...]) -> None:
        self.stack, self.sinks = stack, sinks
        self.lies: list[str] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            for key, (code, st) in (await _all(self.stack, self.sinks)).items():
                if code == 200:
                    self.lies.append(f"{key} ready while the datastore is down: {_brief(st)}")
            await asyncio.sleep(0.5)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


class Supervisor:
    """Starts a replica again when it exits, as an orchestrator does (Kubernetes ``restartPolicy: Always``):
    a sink that cannot reach its datastore at start-up exits (log-sink, notifier: ``store.open()``)."""

    def __init__(self, stack: Stack, sinks: tuple[str, ...]) -> None:
        self.stack, self.sinks = stack, sinks
        self.restarts: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            for sink in self.sinks:
                for inst in REPLICAS:
                    key = self.stack.key(sink, inst)
                    if not self.stack.procs[key].alive():
                        self.restarts[key] = self.restarts.get(key, 0) + 1
                        self.stack.spawn(sink, inst)

    def start(self) -> Supervisor:
        self._task = asyncio.create_task(self._run())
        return self

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


async def _not_ready_all(stack: Stack, sinks: tuple[str, ...]) -> bool:
    return all(code != 200 for code, _ in (await _all(stack, sinks)).values())


async def _caught_up(stack: Stack, sinks: tuple[str, ...]) -> bool:
    states = await _all(stack, sinks)
    return all(
        code == 200 and st.get("state") == "running" and st.get("lag") == 0 and not st.get("buffered")
        for code, st in states.values()
    )


async def _stored_all(stack: Stack, sinks: tuple[str, ...], n: int) -> bool:
    for sink in sinks:
        if (await stored(sink, stack)).stored < len(expected_keys(sink, n)):
            return False
    return True


async def _check_once(stack: Stack, sinks: tuple[str, ...], n: int) -> None:
    checks = [*sinks, *(["notifier.sent"] if "notifier" in sinks else [])]
    problems = []
    for check in checks:
        tally: Tally = await stored(check, stack)
        v = tally.verdict(expected_keys(check, n))
        if any(v.values()):
            problems.append(
                f"{check} ({tally.signal}): {len(v['missing'])} missing {v['missing'][:3]}, "
                f"{len(v['duplicated'])} duplicated {[(k, tally.writes[k]) for k in v['duplicated'][:3]]}, "
                f"{len(v['unexpected'])} unexpected"
            )
    assert not problems, problems


async def _operator(stack: Stack, sinks: tuple[str, ...], action: str) -> None:
    async with httpx.AsyncClient(
        base_url=stack.url("gateway"), headers=stack.admin_headers(), timeout=30
    ) as gw:
        for sink in sinks:
            r = await gw.post(f"/api/v1/services/{sink}/{action}")
            assert r.status_code in (200, 202), f"{action} {sink}: {r.status_code} {r.text[:300]}"


def _diagnose(stack: Stack, states: dict[str, tuple[int, dict[str, Any]]]) -> str:
    lines = []
    for key, (code, st) in states.items():
        proc = stack.procs[key]
        lines.append(f"{key}: readyz {code}, {_brief(st)}\n--- log tail:\n{proc.log_tail(15)}")
    return "\n".join(lines)


@pytest.mark.parametrize("kind", ["mysql", "mongo", "elasticsearch"])
@pytest.mark.parametrize("during", ["replica_restart", "operator_stop_start", "broker_restart"])
@pytest.mark.timeout(420)
async def test_datastore_down_while_another_fault_hits(
    make_stack: Callable[..., Stack], tmp_path: Path, heavy: bool, outage_s: float, kind: str, during: str
) -> None:
    if not heavy:
        pytest.skip("combined faults: in make test-faults only")
    from devservers import start_private

    sinks = SINKS_OF[kind]
    broker = (
        start_private("kafka", data_dir=tmp_path / "broker", storage="s3")
        if during == "broker_restart"
        else None
    )
    try:
        async with Datastore(kind, tmp_path / f"private-{kind}").running() as store:
            ep = store.endpoints()
            if broker is not None:
                ep.kafka = broker.address
            stack = make_stack(endpoints=ep, MQ_BATCH_SIZE="200")
            await stack.start(*sinks)
            await stack.start(*sinks, instance="2")
            if during == "operator_stop_start":
                await stack.start("gateway")
            supervisor = Supervisor(stack, sinks).start()
            load = Load(stack, sinks)
            producing = asyncio.create_task(load.run())
            await asyncio.sleep(3)

            store.stop()
            down_at = time.monotonic()
            await eventually(
                lambda: _not_ready_all(stack, sinks), timeout=10, interval=0.3,
                what=f"every replica of {sinks} not ready within 10 s of {kind} stopping",
            )  # fmt: skip
            honesty = Honesty(stack, sinks)
            honesty.start()
            await asyncio.sleep(min(5.0, outage_s / 3))
            if during == "replica_restart":
                stack.kill(sinks[0], "2")  # a crash; then started again while the datastore is still down
                stack.spawn(sinks[0], "2")
            elif during == "operator_stop_start":
                await _operator(stack, sinks, "stop")
                await asyncio.sleep(3)
                await _operator(stack, sinks, "start")
            else:
                assert broker is not None
                broker.stop(timeout=5)
                await asyncio.sleep(3)
                broker.start()
            await asyncio.sleep(max(0.0, outage_s - (time.monotonic() - down_at)))
            await honesty.stop()

            store.start()
            load.stopped.set()
            await producing
            n = load.n
            returned = time.monotonic()
            try:
                await eventually(
                    lambda: _stored_all(stack, sinks, n), timeout=STORED_AFTER_RETURN_S, interval=1.0,
                    what=f"{sinks}: all {n} events stored {STORED_AFTER_RETURN_S:.0f}s after {kind} returned",
                )  # fmt: skip
                stored_after = time.monotonic() - returned
                await eventually(
                    lambda: _caught_up(stack, sinks), timeout=30, interval=0.5,
                    what="every replica ready, running, lag 0",
                )  # fmt: skip
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n{_diagnose(stack, await _all(stack, sinks))}") from None
            await asyncio.sleep(2.0)  # late redeliveries would show up now as duplicates
            await supervisor.stop()
            await _check_once(stack, sinks, n)
            assert not honesty.lies, honesty.lies[:5]
            print(
                f"{kind} down {outage_s:.0f}s + {during}: {n} events/topic ({load.resent} chunks resent), "
                f"all stored {stored_after:.1f}s after {kind} returned; restarted after an exit: "
                f"{supervisor.restarts or 'none'}"
            )
    finally:
        if supervisor is not None:
            await supervisor.stop()  # before the fixture stops the services: no restarts then
        if broker is not None:
            broker.close(timeout=5)


@pytest.mark.parametrize("kind", ["mysql", "mongo", "elasticsearch"])
@pytest.mark.timeout(300)
async def test_hung_datastore_readiness_false_then_recovers(
    make_stack: Callable[..., Stack], tmp_path: Path, heavy: bool, kind: str
) -> None:
    if not heavy:
        pytest.skip("combined faults: in make test-faults only")
    sinks = SINKS_OF[kind]
    async with Datastore(kind, tmp_path / f"private-{kind}").running() as store:
        stack = make_stack(endpoints=store.endpoints(), MQ_BATCH_SIZE="200")
        await stack.start(*sinks)
        await stack.start(*sinks, instance="2")
        load = Load(stack, sinks)
        producing = asyncio.create_task(load.run())
        await asyncio.sleep(3)
        store.freeze()
        try:
            await eventually(
                lambda: _not_ready_all(stack, sinks), timeout=10, interval=0.3,
                what=f"every replica of {sinks} not ready within 10 s of {kind} hanging",
            )  # fmt: skip
            await asyncio.sleep(10)
            assert await _not_ready_all(stack, sinks), "a replica became ready while the datastore hangs"
        finally:
            store.thaw()
        load.stopped.set()
        await producing
        n = load.n
        try:
            await eventually(
                lambda: _caught_up(stack, sinks), timeout=60, interval=0.5,
                what=f"every replica ready, running, lag 0 after {kind} resumed",
            )  # fmt: skip
            await eventually(
                lambda: _stored_all(stack, sinks, n), timeout=60, interval=1.0, what=f"all {n} events stored"
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{_diagnose(stack, await _all(stack, sinks))}") from None
        await _check_once(stack, sinks, n)
