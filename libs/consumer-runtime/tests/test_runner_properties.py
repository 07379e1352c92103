"""The runner as a state machine: Hypothesis interleaves faults, rebalances and operator commands.

The runner is the real one; only its seams are fakes (``consumer_runtime.fakes``): an in-memory cluster with
aiokafka's rebalance and commit semantics, an idempotent sink that can fail, a dead-letter recorder. After
every step:

- no committed offset is ahead of what the sink stored or the dead letters hold;
- no partition is paused unless an operator pause or a batch waiting for its retry holds it;
- readiness is false whenever progress is impossible (the sink fails while records wait), and the loop
  keeps yielding (a step that runs the loop must see it poll).

At the end, with everything healed and the operator state running: every record is stored (or
dead-lettered, for the poison ones) exactly once by the sink's idempotency rules, and the lag is 0.

``RUNNER_PROPERTY_EXAMPLES`` / ``RUNNER_PROPERTY_STEPS`` make the run larger (``make test-faults``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
from typing import Any

import pytest
from aiokafka import TopicPartition
from consumer_runtime import ConsumerRunner
from consumer_runtime.fakes import FakeCluster, FakeConsumer, FakeDeadLetters, FakeSink
from consumer_runtime.testing import fast_settings
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from platform_events import TOPICS

TOPIC = "prop-events"
PARTITIONS = 3
EXAMPLES = int(os.environ.get("RUNNER_PROPERTY_EXAMPLES", "15"))
STEPS = int(os.environ.get("RUNNER_PROPERTY_STEPS", "25"))
ALL = {TopicPartition(TOPIC, p) for p in range(PARTITIONS)}


def event(i: int) -> bytes:
    body = {"event_id": f"e{i}", "timestamp": "2026-11-23T10:00:00Z", "service": "prop"}
    return json.dumps(body).encode()


class RunnerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.cluster = FakeCluster(TOPIC, PARTITIONS)
        self.sink = FakeSink()
        self.dlq = FakeDeadLetters()
        settings_ = fast_settings(
            "fake:9092",
            "prop-group",
            kafka_auto_create_topics=False,
            kafka_control_enabled=False,
            mq_batch_size=4,
            mq_batch_timeout_ms=1,
            retry_backoff_initial_ms=1,
            retry_backoff_max_ms=4,
            consumer_stuck_after_s=600,
        )
        self.runner = ConsumerRunner(
            name="prop",
            settings=settings_,
            topics=[TOPICS["log-events"].renamed(TOPIC)],
            sink=self.sink,
            dead_letters=self.dlq,
            consumer_factory=lambda: FakeConsumer(self.cluster),
            revoke_timeout_s=0.02,
            reconnect_backoff_s=(0.001, 0.004),
        )
        self.n = 0
        self.good: set[str] = set()
        self.decode_poison: set[tuple[int, int]] = set()  # (partition, offset)
        self.sink_poison: set[str] = set()
        self.stopped_by_operator = False
        self.run(self.runner.start())

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def request(self, action: Any) -> Any:
        async def call() -> Any:
            return self.runner.request(action)  # control tasks need the running loop

        return self.run(call())

    async def _spin(self, polls: int, limit_s: float = 2.0) -> None:
        """Let the loop run ``polls`` polls (or for a while, when it is not polling)."""
        target = self.cluster.polls + polls
        deadline = self.loop.time() + limit_s
        for _ in range(100_000):
            if self.cluster.polls >= target or self.loop.time() >= deadline:
                return
            await asyncio.sleep(0.001)

    # ------------------------------------------------------------------ rules
    @initialize(
        max_batch=st.sampled_from([4, 10, 1000]),  # 4 = MQ_BATCH_SIZE: adaptive growth off
        max_bytes=st.sampled_from([300, 10**6]),  # 300 B: the byte bound stops growth after a few records
        max_fetch=st.sampled_from([3, 500]),
    )
    def batch_limits(self, max_batch: int, max_bytes: int, max_fetch: int) -> None:
        """Adaptive batches: under backlog a batch grows past MQ_BATCH_SIZE (4) to MQ_MAX_BATCH records or
        MQ_MAX_BATCH_BYTES; the rules below must hold whatever the limits."""
        self.runner.limits = dataclasses.replace(
            self.runner.limits, max_records=max_batch, max_bytes=max_bytes, max_fetch=max_fetch
        )

    @rule(
        partition=st.integers(0, PARTITIONS - 1),
        count=st.integers(1, 12),
        kind=st.sampled_from(["good", "good", "good", "good", "decode-poison", "sink-poison"]),
    )
    def produce(self, partition: int, count: int, kind: str) -> None:
        for _ in range(count):
            self.n += 1
            if kind == "decode-poison":
                rec = self.cluster.produce(partition, None, b"{not json")
                self.decode_poison.add((rec.partition, rec.offset))
            else:
                eid = f"e{self.n}"
                self.cluster.produce(partition, eid.encode(), event(self.n))
                if kind == "sink-poison":
                    self.sink_poison.add(eid)
                    self.sink.poison.add(eid)
                else:
                    self.good.add(eid)

    @rule(polls=st.integers(1, 30))
    def run_loop(self, polls: int) -> None:
        before = self.cluster.polls
        self.run(self._spin(polls))
        runner = self.runner
        loop_should_poll = (
            runner.desired == "running"
            and self.cluster.up
            and runner.state.value in ("running", "paused", "retrying")
        )
        if loop_should_poll:
            assert self.cluster.polls > before, f"the loop did not poll in state {runner.state}"
        self._check_ready_when_stuck()

    @rule()
    def sink_down(self) -> None:
        self.sink.down = True
        self.sink.attempts_while_down = 0

    @rule()
    def sink_up(self) -> None:
        self.sink.down = False

    @rule()
    def dlq_down(self) -> None:
        self.dlq.down = True

    @rule()
    def dlq_up(self) -> None:
        self.dlq.down = False

    @rule(parts=st.sets(st.sampled_from(sorted(ALL))))
    def rebalance(self, parts: set[TopicPartition]) -> None:
        self.cluster.rebalance(parts)

    @rule()
    def broker_blip(self) -> None:
        self.cluster.up = False
        self.run(self._spin(3, limit_s=0.05))
        self.cluster.up = True

    @rule(failures=st.integers(1, 3))
    def commit_failures(self, failures: int) -> None:
        self.cluster.transient_commit_failures += failures

    @rule(action=st.sampled_from(["pause", "resume", "stop", "start", "restart"]))
    def operator(self, action: Any) -> None:
        ack = self.request(action)
        assert ack.action == action

    @rule(fail=st.booleans(), parts=st.sets(st.sampled_from(sorted(ALL))))
    def slow_write_across_revoke(self, fail: bool, parts: set[TopicPartition]) -> None:
        """A write hangs; a rebalance's revoke gives up waiting for it; then the write ends."""
        if self.runner._consumer is None:
            return  # not connected: nothing to revoke
        gate = asyncio.Event()
        self.sink.gate = gate
        self.sink.fail_after_gate = fail

        async def scenario() -> None:
            for _ in range(1000):  # until the write hangs (about 1 s at most)
                if self.sink.in_write:
                    break
                await asyncio.sleep(0.001)
            task = self.cluster.rebalance_concurrently(parts)
            if task is not None:
                await asyncio.wait_for(task, 2.0)
            gate.set()
            await asyncio.sleep(0.005)

        if self.sink.in_write == 0 and not self._anything_to_write():
            self.produce(0, 2, "good")
        try:
            self.run(scenario())
        finally:
            self.sink.gate = None
            self.sink.fail_after_gate = False

    # ------------------------------------------------------------------ invariants
    def _anything_to_write(self) -> bool:
        return any(self.cluster.committed.get(tp, 0) < self.cluster.end(tp) for tp in self.cluster.target)

    def _done(self, tp: TopicPartition, offset: int) -> bool:
        rec = self.cluster.logs[tp][offset]
        if any(
            (d.topic, d.partition, d.offset) == (tp.topic, tp.partition, offset) for d in self.dlq.letters
        ):
            return True
        eid = rec.key.decode() if rec.key else None
        return eid is not None and self.sink.store.get(eid) is not None

    @invariant()
    def nothing_committed_ahead_of_the_store(self) -> None:
        for tp, committed in self.cluster.committed.items():
            for offset in range(committed):
                assert self._done(tp, offset), f"{tp} committed {committed} but offset {offset} is not stored"

    @invariant()
    def memory_is_bounded(self) -> None:
        runner = self.runner
        assert len(runner._buffer) <= runner.limits.cap
        if runner._pending is not None:
            assert len(runner._pending.batch.raw) <= runner.limits.cap

    @invariant()
    def paused_only_when_held(self) -> None:
        consumer = self.runner._consumer
        if consumer is None or not isinstance(consumer, FakeConsumer) or consumer.rebalancing:
            return
        paused = consumer.paused() & consumer.assignment()
        if paused:
            assert self.runner.pause_holders(), f"{sorted(paused)} paused, but nothing holds them"
        if self.runner.operator_paused:
            assert paused == consumer.assignment(), "an operator pause must hold every assigned partition"

    def _check_ready_when_stuck(self) -> None:
        runner = self.runner
        stuck = (
            self.sink.down
            and self.sink.attempts_while_down > 0
            and runner.state.value in ("running", "retrying")
            and runner._pending is not None
        )
        if stuck:
            assert runner.not_ready() is not None, "the sink fails with records waiting, yet ready"
            assert not runner.status().ready

    # ------------------------------------------------------------------ end
    def teardown(self) -> None:
        try:
            self._heal_and_drain()
        finally:
            self.run(self.runner.close())
            self.loop.close()

    def _heal_and_drain(self) -> None:
        self.sink.down = False
        self.sink.gate = None
        self.dlq.down = False
        self.cluster.up = True
        self.cluster.transient_commit_failures = 0
        if self.cluster.target != ALL:
            self.cluster.rebalance(ALL)
        self.request("resume")
        self.request("start")

        async def drain() -> None:
            deadline = self.loop.time() + 10.0
            while self.loop.time() < deadline:
                caught_up = all(self.cluster.committed.get(tp, 0) == self.cluster.end(tp) for tp in ALL)
                if caught_up and self.runner.not_ready() is None:
                    return
                await asyncio.sleep(0.002)

        self.run(drain())
        lag = {tp: self.cluster.end(tp) - self.cluster.committed.get(tp, 0) for tp in sorted(ALL)}
        assert all(v == 0 for v in lag.values()), f"lag after healing: {lag}, status {self.runner.status()}"
        assert set(self.sink.store) == self.good, "the store must hold every good event, and only those"
        assert self.sink.inserted == len(self.good)
        dead = {(d.partition, d.offset) for d in self.dlq.letters}
        sink_poison_dead = {
            rec.key.decode()
            for tp in ALL
            for rec in self.cluster.logs[tp]
            if (rec.partition, rec.offset) in dead and rec.key
        }
        assert self.decode_poison <= dead, "every undecodable record is dead-lettered"
        assert sink_poison_dead == self.sink_poison, "exactly the poison records are dead-lettered"
        assert self.runner.not_ready() is None


RunnerMachine.TestCase.settings = settings(
    max_examples=EXAMPLES,
    stateful_step_count=STEPS,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_runner_state_machine = RunnerMachine.TestCase


@pytest.mark.parametrize("fail", [True, False])
def test_slow_write_across_a_revoke_leaves_nothing_paused(fail: bool) -> None:
    """The reviewer's race, alone: the revoke gives up on a slow write, which then fails (or succeeds)."""
    machine = RunnerMachine()
    try:
        machine.produce(0, 3, "good")
        machine.slow_write_across_revoke(fail, set(ALL))
        machine.paused_only_when_held()
        machine.run_loop(20)
        machine.nothing_committed_ahead_of_the_store()
        machine.paused_only_when_held()
    finally:
        machine.teardown()


def test_rebalance_during_an_outage_does_not_stall() -> None:
    """The stall: backoff pause, then a rebalance while the datastore is down, then the datastore returns."""
    machine = RunnerMachine()
    try:
        machine.produce(1, 5, "good")
        machine.sink_down()
        machine.run_loop(30)
        assert machine.runner.status().state == "retrying"
        machine.rebalance(set(ALL))
        machine.run_loop(30)
        machine.paused_only_when_held()
        machine.sink_up()
    finally:
        machine.teardown()  # drains: fails when the consumer stalls


def test_operator_restart_during_an_outage_does_not_stall() -> None:
    machine = RunnerMachine()
    try:
        machine.produce(2, 5, "good")
        machine.sink_down()
        machine.run_loop(30)
        machine.operator("restart")
        machine.run_loop(30)
        machine.paused_only_when_held()
        machine.sink_up()
    finally:
        machine.teardown()


def test_liveness_fails_only_for_a_wedged_loop() -> None:
    """Liveness (``/healthz``) restarts a pod only when its loop stopped polling; a datastore outage or a
    broker outage is waited out (readiness/alerts), since a restart would not cure it."""
    machine = RunnerMachine()
    try:
        machine.produce(0, 3, "good")
        machine.sink_down()
        machine.run_loop(20)
        runner = machine.runner
        assert runner.wedged() is None  # retrying: the loop polls
        stuck = runner.settings.consumer_stuck_after_s
        runner.last_poll_at = (runner.last_poll_at or 0) - 3 * stuck - 1  # as if the loop hung that long
        assert runner.wedged() is not None
        machine.sink_up()
        machine.run_loop(5)
        assert runner.wedged() is None  # polling again
    finally:
        machine.teardown()
