"""The consumer's :class:`~consumer_runtime.Sink`: a batch of wide events → one unordered ``insert_many``.

``_id`` = ``event_id``, so a redelivered event is a duplicate-key error that counts as stored. Documents the
server can never take are returned as failures (→ DLQ); anything else raises (→ the runtime retries the batch
with backoff).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from consumer_runtime import Failure, Record, get_logger
from prometheus_client import Counter

from log_sink.handlers import to_document
from log_sink.store import WideEventStore

log = get_logger(__name__)

INSERTED = Counter("log_sink_events_inserted_total", "Wide events inserted into MongoDB")
DUPLICATES = Counter(
    "log_sink_events_duplicate_total", "Wide events already stored (redelivery or fallback copy)"
)
EXPIRED_ON_ARRIVAL = Counter(
    "log_sink_events_expired_on_arrival_total",
    "Wide events stored although their event time was already past LOG_RETENTION_DAYS (the TTL index "
    "deletes them within about a minute): backfills and replays older than the retention",
)
REJECTED = Counter("log_sink_events_rejected_total", "Wide events MongoDB can never store (sent to the DLQ)")


class RejectedByStore(Exception):
    """MongoDB can never store this document (the reason says why)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class WideEventSink:
    def __init__(self, store: WideEventStore) -> None:
        self.store = store
        #: events stored although already past the retention (see ``_report_expired``)
        self.expired_on_arrival = 0

    async def ping(self) -> None:
        await self.store.ping()

    async def write(self, records: Sequence[Record[Any]], /) -> Sequence[Failure]:
        docs = [to_document(r.value) for r in records]
        outcome = await self.store.insert(docs)
        INSERTED.inc(outcome.inserted)
        DUPLICATES.inc(outcome.duplicates)
        failures = [
            Failure(records[i], RejectedByStore(reason), stage="sink") for i, reason in outcome.failed.items()
        ]
        REJECTED.inc(len(failures))
        self._report_expired(docs, outcome.failed)
        if outcome.duplicates:
            log.debug("duplicates skipped", duplicates=outcome.duplicates, inserted=outcome.inserted)
        return failures

    def _report_expired(self, docs: Sequence[dict[str, Any]], failed: Mapping[int, str]) -> None:
        """Retention rule: the TTL counts from the event's own time, so an event that arrives older than
        the retention is deleted right after it is stored. Never silently: each one is counted and logged."""
        retention_s = self.store.retention_s
        if retention_s is None:
            return
        cutoff = datetime.now(UTC) - timedelta(seconds=retention_s)
        expired = [doc for i, doc in enumerate(docs) if i not in failed and _event_time(doc) < cutoff]
        if not expired:
            return
        self.expired_on_arrival += len(expired)
        EXPIRED_ON_ARRIVAL.inc(len(expired))
        log.warning(
            "wide events stored already past the retention; the TTL index deletes them shortly",
            count=len(expired),
            retention_s=retention_s,
            oldest=min(_event_time(doc) for doc in expired).isoformat(),
            event_ids=[doc["_id"] for doc in expired],
        )


def _event_time(doc: Mapping[str, Any]) -> datetime:
    value = doc.get("timestamp")
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return datetime.now(UTC)  # not a date: the TTL index never deletes it
