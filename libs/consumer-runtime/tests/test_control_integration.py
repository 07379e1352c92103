"""Operator commands kept in a compacted control topic reach every replica and survive restarts."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from consumer_runtime import ConsumerRunner, ControlCommand, State, publish_command, running
from consumer_runtime.testing import KafkaNames, delete_topics, fast_settings, unique, wait_until
from platform_events import TOPICS

pytestmark = pytest.mark.integration


class NullSink:
    async def write(self, records: Sequence[Any]) -> list[Any]:
        return []

    async def ping(self) -> None:
        return None


@pytest.fixture
async def control_topic(kafka_bootstrap: str) -> AsyncIterator[str]:
    topic = unique("control")
    yield topic
    await delete_topics(kafka_bootstrap, [topic])


def replica(kafka_bootstrap: str, names: KafkaNames, control_topic: str) -> ConsumerRunner:
    settings = fast_settings(
        kafka_bootstrap, names.group, kafka_control_enabled=True, kafka_control_topic=control_topic
    )
    return ConsumerRunner(
        name="svc-under-test",
        settings=settings,
        topics=[TOPICS["log-events"].renamed(names.topic)],
        sink=NullSink(),
    )


async def test_commands_reach_every_replica_and_survive_restart(
    kafka_bootstrap: str, kafka_names: KafkaNames, control_topic: str
) -> None:
    a = replica(kafka_bootstrap, kafka_names, control_topic)
    b = replica(kafka_bootstrap, kafka_names, control_topic)
    async with running(a), running(b):
        await wait_until(lambda: a.state == State.RUNNING and b.state == State.RUNNING, what="both running")
        cmd = ControlCommand(service="svc-under-test", action="pause", requested_by="test")
        await publish_command(a.settings, cmd, topic=control_topic)
        await wait_until(lambda: a.paused and b.paused, what="both replicas paused")
        other = ControlCommand(service="another-service", action="stop")
        await publish_command(a.settings, other, topic=control_topic)

    # a new process of the same service starts paused: the command survived the restart
    c = replica(kafka_bootstrap, kafka_names, control_topic)
    async with running(c):
        assert c.paused
        assert c.state in (State.STARTING, State.PAUSED)
        await publish_command(
            c.settings, ControlCommand(service="svc-under-test", action="stop"), topic=control_topic
        )
        await wait_until(lambda: c.state == State.STOPPED, what="stopped by command")

    d = replica(kafka_bootstrap, kafka_names, control_topic)
    async with running(d):
        assert d.state == State.STOPPED  # stays stopped after a restart
        await publish_command(
            d.settings, ControlCommand(service="svc-under-test", action="start"), topic=control_topic
        )
        await wait_until(lambda: d.state == State.RUNNING, what="started by command")
