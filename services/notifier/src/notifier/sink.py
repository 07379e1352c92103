"""The consumer's sink: message events → stored notifications → published, each exactly once.

One batch: (1) look up the mentioned users' muted channels (one query); (2) build the documents (pure,
``handlers.plan``); (3) ``insert_many`` unordered — the unique keys turn a redelivered event into
"duplicate"; (4) publish what was inserted *and* any duplicate that was stored by an earlier attempt but
never published (its source offset is past the partition's publish checkpoint); (5) move the publish
checkpoints to the batch's offsets. The runtime commits the Kafka offsets only after this returns.
Step (4) publishes in source position order, each record with its position in headers: within a partition,
notifications are stored, published and streamed in offset order, which the stream cursor relies on.

Guarantee: a notification is stored once per (event_id, user). It is published after it is stored; on a
redelivery or replay it is not published again. A batch whose publish was interrupted (a crash, a failed
send or checkpoint write, a broker restart that lost the acknowledgement of a written record) is found on
redelivery by step (4): before publishing those again the sink reads the sent topic back from the positions
recorded with the checkpoints and publishes only what is not there. What remains is two replicas handling
the same partition during a rebalance (a write still running on the old owner after its revoke timeout);
readers can deduplicate by the deterministic ``notification_id``. Kafka transactions would close that too,
but the local broker (Tansu) implements neither idempotent nor transactional producers.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from consumer_runtime import Failure, PermanentError, Record, get_logger
from platform_events import MessageCreatedEvent

from notifier import metrics as m
from notifier.handlers import (
    Source,
    already_published,
    checkpoint_advances,
    plan,
    publish_order,
    recipients,
    source_of,
    to_event,
)
from notifier.publisher import NotificationPublisher
from notifier.store import NotificationStore

log = get_logger(__name__)


class NotificationSink:
    def __init__(
        self,
        store: NotificationStore,
        publisher: NotificationPublisher,
        *,
        title: str,
        preview_chars: int,
        readback_timeout_s: float = 15.0,
    ) -> None:
        self.store = store
        self.publisher = publisher
        self.title = title
        self.preview_chars = preview_chars
        self.readback_timeout_s = readback_timeout_s
        self._last_seq = 0
        #: This replica's clock (epoch ns): ``created_at`` and ``seq``. Replaceable in tests (clock skew).
        self.clock_ns: Callable[[], int] = time.time_ns

    def _assign_seq(self, docs: list[dict[str, Any]]) -> None:
        """List order (``seq``): epoch µs of this replica's clock, strictly increasing within this process.

        Only the list API sorts by it. Replicas' clocks differ, so it is *not* a resume cursor: live streams
        resume by the message event's position (cursor.py).
        """
        base = max(self.clock_ns() // 1000, self._last_seq + 1)
        for k, doc in enumerate(docs):
            doc["seq"] = base + k
        if docs:
            self._last_seq = base + len(docs) - 1

    async def _not_yet_published(self, candidates: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Of stored notifications past their publish checkpoint, those not found in the sent topic."""
        if not candidates:
            return []
        sources = {src.partition_key for src in map(source_of, candidates) if src is not None}
        since = await self.store.sent_positions(sources)
        seen = await self.publisher.published_ids(since, timeout_s=self.readback_timeout_s)
        if seen is None:
            m.READBACK.labels(outcome="timed_out").inc()
            log.warning("sent topic not read back in time; publishing again", count=len(candidates))
            return candidates
        m.READBACK.labels(outcome="read").inc()
        found = [d for d in candidates if d["_id"] in seen]
        if found:
            m.PUBLISHED.labels(reason="found_published").inc(len(found))
        return [d for d in candidates if d["_id"] not in seen]

    async def ping(self) -> None:
        await self.store.ping()

    async def write(self, records: Sequence[Record[Any]], /) -> Sequence[Failure]:
        events: list[tuple[Record[Any], MessageCreatedEvent, Source]] = []
        for rec in records:
            value = rec.value
            if not isinstance(value, MessageCreatedEvent):  # the runtime decodes with our topic's model
                raise PermanentError(f"unexpected event type {type(value).__name__}")
            events.append((rec, value, Source(rec.topic, rec.partition, rec.offset)))

        users = {user for _, event, _ in events for user in recipients(event)}
        muted = await self.store.muted_channels(users)
        created_at = self.clock_ns() // 1_000_000
        docs: list[dict[str, Any]] = []
        owner: list[Record[Any]] = []
        planned_ids: set[str] = set()
        skipped = 0
        in_batch_duplicates = 0
        for rec, event, source in events:
            planned, muted_users = plan(
                event,
                source,
                muted=muted,
                created_at=created_at,
                title=self.title,
                preview_chars=self.preview_chars,
            )
            for doc in planned:
                if doc["_id"] in planned_ids:  # the same event twice in one batch: its first copy wins
                    in_batch_duplicates += 1
                    continue
                planned_ids.add(doc["_id"])
                docs.append(doc)
                owner.append(rec)
            skipped += len(muted_users)

        self._assign_seq(docs)
        result = await self.store.insert_notifications(docs)
        failures: dict[int, Failure] = {}
        for index, reason in result.failures.items():
            rec = owner[index]
            key = id(rec)
            if key not in failures:
                failures[key] = Failure(rec, PermanentError(f"notification rejected: {reason}"), stage="sink")

        to_publish = [docs[i] for i in result.inserted]
        republish: list[dict[str, Any]] = []
        if result.duplicates:
            stored = await self.store.find_many(docs[i]["_id"] for i in result.duplicates)
            topics = {d["source"].get("topic") for d in stored.values() if isinstance(d.get("source"), dict)}
            checkpoints = await self.store.get_checkpoints(t for t in topics if isinstance(t, str))
            candidates = [d for d in stored.values() if not already_published(d, checkpoints)]
            republish = await self._not_yet_published(candidates)

        # in source position order: a partition's notifications reach the live streams in offset order
        ordered = publish_order([*to_publish, *republish])
        await self.publisher.publish([(to_event(d), source_of(d)) for d in ordered])
        await self.store.advance_checkpoints(
            checkpoint_advances(source for _, _, source in events), self.publisher.positions
        )

        m.CREATED.inc(len(to_publish))
        m.DUPLICATES.inc(len(result.duplicates) + in_batch_duplicates)
        m.MUTED.inc(skipped)
        m.PUBLISHED.labels(reason="new").inc(len(to_publish))
        if republish:
            m.PUBLISHED.labels(reason="unpublished_duplicate").inc(len(republish))
            log.info("published notifications stored by an earlier attempt", count=len(republish))
        return list(failures.values())
