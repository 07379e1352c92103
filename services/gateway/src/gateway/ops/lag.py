"""The lag of each service's consumer group, measured from the broker, whatever the consumers' state.

Lag = log end − the group's committed offset, per partition of the topics the group reads (a partition the
group never committed on counts from its log start: ``auto_offset_reset=earliest`` reads it all). It is the
figure ``/api/v1/services`` (``lag``, ``group_lag``), the console overview and the gateway's
``platform_consumer_group_lag`` gauge all report, and what the lag alerts fire on: a stopped, crashed or
never-started consumer still has lag here, whereas a replica's own ``platform_consumer_lag`` covers only
the partitions it holds while it runs.

The log end is the high watermark a fetch response reports (``KafkaGateway.end_offsets``), not a
ListOffsets(latest) answer: the local Tansu broker answers that with the base offset of the last batch + 1,
short of the end whenever the last batch holds several records (measured; docs/operations.md).

Which group and topics a service consumes is learnt from its ``/consumer/status`` (``group``, ``topics``)
whenever it answers; until then the registry's defaults are assumed (``platform_events`` group names, the
gateway's configured topic names).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from typing import Any

from aiokafka import TopicPartition
from platform_events import (
    GROUP_CHATBOT_ISSUES,
    GROUP_LOGS,
    GROUP_NOTIFICATION_SERVICE,
    GROUP_SEARCH_INDEXER,
    TopicSpec,
    is_dlq_topic,
)
from prometheus_client import Gauge
from pydantic import BaseModel, Field

from gateway.kafka import KafkaGateway
from gateway.logs import log
from gateway.ops.groups import PartitionLag

GROUP_LAG = Gauge(
    "platform_consumer_group_lag",
    "Log end (high watermark) minus the group's committed offset, per partition of the topics a service's "
    "group reads; measured by the gateway from the broker whatever the consumers' state",
    ["group", "topic", "partition"],
)

#: The registry's default group of each service (what it uses unless configured otherwise).
DEFAULT_GROUPS: dict[str, str] = {
    "issue-ingestor": GROUP_CHATBOT_ISSUES,
    "log-sink": GROUP_LOGS,
    "search-indexer": GROUP_SEARCH_INDEXER,
    "notifier": GROUP_NOTIFICATION_SERVICE,
}

#: How long one measurement answers every caller (the overview polls every 3 s; several tabs share it).
FRESH_S = 1.0


class GroupLag(BaseModel):
    group: str
    topics: list[str]
    lag: int | None = Field(
        description="Sum over the partitions of log end − committed offset (log end − log start where the "
        "group never committed); None when Kafka could not be asked"
    )
    partitions: list[PartitionLag] = Field(default_factory=list)
    note: str | None = Field(None, description='"no commits yet" when the group never committed')
    error: str | None = None
    measured_at: float | None = Field(None, description="Epoch seconds of the measurement")


class GroupLags:
    """Process-wide: the group and topics of each service, the last measured lag of each, the gauge."""

    def __init__(self, kafka: KafkaGateway, topics: Mapping[str, TopicSpec[Any]]) -> None:
        self.kafka = kafka
        self.groups: dict[str, tuple[str, list[str]]] = {
            service: (group, sorted(s.name for s in topics.values() if group in s.consumer_groups))
            for service, group in DEFAULT_GROUPS.items()
        }
        self.last: dict[str, GroupLag] = {}
        self._at = 0.0
        self._lock = asyncio.Lock()
        self._exported: set[tuple[str, str, str]] = set()
        self._task: asyncio.Task[None] | None = None

    def learn(self, service: str, status: Mapping[str, Any] | None) -> None:
        """Take the group and topics a service reports (its configuration wins over the defaults)."""
        if not status or not status.get("group"):
            return
        topics = [t for t in status.get("topics") or [] if not is_dlq_topic(t)]
        self.groups[service] = (str(status["group"]), sorted(topics) or self.groups.get(service, ("", []))[1])

    def known(self) -> dict[str, list[str]]:
        """group → topics of every service's group."""
        return {group: topics for group, topics in self.groups.values()}

    async def measure(self) -> dict[str, GroupLag]:
        """The lag of every service's group now (one measurement serves the callers of ``FRESH_S``)."""
        async with self._lock:
            if self.last and time.monotonic() - self._at < FRESH_S:
                return self.last
            results = await asyncio.gather(*(self._one(g, t) for g, t in self.groups.values()))
            self.last = dict(zip(self.groups, results, strict=True))
            self._at = time.monotonic()
            self._export()
            return self.last

    async def _one(self, group: str, topics: list[str]) -> GroupLag:
        try:
            rows = await self.kafka.group_offsets(group, topics=topics)
            uncommitted = [TopicPartition(r["topic"], r["partition"]) for r in rows if r["committed"] is None]
            starts = await self.kafka.beginning_offsets(uncommitted) if uncommitted else {}
        except Exception as exc:  # Kafka down: reported, the last figure stays on the gauge
            log.warning("group lag unavailable", group=group, error=repr(exc))
            return GroupLag(group=group, topics=topics, lag=None, error=str(exc) or type(exc).__name__)
        parts = []
        for r in rows:
            lag = r["lag"]
            if r["committed"] is None and r["end_offset"] is not None:
                lag = max(0, r["end_offset"] - starts.get(TopicPartition(r["topic"], r["partition"]), 0))
            parts.append(PartitionLag(**{**r, "lag": lag}))
        never = bool(parts) and all(p.committed is None for p in parts)
        return GroupLag(
            group=group,
            topics=topics,
            lag=sum(p.lag or 0 for p in parts),
            partitions=parts,
            note="no commits yet" if never else None,
            measured_at=time.time(),
        )

    def _export(self) -> None:
        now: set[tuple[str, str, str]] = set()
        for g in self.last.values():
            for p in g.partitions:
                if p.lag is not None:
                    labels = (g.group, p.topic, str(p.partition))
                    GROUP_LAG.labels(*labels).set(p.lag)
                    now.add(labels)
            if g.error is not None:  # keep the last figures of a group Kafka could not be asked about
                now |= {labels for labels in self._exported if labels[0] == g.group}
        for gone in self._exported - now:
            with contextlib.suppress(KeyError):
                GROUP_LAG.remove(*gone)
        self._exported = now

    # ------------------------------------------------------------------ background refresh (the gauge)
    def start(self, interval_s: float) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(interval_s), name="gateway:group-lag")

    async def _loop(self, interval_s: float) -> None:
        while True:
            try:
                await self.measure()
            except Exception as exc:
                log.warning("group lag refresh failed", error=repr(exc))
            await asyncio.sleep(interval_s)

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
