"""How a wide event is stored in MongoDB: one document per ``event_id`` in collection ``wide_events``.

Shared by the log-sink (normal path) and the logging adapter (direct/fallback path), so an event stored by
either path is the same document and a second copy of it is a duplicate-key no-op, never a second row.

Document = the event exactly as sent, plus ``_id`` = ``event_id``; ``timestamp`` is held as a BSON date
(millisecond precision) so range queries and the TTL index work.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import bson
from bson import ObjectId
from bson.errors import BSONError
from bson.raw_bson import RawBSONDocument
from platform_events import WideLogEvent
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure

__all__ = [
    "DUPLICATE_KEY_CODES",
    "WIDE_EVENTS",
    "InsertOutcome",
    "ensure_indexes",
    "insert_documents",
    "migrate_event_ids",
    "to_document",
]

log = logging.getLogger(__name__)

#: The collection name (a compatibility promise: docs/contracts.md).
WIDE_EVENTS: Final = "wide_events"

#: Duplicate key (11000; 11001 and 12582 are legacy spellings of the same error).
DUPLICATE_KEY_CODES: Final = frozenset({11000, 11001, 12582})

#: Write errors that say "try again later", not "this document is bad": the whole batch is retried.
_TRANSIENT_CODES: Final = frozenset(
    {6, 7, 50, 89, 91, 112, 189, 262, 9001, 10107, 11600, 11602, 13435, 13436, 64}
)

INDEX_TIMESTAMP: Final = "timestamp_ttl"
INDEX_SERVICE: Final = "service_timestamp"
INDEX_TRACE: Final = "trace_timestamp"


def to_document(event: WideLogEvent) -> dict[str, Any]:
    """The MongoDB document of ``event``: its wire fields unchanged, ``_id`` = ``event_id``,
    ``timestamp`` as an aware UTC datetime (stored as a BSON date)."""
    body = event.model_dump(mode="python", by_alias=True)
    return {"_id": event.event_id, **body}


@dataclass
class InsertOutcome:
    """Result of :func:`insert_documents`: ``failed`` maps the input index to why it can never be stored."""

    inserted: int = 0
    duplicates: int = 0
    failed: dict[int, str] = field(default_factory=dict)


class TransientWriteError(Exception):
    """The server refused the batch for a reason that goes away (stepdown, write concern, shutdown)."""


async def insert_documents(
    collection: AsyncCollection[Any], documents: Sequence[Mapping[str, Any]]
) -> InsertOutcome:
    """One unordered ``insert_many``. A duplicate key counts as stored (redelivery is success).

    Documents that cannot be encoded as BSON (e.g. an integer beyond 64 bits) or that the server rejects
    for good are reported in ``failed``; everything else of the batch is still written. Transient failures
    raise (the caller retries the whole batch; duplicates then make the retry harmless).
    """
    outcome = InsertOutcome()
    raws: list[RawBSONDocument] = []
    positions: list[int] = []
    for i, doc in enumerate(documents):
        try:
            raws.append(RawBSONDocument(bson.encode(doc)))
        except (BSONError, OverflowError, TypeError, ValueError) as exc:
            outcome.failed[i] = f"not storable as BSON: {exc}"
            continue
        positions.append(i)
    if not raws:
        return outcome
    try:
        await collection.insert_many(raws, ordered=False)
    except BulkWriteError as exc:
        details = exc.details
        if details.get("writeConcernErrors"):
            raise TransientWriteError(
                f"write concern not satisfied: {details['writeConcernErrors']}"
            ) from exc
        errors = details.get("writeErrors", [])
        if any(err.get("code") in _TRANSIENT_CODES for err in errors):
            raise TransientWriteError(f"transient write errors: {errors[:3]}") from exc
        for err in errors:
            index = positions[err["index"]]
            if err.get("code") in DUPLICATE_KEY_CODES:
                outcome.duplicates += 1
            else:
                outcome.failed[index] = f"rejected by MongoDB ({err.get('code')}): {err.get('errmsg')}"
        outcome.inserted = int(details.get("nInserted", len(raws) - len(errors)))
        return outcome
    outcome.inserted = len(raws)
    return outcome


async def ensure_indexes(collection: AsyncCollection[Any], *, retention_s: int | None) -> int | None:
    """Create the indexes of ``wide_events`` and migrate older collections (idempotent, safe to re-run and
    to run from several replicas at once); returns the TTL the server reports, if any.

    - uniqueness is ``_id`` = ``event_id`` alone: :func:`migrate_event_ids` gives documents written with
      another ``_id`` (an ObjectId, by older producers) their event id as ``_id``, then drops the unique
      ``event_id`` index that guarded them (the same constraint twice, paid on every insert);
    - ``timestamp``: a TTL index when ``retention_s`` is set (documents expire that long after their event
      time), a plain index otherwise;
    - ``(service, timestamp)`` for per-service queries, ``(trace_id, timestamp)`` for one trace's events.
    """
    await migrate_event_ids(collection)
    await _ensure_timestamp_index(collection, retention_s)
    await collection.create_index([("service", 1), ("timestamp", -1)], name=INDEX_SERVICE)
    await collection.create_index([("trace_id", 1), ("timestamp", -1)], name=INDEX_TRACE)
    info = await collection.index_information()
    for spec in info.values():
        if list(spec.get("key", [])) == [("timestamp", 1)]:
            ttl = spec.get("expireAfterSeconds")
            return int(ttl) if ttl is not None else None
    return None


async def migrate_event_ids(collection: AsyncCollection[Any]) -> tuple[int, bool]:
    """Make ``_id`` = ``event_id`` hold for every document, then drop the unique ``event_id`` index.

    The index (only if it exists) goes first. Then a document whose ``_id`` is an ObjectId (older
    producers wrote them; found through the ``_id`` index) is copied with ``_id`` = its ``event_id`` (a copy
    already there wins: a duplicate key) and deleted once the copy is there, so the event is stored once.
    Every step is idempotent; a crash half-way is finished by the next run. Returns (documents moved,
    whether the index was dropped now).
    """
    # the index goes first: while it exists, the re-keyed copy of a document collides with the document
    dropped = False
    for name, spec in (await collection.index_information()).items():
        if list(spec.get("key", [])) == [("event_id", 1)]:
            try:
                await collection.drop_index(name)
                dropped = True
            except OperationFailure as exc:
                if exc.code != 27:  # IndexNotFound: another replica dropped it first
                    raise
    moved = 0
    # a range of the _id index: comparisons match one BSON type only (and local stand-ins lack $type)
    async for doc in collection.find({"_id": {"$gte": ObjectId("0" * 24), "$lte": ObjectId("f" * 24)}}):
        event_id = doc.get("event_id")
        if not isinstance(event_id, str) or not event_id:
            continue  # no event id to key it by: left as it is (nothing can redeliver it)
        with contextlib.suppress(DuplicateKeyError):  # already re-keyed, or stored twice: one copy stays
            await collection.insert_one({**doc, "_id": event_id})
        if await collection.find_one({"_id": event_id}, {"_id": 1}) is not None:
            await collection.delete_one({"_id": doc["_id"]})
            moved += 1
    if moved:
        log.info("wide_events: documents re-keyed by event_id", extra={"moved": moved})
    return moved, dropped


async def _ensure_timestamp_index(collection: AsyncCollection[Any], retention_s: int | None) -> None:
    options: dict[str, Any] = {"name": INDEX_TIMESTAMP}
    if retention_s:
        options["expireAfterSeconds"] = int(retention_s)
    try:
        await collection.create_index([("timestamp", 1)], **options)
        return
    except OperationFailure as exc:
        if exc.code not in (85, 86):  # IndexOptionsConflict / IndexKeySpecsConflict: retention changed
            raise
    if retention_s:
        # Change the TTL in place (no index rebuild on a large collection).
        await collection.database.command(
            {
                "collMod": collection.name,
                "index": {"keyPattern": {"timestamp": 1}, "expireAfterSeconds": int(retention_s)},
            }
        )
        return
    # Retention switched off: a TTL index cannot be turned back into a plain one in place.
    with contextlib.suppress(OperationFailure):
        await collection.drop_index([("timestamp", 1)])
    await collection.create_index([("timestamp", 1)], name=INDEX_TIMESTAMP)
