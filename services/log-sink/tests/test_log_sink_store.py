"""WideEventStore and its WideEventSink against the real MongoDB-protocol server: idempotent writes, indexes,
TTL, queries."""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from consumer_runtime import Record
from consumer_runtime.testing import wait_until
from log_sink.handlers import LogQuery
from log_sink.sink import RejectedByStore, WideEventSink
from log_sink.store import WideEventStore
from platform_events import LOG_EVENTS, decode
from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError

pytestmark = pytest.mark.integration

# Recent on purpose: the TTL index (retention 1 h in these tests) would delete older events at once.
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)


def record(offset: int, body: dict[str, Any]) -> Record[Any]:
    raw = json.dumps(body).encode()
    return Record("log-events", 0, offset, None, decode(LOG_EVENTS, raw), 0, raw)


def event(i: int, **extra: Any) -> dict[str, Any]:
    ts = (T0 + timedelta(seconds=i)).isoformat()
    return {"event_id": f"e{i:03d}", "timestamp": ts, "service": "api", **extra}


async def open_store(mongo_url: str, db: str, retention_s: int | None = 3600) -> WideEventStore:
    store = WideEventStore(mongo_url, db, retention_s=retention_s)
    await store.open()
    return store


async def test_writes_are_idempotent(mongo_url: str, fresh_db: str) -> None:
    store = await open_store(mongo_url, fresh_db)
    try:
        sink = WideEventSink(store)
        batch = [record(i, event(i)) for i in range(50)]
        assert await sink.write(batch) == []
        assert await sink.write(batch) == []  # redelivery: duplicates are success
        assert await sink.write([record(60, event(3)), record(61, event(3)), record(62, event(99))]) == []
        assert await store.count() == 51
    finally:
        await store.close()


async def test_unstorable_document_fails_alone(mongo_url: str, fresh_db: str) -> None:
    store = await open_store(mongo_url, fresh_db)
    try:
        batch = [record(0, event(0)), record(1, event(1, huge=2**70)), record(2, event(2))]
        failures = await WideEventSink(store).write(batch)
        assert [(f.record.offset, f.stage) for f in failures] == [(1, "sink")]
        assert isinstance(failures[0].error, RejectedByStore)
        assert "BSON" in failures[0].error.reason
        assert await store.count() == 2
    finally:
        await store.close()


async def test_indexes(mongo_url: str, fresh_db: str, mongo: AsyncMongoClient[dict[str, Any]]) -> None:
    store = await open_store(mongo_url, fresh_db, retention_s=7 * 86_400)
    await store.open()  # idempotent
    await store.close()
    info = await mongo[fresh_db]["wide_events"].index_information()
    specs = {tuple(k for k, _ in spec["key"]): spec for spec in info.values()}
    assert ("event_id",) not in specs  # _id = event_id is the uniqueness; no second unique index
    assert specs[("timestamp",)].get("expireAfterSeconds") == 7 * 86_400
    assert ("service", "timestamp") in specs
    assert ("trace_id", "timestamp") in specs
    assert store.effective_ttl_s == 7 * 86_400


async def test_ttl_expires_old_events(mongo_url: str, fresh_db: str) -> None:
    store = await open_store(mongo_url, fresh_db, retention_s=3600)
    try:
        now = datetime.now(UTC).isoformat()
        old = "2020-01-01T00:00:00Z"
        await WideEventSink(store).write(
            [record(0, {**event(0), "timestamp": old}), record(1, {**event(1), "timestamp": now})]
        )

        async def only_recent_left() -> bool:
            return await store.count() == 1

        # MongoDB's TTL monitor runs every 60 s; the local stand-in expires sooner.
        await wait_until(only_recent_left, timeout=90, interval=1, what="the old event to expire")
        assert await store.get("e001") is not None
    finally:
        await store.close()


async def test_queries(mongo_url: str, fresh_db: str) -> None:
    store = await open_store(mongo_url, fresh_db, retention_s=None)
    try:
        bodies = [
            event(i, service="api" if i % 2 else "web", level="error" if i % 5 == 0 else "info",
                  status=500 if i % 5 == 0 else 200, user={"id": f"u{i % 3}"})
            for i in range(30)
        ]  # fmt: skip
        bodies.append({**event(30), "event_id": "same-ts", "timestamp": bodies[29]["timestamp"]})
        await WideEventSink(store).write([record(i, b) for i, b in enumerate(bodies)])

        items, cursor = await store.find(LogQuery(limit=5))
        assert [i["event_id"] for i in items] == ["same-ts", "e029", "e028", "e027", "e026"]
        assert items[0]["timestamp"] == (T0 + timedelta(seconds=29)).strftime("%Y-%m-%dT%H:%M:%SZ")
        assert cursor is not None

        seen: list[str] = []
        cur = None
        while True:
            page, cur_next = await store.find(LogQuery(limit=7, cursor=decode_or_none(cur)))
            seen += [i["event_id"] for i in page]
            if cur_next is None:
                break
            cur = cur_next
        assert len(seen) == 31
        assert len(set(seen)) == 31

        items, _ = await store.find(LogQuery(service="web", level="error"))
        assert [i["event_id"] for i in items] == ["e020", "e010", "e000"]
        items, _ = await store.find(LogQuery(fields={"status": ["500", 500], "user.id": ["u1"]}))
        assert [i["event_id"] for i in items] == ["e025", "e010"]
        items, _ = await store.find(
            LogQuery(since=T0 + timedelta(seconds=10), until=T0 + timedelta(seconds=13))
        )
        assert [i["event_id"] for i in items] == ["e012", "e011", "e010"]

        one = await store.get("e007")
        assert one is not None
        assert one["user"] == {"id": "u1"}
        assert one["status"] == 200
        assert await store.get("missing") is None
    finally:
        await store.close()


def decode_or_none(cursor: str | None) -> tuple[datetime, str] | None:
    from log_sink.handlers import decode_cursor

    return decode_cursor(cursor) if cursor else None


async def test_ping_fails_when_mongodb_is_unreachable() -> None:
    store = WideEventStore("mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=300", "x", retention_s=None)
    with pytest.raises(Exception, match=r"127\.0\.0\.1:1"):
        await store.ping()
    await store.close()


class FreezingProxy:
    """TCP forwarder on 127.0.0.1 in front of MongoDB; once ``thawed`` is cleared it keeps every connection
    open but passes nothing on: a hung server, as a half-dead network or a stalled primary looks to it."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.thawed = asyncio.Event()
        self.thawed.set()
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> FreezingProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await src.read(65536):
                    await self.thawed.wait()  # frozen: hold the bytes
                    dst.write(data)
                    await dst.drain()
            dst.close()

        tasks = {
            asyncio.ensure_future(pipe(reader, up_writer)),
            asyncio.ensure_future(pipe(up_reader, writer)),
        }
        self._tasks |= tasks
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks -= tasks


async def test_a_hung_mongodb_fails_the_operation_instead_of_hanging(mongo_url: str, fresh_db: str) -> None:
    """Nothing waits forever: with MongoDB hung mid-connection, a query and a batch write fail (the API
    answers 503, the runtime retries the batch) instead of waiting for ever."""
    host, port = mongo_url.removeprefix("mongodb://").split("/")[0].rsplit(":", 1)
    proxy = await FreezingProxy(host, int(port)).start()
    store = WideEventStore(
        f"mongodb://127.0.0.1:{proxy.port}/?directConnection=true", fresh_db, retention_s=None, timeout_ms=500
    )
    try:
        await store.open()
        await WideEventSink(store).write([record(0, event(0))])
        proxy.thawed.clear()
        with pytest.raises(PyMongoError):
            await asyncio.wait_for(store.find(LogQuery(limit=5)), 10)  # 20x the timeout; pymongo alone: ~30 s
        with pytest.raises(PyMongoError):
            await asyncio.wait_for(WideEventSink(store).write([record(1, event(1))]), 10)
    finally:
        proxy.thawed.set()
        await store.close()
        await proxy.close()


async def test_events_stored_already_past_the_retention_are_counted_and_logged(
    mongo_url: str, fresh_db: str
) -> None:
    """Retention rule: the TTL runs on the event's own time, so a backfill older than the retention is
    deleted right after it is stored: never silently."""
    from prometheus_client import REGISTRY

    def counted() -> float:
        return REGISTRY.get_sample_value("log_sink_events_expired_on_arrival_total") or 0.0

    store = await open_store(mongo_url, fresh_db, retention_s=3600)
    try:
        before = counted()
        old = {**event(1), "event_id": "backfill", "timestamp": (T0 - timedelta(hours=3)).isoformat()}
        sink = WideEventSink(store)
        assert await sink.write([record(0, event(0)), record(1, old)]) == []
        assert sink.expired_on_arrival == 1
        assert counted() - before == 1
        kept_forever = await open_store(mongo_url, fresh_db + "_f", retention_s=None)
        forever_sink = WideEventSink(kept_forever)
        await forever_sink.write([record(2, {**old, "event_id": "backfill2"})])
        assert forever_sink.expired_on_arrival == 0
        await kept_forever.close()
    finally:
        await store.close()
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url)
        await client.drop_database(fresh_db + "_f")
        await client.close()


async def test_migration_rekeys_old_documents_drops_the_event_id_index_and_is_idempotent(
    mongo_url: str, fresh_db: str, mongo: AsyncMongoClient[dict[str, Any]]
) -> None:
    """A collection as older versions left it: the unique ``event_id`` index, documents keyed by event id and
    some by ObjectId (older producers). Opening the store (twice, and a second replica at once) leaves one
    document per event, all keyed by event id, and no ``event_id`` index; duplicates are still refused, as
    the sink's own counters show."""
    from bson import ObjectId
    from log_sink import sink as sink_module
    from wide_logging.documents import migrate_event_ids

    collection = mongo[fresh_db]["wide_events"]
    await collection.create_index([("event_id", 1)], unique=True, name="event_id_unique")
    await collection.create_index([("timestamp", 1)], name="timestamp_ttl", expireAfterSeconds=3600)
    await collection.insert_many([{"_id": f"e{i:03d}", **event(i), "timestamp": T0} for i in range(5)])
    await collection.insert_many([{"_id": ObjectId(), **event(i), "timestamp": T0} for i in range(5, 8)])

    store = await open_store(mongo_url, fresh_db)
    second = await open_store(mongo_url, fresh_db)  # another replica, and a re-run
    try:
        assert await migrate_event_ids(collection) == (0, False)  # nothing left to do
        info = await collection.index_information()
        assert all(list(spec["key"]) != [("event_id", 1)] for spec in info.values())
        ids = sorted([doc["_id"] async for doc in collection.find({}, {"_id": 1})])
        assert ids == [f"e{i:03d}" for i in range(8)]
        got = await store.get("e006")  # found by _id: formerly an ObjectId-keyed document
        assert got is not None
        assert got["event_id"] == "e006"

        # the duplicate rule: a redelivered event is stored once, counted by the sink's own counters
        sink = WideEventSink(store)
        inserted = sink_module.INSERTED._value.get()
        duplicates = sink_module.DUPLICATES._value.get()
        batch = [record(20 + i, event(i)) for i in range(6, 10)]  # e006, e007 stored; e008, e009 new
        assert await sink.write(batch) == []
        assert await sink.write(batch) == []  # redelivery
        assert sink_module.INSERTED._value.get() - inserted == 2
        assert sink_module.DUPLICATES._value.get() - duplicates == 6
        assert await store.count() == 10
    finally:
        await store.close()
        await second.close()
