"""The control follower with a fake control topic: a late replay is applied, a reconnect replays nothing."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import TopicPartition
from consumer_runtime import ControlCommand, ControlFollower, KafkaSettings
from consumer_runtime.fakes import FakeRecord

TOPIC = "platform.control"
TP = TopicPartition(TOPIC, 0)


class FakeControlTopic:
    """One partition of commands; ``replay_delay_s`` slows fetches, ``fail_live_fetches`` break live ones."""

    def __init__(self) -> None:
        self.records: list[FakeRecord] = []
        self.replay_delay_s = 0.0
        self.fail_live_fetches = 0
        self.consumers = 0

    def append(self, service: str, action: str) -> None:
        value = ControlCommand(service=service, action=action).encode()  # type: ignore[arg-type]
        self.records.append(FakeRecord(TOPIC, 0, len(self.records), service.encode(), value, 0))

    def consumer(self) -> FakeControlConsumer:
        self.consumers += 1
        return FakeControlConsumer(self)


class FakeControlConsumer:
    def __init__(self, topic: FakeControlTopic) -> None:
        self.topic = topic
        self.pos = 0
        self.caught_up = False

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def assign(self, partitions: list[TopicPartition]) -> None:
        return None

    async def seek_to_beginning(self, *partitions: TopicPartition) -> None:
        self.pos = 0

    def seek(self, partition: TopicPartition, offset: int) -> None:
        self.pos = offset

    async def getmany(
        self, *partitions: TopicPartition, timeout_ms: int = 0
    ) -> dict[TopicPartition, list[Any]]:
        await asyncio.sleep(self.topic.replay_delay_s or 0.001)
        if self.caught_up and self.topic.fail_live_fetches > 0:
            self.topic.fail_live_fetches -= 1
            raise ConnectionError("fake control topic connection lost")
        msgs = self.topic.records[self.pos : self.pos + 1]  # one at a time: a slow replay stays slow
        self.pos += len(msgs)
        if self.pos >= len(self.topic.records):
            self.caught_up = True
        return {TP: msgs} if msgs else {}

    def highwater(self, partition: TopicPartition) -> int | None:
        return len(self.topic.records)

    async def position(self, partition: TopicPartition) -> int:
        return self.pos


class RecordingRunner:
    """Records what the follower asks of the runner."""

    name = "svc"

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.claimed: set[int] = set()

    def claim_control(self, offset: int) -> bool:
        first = offset not in self.claimed
        self.claimed.add(offset)
        return first

    async def start(self) -> None:
        self.calls.append("start")

    async def stop(self) -> None:
        self.calls.append("stop")

    async def pause(self) -> None:
        self.calls.append("pause")

    async def resume(self) -> None:
        self.calls.append("resume")

    def request(self, action: str) -> None:
        self.calls.append(f"request:{action}")

    @property
    def state(self) -> str:
        paused = [c for c in self.calls if c in ("pause", "resume", "request:pause", "request:resume")]
        stopped = [c for c in self.calls if c in ("stop", "start", "request:stop", "request:start")]
        if stopped and stopped[-1].endswith("stop"):
            return "stopped"
        return "paused" if paused and paused[-1].endswith("pause") else "running"


async def _until(cond: Any, timeout: float = 3.0) -> None:
    for _ in range(int(timeout / 0.005)):
        if cond():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition not met in time")


async def test_a_replay_slower_than_the_wait_is_applied_when_it_completes() -> None:
    topic = FakeControlTopic()
    for _ in range(6):
        topic.append("other", "stop")
    topic.append("svc", "pause")
    topic.replay_delay_s = 0.05  # 7 records, one per fetch: ~0.35 s, longer than the wait below
    runner = RecordingRunner()
    follower = ControlFollower(KafkaSettings(), runner, topic=TOPIC, consumer_factory=topic.consumer)  # type: ignore[arg-type]
    await follower.start(replay_timeout_s=0.05)
    try:
        assert runner.state == "running"  # started before the replay finished
        await _until(lambda: runner.state == "paused")
        assert follower.desired == "paused"
    finally:
        await follower.stop()


async def test_a_reconnect_continues_after_the_last_offset_and_replays_nothing() -> None:
    topic = FakeControlTopic()
    for action in ("stop", "start", "restart", "pause"):
        topic.append("svc", action)
    runner = RecordingRunner()
    follower = ControlFollower(KafkaSettings(), runner, topic=TOPIC, consumer_factory=topic.consumer)  # type: ignore[arg-type]
    await follower.start(replay_timeout_s=2.0)
    try:
        assert runner.state == "paused"
        applied_at_start = list(runner.calls)
        topic.fail_live_fetches = 1  # the next live fetch fails: the follower reconnects
        await _until(lambda: topic.consumers >= 2, timeout=5)
        await asyncio.sleep(0.05)
        assert runner.calls == applied_at_start, "history must not be applied again after a reconnect"
        topic.append("svc", "resume")  # a live command after the reconnect is applied once
        await _until(lambda: runner.state == "running")
        assert runner.calls[len(applied_at_start) :] == ["request:resume", "request:start"]
        assert follower.next_offset == 5
    finally:
        await follower.stop()


async def test_commands_missed_while_disconnected_are_folded_into_one_state() -> None:
    topic = FakeControlTopic()
    topic.append("svc", "start")
    runner = RecordingRunner()
    follower = ControlFollower(KafkaSettings(), runner, topic=TOPIC, consumer_factory=topic.consumer)  # type: ignore[arg-type]
    await follower.start(replay_timeout_s=2.0)
    try:
        before = len(runner.calls)
        topic.fail_live_fetches = 1
        for action in ("stop", "start", "restart", "stop"):  # appended while the follower is away
            topic.append("svc", action)
        await _until(lambda: runner.state == "stopped", timeout=5)
        await asyncio.sleep(0.05)
        assert "request:restart" not in runner.calls[before:], "a missed restart is not replayed live"
        assert runner.calls[before:].count("stop") + runner.calls[before:].count("request:stop") == 1
    finally:
        await follower.stop()


async def test_a_command_applied_by_a_direct_call_is_not_applied_again() -> None:
    """The gateway records a command, then calls the replica with its offset: one restart, not two."""
    topic = FakeControlTopic()
    topic.append("svc", "start")
    runner = RecordingRunner()
    follower = ControlFollower(KafkaSettings(), runner, topic=TOPIC, consumer_factory=topic.consumer)  # type: ignore[arg-type]
    await follower.start(replay_timeout_s=2.0)
    try:
        before = len(runner.calls)
        assert runner.claim_control(1)  # the direct call (POST /consumer/restart?control_offset=1) came first
        topic.append("svc", "restart")
        topic.append("svc", "pause")
        await _until(lambda: runner.state == "paused")
        assert runner.calls[before:] == ["request:pause", "request:start"]
        assert follower.desired == "paused"
    finally:
        await follower.stop()


async def test_the_runner_applies_a_control_offset_once() -> None:
    from consumer_runtime import ConsumerRunner
    from consumer_runtime.fakes import FakeCluster, FakeConsumer, FakeDeadLetters, FakeSink
    from consumer_runtime.testing import fast_settings
    from platform_events import TOPICS

    cluster = FakeCluster("t", 1)
    runner = ConsumerRunner(
        name="svc",
        settings=fast_settings("fake:1", "g", kafka_auto_create_topics=False),
        topics=[TOPICS["log-events"].renamed("t")],
        sink=FakeSink(),
        dead_letters=FakeDeadLetters(),
        consumer_factory=lambda: FakeConsumer(cluster),
    )
    first = runner.request("pause", control_offset=7)
    assert first.paused
    assert first.leads_to == "paused"
    await runner.resume()
    again = runner.request("pause", control_offset=7)  # the follower's copy of the same command
    assert not again.paused
    assert not runner.claim_control(7)
    assert runner.claim_control(8)
    await runner.close()
