"""Desired consumer state of every service, kept in a compacted Kafka topic (like Kafka Connect's status
topic): key = service name, value = ``{"service", "action", "requested_at", "requested_by"}``.

Every replica of a service follows this topic (consumer-runtime), so a pause reaches all replicas and
survives restarts; the gateway also calls the service's ``/consumer/{action}`` for immediate effect.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from platform_events import now_ms

from gateway.kafka import KafkaGateway, Sent

Action = Literal["pause", "resume", "stop", "start", "restart"]
CONTROL_TOPIC_CONFIG = {"cleanup.policy": "compact"}


class ControlPlane:
    def __init__(self, kafka: KafkaGateway, topic: str) -> None:
        self.kafka = kafka
        self.topic = topic

    async def ensure_topic(self) -> bool:
        return await self.kafka.ensure_topic(self.topic, 1, CONTROL_TOPIC_CONFIG)

    async def request(self, service: str, action: Action, requested_by: str) -> tuple[dict[str, Any], Sent]:
        """Record the desired state; returns once the broker acknowledged it (acks=all)."""
        await self.ensure_topic()
        command = {
            "service": service,
            "action": action,
            "requested_at": now_ms(),
            "requested_by": requested_by,
        }
        sent = await self.kafka.send(
            self.topic,
            json.dumps(command, ensure_ascii=False).encode("utf-8"),
            key=service.encode("utf-8"),
        )
        return command, sent

    async def desired(self, limit: int = 10_000) -> dict[str, dict[str, Any]]:
        """The latest command per service (the compacted view), read from the topic's tail."""
        if self.topic not in set(await self.kafka.list_topics()):
            return {}
        page = await self.kafka.browse(
            self.topic, partition=None, offset=None, timestamp_ms=None, limit=limit, from_end=True
        )
        latest: dict[str, dict[str, Any]] = {}
        for msg in sorted(page["messages"], key=lambda m: (m["timestamp_ms"], m["partition"], m["offset"])):
            value = msg["value"]
            if msg["key"] and isinstance(value, dict):
                latest[msg["key"]] = {**value, "offset": msg["offset"], "partition": msg["partition"]}
            elif msg["key"] and value is None:  # tombstone: no desired state any more
                latest.pop(msg["key"], None)
        return latest
