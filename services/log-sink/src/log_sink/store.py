"""The log-sink's only datastore adapter: MongoDB ``wide_events`` through PyMongo's async API.

Indexes (``_id`` = ``event_id`` plus a unique ``event_id`` index, the TTL), the bulk insert and the queries
of the API. The consumer's sink is :class:`log_sink.sink.WideEventSink`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from consumer_runtime import get_logger
from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from wide_logging import WIDE_EVENTS, InsertOutcome, ensure_indexes, insert_documents

from log_sink.handlers import SORT, LogQuery, build_filter, encode_cursor, to_public

log = get_logger(__name__)


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

    # ------------------------------------------------------------------ bulk write
    async def insert(self, docs: Sequence[dict[str, Any]]) -> InsertOutcome:
        """One unordered ``insert_many``; duplicates (same ``_id``) count as stored."""
        return await insert_documents(self.collection, docs)

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
        # _id = event_id for every document (older ObjectId-keyed ones are re-keyed at start)
        doc = await self.collection.find_one({"_id": event_id}, max_time_ms=self.timeout_ms)
        return to_public(doc) if doc is not None else None

    async def find_all(self) -> list[dict[str, Any]]:
        """Every stored event (tests and small tools only)."""
        return [to_public(d) async for d in self.collection.find({}).sort(SORT)]

    async def count(self) -> int:
        return await self.collection.count_documents({}, maxTimeMS=self.timeout_ms)
