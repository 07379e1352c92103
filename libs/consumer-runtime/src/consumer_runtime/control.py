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
from typing import Literal

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from consumer_runtime.consumer import ConsumerRunner, State
from consumer_runtime.logging import get_logger
from consumer_runtime.retry import backoff_delay
from consumer_runtime.settings import KafkaSettings
from consumer_runtime.topics import ensure_topics

log = get_logger(__name__)

CONTROL_TOPIC = "platform.control"
Action = Literal["start", "stop", "pause", "resume", "restart"]
Desired = Literal["running", "paused", "stopped"]
DESIRED_AFTER: dict[str, Desired] = {
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
    settings: KafkaSettings, command: ControlCommand, *, topic: str = CONTROL_TOPIC
) -> None:
    """Append a command (acks=all); used by the gateway and by tests."""
    await ensure_control_topic(settings, topic)
    producer = AIOKafkaProducer(**settings.producer_kwargs())
    await producer.start()
    try:
        await producer.send_and_wait(topic, command.encode(), key=command.service.encode())
    finally:
        await producer.stop()


async def ensure_control_topic(settings: KafkaSettings, topic: str = CONTROL_TOPIC) -> None:
    await ensure_topics(settings, [topic], partitions=1, configs={"cleanup.policy": "compact"})


class ControlFollower:
    """Applies the control topic's commands for ``key`` to one runner."""

    def __init__(
        self,
        settings: KafkaSettings,
        runner: ConsumerRunner,
        *,
        key: str | None = None,
        topic: str = CONTROL_TOPIC,
    ) -> None:
        self.settings = settings
        self.runner = runner
        self.key = key or runner.name
        self.topic = topic
        self.desired: Desired = "running"
        self.last_command: ControlCommand | None = None
        self._task: asyncio.Task[None] | None = None
        self._replayed = asyncio.Event()

    async def start(self, *, replay_timeout_s: float = 5.0) -> None:
        """Replay the topic (bounded wait), put the runner in the desired state, then follow in background."""
        self._task = asyncio.create_task(self._run(), name=f"control:{self.key}")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._replayed.wait(), replay_timeout_s)
        if not self._replayed.is_set():
            log.warning("control topic not replayed in time; starting as running", service=self.key)
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

    async def _run(self) -> None:
        attempt = 0
        while True:
            consumer = AIOKafkaConsumer(
                **self.settings.client_kwargs(), enable_auto_commit=False, auto_offset_reset="earliest"
            )
            try:
                await ensure_control_topic(self.settings, self.topic)
                await consumer.start()
                tp = TopicPartition(self.topic, 0)
                consumer.assign([tp])
                await consumer.seek_to_beginning(tp)
                attempt = 0
                await self._replay(consumer, tp)
                while True:
                    batch = await consumer.getmany(tp, timeout_ms=1000)
                    for msg in batch.get(tp, []):
                        command = self._parse(msg.key, msg.value)
                        if command is not None:
                            await self._on_live(command)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                attempt += 1
                delay = backoff_delay(attempt, initial_s=0.5, max_s=10.0)
                log.warning(
                    "control follower failed; retrying",
                    service=self.key,
                    error=repr(exc),
                    retry_in_s=round(delay, 2),
                )
                await asyncio.sleep(delay)
            finally:
                with contextlib.suppress(Exception):
                    await consumer.stop()

    async def _replay(self, consumer: AIOKafkaConsumer, tp: TopicPartition) -> None:
        """Read to the high watermark seen in fetch responses; keep the last command for our key."""
        if self._replayed.is_set():
            return  # a reconnect: live commands were applied already
        while True:
            batch = await consumer.getmany(tp, timeout_ms=300)
            for msg in batch.get(tp, []):
                command = self._parse(msg.key, msg.value)
                if command is not None:
                    self.last_command = command
                    self.desired = DESIRED_AFTER[command.action]
            high = consumer.highwater(tp)
            position = await consumer.position(tp)
            if not batch and (high is None or position >= high):
                break
        log.info("control state replayed", service=self.key, desired=self.desired)
        self._replayed.set()

    def _parse(self, key: bytes | None, value: bytes | None) -> ControlCommand | None:
        if key is None or key.decode("utf-8", "replace") != self.key or not value:
            return None
        try:
            return ControlCommand.model_validate(json.loads(value))
        except (ValueError, ValidationError) as exc:
            log.warning("ignoring malformed control command", service=self.key, error=str(exc))
            return None

    async def _on_live(self, command: ControlCommand) -> None:
        self.last_command = command
        self.desired = DESIRED_AFTER[command.action]
        log.info("control command", service=self.key, action=command.action, by=command.requested_by)
        runner = self.runner
        if command.action == "restart":
            await runner.restart()
        elif command.action == "stop":
            await runner.stop()
        elif command.action == "pause":
            await runner.pause()
            if runner.state == State.STOPPED:
                await runner.start()
        else:  # start / resume
            await runner.resume()
            await runner.start()
