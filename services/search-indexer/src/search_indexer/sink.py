"""The consumer's sink: a batch of decoded message events → one merge-write into Elasticsearch."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from consumer_runtime import Failure, Record, get_logger

from search_indexer import handlers as h
from search_indexer.store import MessageStore

log = get_logger(__name__)


class MessageSink:
    """Writes to the alias (live consumer) or to one concrete index (the rebuild replay)."""

    def __init__(self, store: MessageStore, *, index: str | None = None) -> None:
        self.store = store
        self.index = index

    async def write(self, records: Sequence[Record[Any]], /) -> Sequence[Failure]:
        folded = h.fold(records)
        result = await self.store.write({mid: f.state for mid, f in folded.items()}, index=self.index)
        failures = [
            Failure(rec, error, stage="sink")
            for mid, error in result.errors.items()
            for rec in folded[mid].records
        ]
        if result.conflicts or result.retried or result.errors:
            log.info(
                "bulk write settled",
                index=self.index or self.store.alias,
                documents=len(folded),
                created=result.created,
                updated=result.updated,
                unchanged=result.unchanged,
                conflicts=result.conflicts,
                retried=result.retried,
                refused=len(result.errors),
                rounds=result.rounds,
            )
        return failures

    async def ping(self) -> None:
        await self.store.ping()
