"""The log-sink's only datastore adapter: MongoDB ``wide_events`` through PyMongo's async API.

It is the consumer's :class:`~consumer_runtime.Sink`: one unordered ``insert_many`` per batch, ``_id`` =
``event_id`` plus a unique ``event_id`` index, so a redelivered event is a duplicate-key error that counts as
stored. Documents the server can never take are returned as failures (→ DLQ); anything else raises (→ the
runtime retries the batch with backoff).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from consumer_runtime import Failure, Record, get_logger
from prometheus_client import Counter
from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from wide_logging import WIDE_EVENTS, ensure_indexes, insert_documents

from log_sink.handlers import SORT, LogQuery, build_filter, encode_cursor, to_document, to_public

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


class WideEventStore:
    def __init__(
        self,
        url: str,
        database: str,
        *,
        retention_s: int | None,
        client: AsyncMongoClient[dict[str, Any]] | None = None,
        timeout_ms: int = 10_000,
    ) -> None:
        self.timeout_ms = timeout_ms
        self._client: AsyncMongoClient[dict[str, Any]] = client or AsyncMongoClient(
            url,
            tz_aware=True,
            connect=False,
            # nothing waits forever: selection, connect, every socket read; queries also carry maxTimeMS so
            # the server stops their work too
            serverSelectionTimeoutMS=min(5_000, timeout_ms),
            connectTimeoutMS=timeout_ms,
            socketTimeoutMS=timeout_ms,
        )
        self._owns_client = client is None
        self.database = database
        self.retention_s = retention_s
        self.collection: AsyncCollection[dict[str, Any]] = self._client[database][WIDE_EVENTS]
        self.effective_ttl_s: int | None = None
        #: events stored although already past the retention (see ``_report_expired``)
        self.expired_on_arrival = 0

    async def open(self) -> None:
        """Create the indexes (idempotent). Fails loudly when MongoDB is unreachable at start."""
        self.effective_ttl_s = await ensure_indexes(self.collection, retention_s=self.retention_s)
        if self.effective_ttl_s != self.retention_s:
            log.warning(
                "TTL of wide_events differs from LOG_RETENTION_DAYS",
                configured_s=self.retention_s,
                server_reports_s=self.effective_ttl_s,
            )
        log.info("wide_events ready", database=self.database, ttl_s=self.effective_ttl_s)

    async def close(self) -> None:
        if self._owns_client:
            await self._client.close()

    async def ping(self) -> None:
        await self._client.admin.command("ping")

    # ------------------------------------------------------------------ Sink
    async def write(self, records: Sequence[Record[Any]]) -> Sequence[Failure]:
        docs = [to_document(r.value) for r in records]
        outcome = await insert_documents(self.collection, docs)
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
        if self.retention_s is None:
            return
        cutoff = datetime.now(UTC) - timedelta(seconds=self.retention_s)
        expired = [doc for i, doc in enumerate(docs) if i not in failed and _event_time(doc) < cutoff]
        if not expired:
            return
        self.expired_on_arrival += len(expired)
        EXPIRED_ON_ARRIVAL.inc(len(expired))
        log.warning(
            "wide events stored already past the retention; the TTL index deletes them shortly",
            count=len(expired),
            retention_s=self.retention_s,
            oldest=min(_event_time(doc) for doc in expired).isoformat(),
            event_ids=[doc["_id"] for doc in expired],
        )

    # ------------------------------------------------------------------ queries
    async def find(self, query: LogQuery) -> tuple[list[dict[str, Any]], str | None]:
        """One page, newest first; the cursor continues after the last item (None at the end)."""
        cursor = (
            self.collection.find(build_filter(query))
            .sort(SORT)
            .limit(query.limit + 1)
            .max_time_ms(self.timeout_ms)
        )
        docs = await cursor.to_list(length=query.limit + 1)
        more = len(docs) > query.limit
        docs = docs[: query.limit]
        next_cursor = encode_cursor(docs[-1]) if more and docs else None
        return [to_public(d) for d in docs], next_cursor

    async def get(self, event_id: str) -> dict[str, Any] | None:
        doc = await self.collection.find_one({"_id": event_id}, max_time_ms=self.timeout_ms)
        if doc is None:  # stored by an older producer with an ObjectId _id
            doc = await self.collection.find_one({"event_id": event_id}, max_time_ms=self.timeout_ms)
        return to_public(doc) if doc is not None else None

    async def find_all(self) -> list[dict[str, Any]]:
        """Every stored event (tests and small tools only)."""
        return [to_public(d) async for d in self.collection.find({}).sort(SORT)]

    async def count(self) -> int:
        return await self.collection.count_documents({}, maxTimeMS=self.timeout_ms)


def _event_time(doc: Mapping[str, Any]) -> datetime:
    value = doc.get("timestamp")
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return datetime.now(UTC)  # not a date: the TTL index never deletes it
