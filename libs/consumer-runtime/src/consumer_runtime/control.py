"""Desired consumer state kept in Kafka, so pause/stop reach every replica and survive restarts.

Like Kafka Connect's config/status topics: the gateway appends a command to the compacted, single-partition
topic ``platform.control`` keyed by service name; every replica of that service reads the topic from the
beginning at start-up (the last command for its key decides whether it starts running, paused or stopped)
and then follows it, applying each new command to its own consumer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from typing import Literal, Protocol

from aiokafka import ConsumerRecord, TopicPartition
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from consumer_runtime.kafka_clients import Backoff, new_reader, start_producer
from consumer_runtime.logging import get_logger
from consumer_runtime.runner import ConsumerRunner
from consumer_runtime.settings import KafkaClientSettings, KafkaSettings
from consumer_runtime.topics import ensure_topics

log = get_logger(__name__)

CONTROL_TOPIC = "platform.control"
Action = Literal["start", "stop", "pause", "resume", "restart"]
DesiredState = Literal["running", "paused", "stopped"]
DESIRED_AFTER: dict[str, DesiredState] = {
    "start": "running",
    "resume": "running",
    "restart": "running",
    "pause": "paused",
    "stop": "stopped",
}


class ControlCommand(BaseModel):
    """One operator command for every replica of ``service``."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    service: str = Field(min_length=1)
    action: Action
    requested_at: int = Field(default_factory=lambda: int(time.time() * 1000))
    requested_by: str | None = None

    def encode(self) -> bytes:
        return self.model_dump_json().encode()


async def publish_command(
    settings: KafkaClientSettings, command: ControlCommand, *, topic: str = CONTROL_TOPIC
) -> None:
    """Append a command (acks=all); used by the gateway and by tests."""
    await ensure_control_topic(settings, topic)
    producer = await start_producer(settings)
    try:
        await producer.send_and_wait(topic, command.encode(), key=command.service.encode())
    finally:
        await producer.stop()


async def ensure_control_topic(settings: KafkaClientSettings, topic: str = CONTROL_TOPIC) -> None:
    await ensure_topics(settings, [topic], partitions=1, configs={"cleanup.policy": "compact"})


class ControlConsumer(Protocol):
    """The part of ``AIOKafkaConsumer`` the follower uses (a fake drives it in unit tests)."""

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    def assign(self, partitions: list[TopicPartition]) -> None: ...
    async def seek_to_beginning(self, *partitions: TopicPartition) -> None: ...
    def seek(self, partition: TopicPartition, offset: int) -> None: ...
    async def getmany(
        self, *partitions: TopicPartition, timeout_ms: int = 0
    ) -> dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]: ...
    def highwater(self, partition: TopicPartition) -> int | None: ...
    async def position(self, partition: TopicPartition) -> int: ...


class ControlFollower:
    """Applies the control topic's commands for ``key`` to one runner.

    At start it replays the topic (bounded wait): the last command for ``key`` decides the state the runner
    starts in. A replay slower than the wait starts the runner running and applies the replayed state when
    the replay completes, however late. After a reconnect it reads on from the offset after the last one it
    applied: commands it missed are folded into one desired state and applied once, never replayed as a
    sequence of live commands.
    """

    def __init__(
        self,
        settings: KafkaSettings,
        runner: ConsumerRunner,
        *,
        key: str | None = None,
        topic: str = CONTROL_TOPIC,
        consumer_factory: Callable[[], ControlConsumer] | None = None,
    ) -> None:
        self.settings = settings
        self.runner = runner
        self.key = key or runner.name
        self.topic = topic
        self.desired: DesiredState = "running"
        self.last_command: ControlCommand | None = None
        self.next_offset: int | None = None  # next offset of the control topic to read; None: from the start
        self._factory = consumer_factory
        self._task: asyncio.Task[None] | None = None
        self._replayed = asyncio.Event()
        self._start_gave_up = False

    async def start(self, *, replay_timeout_s: float = 5.0) -> None:
        """Replay the topic (bounded wait), put the runner in the desired state, then follow in background."""
        self._task = asyncio.create_task(self._run(), name=f"control:{self.key}")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._replayed.wait(), replay_timeout_s)
        if not self._replayed.is_set():
            self._start_gave_up = True
            log.warning(
                "control topic not replayed in time; starting as running until the replay completes",
                service=self.key,
            )
        await self._apply_desired()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None

    async def _apply_desired(self) -> None:
        runner = self.runner
        if self.desired == "stopped":
            await runner.stop()
            return
        if self.desired == "paused":
            await runner.pause()
        else:
            await runner.resume()
        await runner.start()

    def _new_consumer(self) -> ControlConsumer:
        if self._factory is not None:
            return self._factory()
        consumer: ControlConsumer = new_reader(self.settings)
        return consumer

    async def _run(self) -> None:
        backoff = Backoff(0.5, 10.0)
        tp = TopicPartition(self.topic, 0)
        while True:
            consumer = self._new_consumer()
            try:
                if self._factory is None:
                    await ensure_control_topic(self.settings, self.topic)
                await consumer.start()
                consumer.assign([tp])
                if self.next_offset is None:
                    await consumer.seek_to_beginning(tp)
                else:
                    consumer.seek(tp, self.next_offset)  # after the last command read: no history again
                backoff.reset()
                before = self.desired
                seen = await self._catch_up(consumer, tp)
                first = not self._replayed.is_set()
                self._replayed.set()
                if first:
                    log.info("control state replayed", service=self.key, desired=self.desired)
                if (first and self._start_gave_up) or (not first and seen and self.desired != before):
                    log.info("control state applied after replay", service=self.key, desired=self.desired)
                    await self._apply_desired()
                while True:
                    batch = await consumer.getmany(tp, timeout_ms=1000)
                    for msg in batch.get(tp, []):
                        self.next_offset = msg.offset + 1
                        command = self._parse(msg.key, msg.value)
                        if command is not None:
                            await self._on_live(command, msg.offset)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                delay = backoff.failed()
                log.warning(
                    "control follower failed; retrying",
                    service=self.key,
                    error=repr(exc),
                    retry_in_s=round(delay, 2),
                )
                await backoff.sleep(delay)
            finally:
                with contextlib.suppress(Exception):
                    await consumer.stop()

    async def _catch_up(self, consumer: ControlConsumer, tp: TopicPartition) -> bool:
        """Read to the high watermark seen in fetch responses; keep the last command for our key.
        True when a command for our key was read."""
        seen = False
        while True:
            batch = await consumer.getmany(tp, timeout_ms=300)
            for msg in batch.get(tp, []):
                self.next_offset = msg.offset + 1
                command = self._parse(msg.key, msg.value)
                if command is not None:
                    seen = True
                    self.last_command = command
                    self.desired = DESIRED_AFTER[command.action]
            high = consumer.highwater(tp)
            position = await consumer.position(tp)
            if not batch and (high is None or position >= high):
                return seen

    def _parse(self, key: bytes | None, value: bytes | None) -> ControlCommand | None:
        if key is None or key.decode("utf-8", "replace") != self.key or not value:
            return None
        try:
            return ControlCommand.model_validate(json.loads(value))
        except (ValueError, ValidationError) as exc:
            log.warning("ignoring malformed control command", service=self.key, error=str(exc))
            return None

    async def _on_live(self, command: ControlCommand, offset: int) -> None:
        self.last_command = command
        self.desired = DESIRED_AFTER[command.action]
        runner = self.runner
        if not runner.claim_control(offset):
            log.info("control command already applied by a direct call", service=self.key, offset=offset)
            return
        log.info("control command", service=self.key, action=command.action, by=command.requested_by)
        if command.action == "restart":
            runner.request("restart")
        elif command.action == "stop":
            runner.request("stop")
        elif command.action == "pause":
            runner.request("pause")
            runner.request("start")
        else:  # start / resume
            runner.request("resume")
            runner.request("start")
