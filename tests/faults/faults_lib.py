"""Shared by the fault tests: event generators per sink and exactly-once checks that read each sink's
datastore directly (fault tests are white-box on storage; the e2e suite is black-box)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from e2e_harness import Stack, shared_endpoints

SINK_TOPIC = {
    "issue-ingestor": "chatbot-issue-events",
    "log-sink": "log-events",
    "search-indexer": "platform.messages.created",
    "notifier": "platform.messages.created",
}


# --------------------------------------------------------------------------------------------- events
BASE = datetime(2025, 8, 8, 9, 0, tzinfo=UTC)
# Wide events expire LOG_RETENTION_DAYS after their event time (TTL index): log events must be recent.
RECENT = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
MODES = ["프레스", "용접기", "도장설비", "차량조립설비"]


def event_for(sink: str, i: int) -> tuple[bytes, bytes]:
    """Event number ``i`` for ``sink``'s topic: (key, value)."""
    if sink == "issue-ingestor":
        issue = f"F{i:07d}"
        value: dict[str, Any] = {
            "issue": issue,
            "processType": "장애접수",
            "modeType": MODES[i % 4],
            "modeLogId": f"LOG_{i}",
            "description": f"결함 {i}",
            "isSolved": False,
            "timestamp": (BASE + timedelta(seconds=i)).isoformat(),
        }
        return issue.encode(), json.dumps(value, ensure_ascii=False).encode()
    if sink == "log-sink":
        eid = f"ev{i:07d}"
        value = {
            "event_id": eid,
            "timestamp": (RECENT + timedelta(milliseconds=i)).isoformat(),
            "service": "fault-test",
            "path": f"/orders/{i}",
            "status": 200,
            "ledger": eid,  # what the checks count by: a payload field the store does not key on
        }
        return eid.encode(), json.dumps(value).encode()
    # search-indexer and notifier both read platform.messages.created
    channel = f"ch{i % 7}"
    value = {
        "event_type": "message.created",
        "event_id": f"evt{i:07d}",
        "timestamp": 1_754_640_000_000 + i,
        "payload": {
            "message_id": f"msg{i:07d}",
            "channel_id": channel,
            "author_id": f"author{i % 11}",
            "content": f"배포 완료 메시지 {i}",
            "mentions": ["user_a", "user_b"],
            "attachments": [],
        },
    }
    return channel.encode(), json.dumps(value, ensure_ascii=False).encode()


def expected_keys(sink: str, n: int, skip: set[int] | None = None) -> set[str]:
    skip = skip or set()
    ids = [i for i in range(n) if i not in skip]
    if sink == "issue-ingestor":
        return {f"F{i:07d}" for i in ids}
    if sink == "log-sink":
        return {f"ev{i:07d}" for i in ids}
    if sink == "search-indexer":
        return {f"msg{i:07d}" for i in ids}
    return {f"evt{i:07d}:{u}" for i in ids for u in ("user_a", "user_b")}  # notifier, notifier.sent


# --------------------------------------------------------------------------------------------- stored
# Each sink's unique keys make a second copy of a record impossible in its store, so counting stored keys
# can never show a duplicate. A check counts instead what each *write* leaves behind, grouped by an id that is
# not the store's key:
#   issue-ingestor   chatbot sessions per issue (a redelivered first event would open a second one)
#   log-sink         documents per ``ledger`` field (a payload field; the store keys on ``_id``/``event_id``)
#   search-indexer   Elasticsearch ``_version`` per message (each index/update of a document adds one)
#   notifier         notification documents per (event_id, user_id) fields (the store keys on ``_id``)
#   notifier.sent    ``platform.notifications.sent`` records per (event_id, user_id), read from Kafka
# tests/faults/test_exactly_once_checks.py shows each check failing on a store written twice.
CHECKS = (*("issue-ingestor", "log-sink", "search-indexer", "notifier"), "notifier.sent")


@dataclass
class Tally:
    """What a sink's store shows: writes per ledger id, counted by a signal its unique keys cannot hide."""

    sink: str
    signal: str
    writes: Counter[str] = field(default_factory=Counter)
    solved: set[str] = field(default_factory=set)  # issue-ingestor: issues whose row says isSolved
    #: notifier.sent: extra copies of one *produced record* (same value, same CreateTime): the broker wrote
    #: a produce request twice because the producer retried it after losing the answer — what an idempotent
    #: producer prevents, and the local broker cannot do. Not counted in ``writes``.
    resent: Counter[str] = field(default_factory=Counter)

    @property
    def stored(self) -> int:
        """Distinct ids written at least once."""
        return sum(1 for v in self.writes.values() if v > 0)

    def verdict(self, expected: set[str]) -> dict[str, list[str]]:
        present = {k for k, v in self.writes.items() if v > 0}
        return {
            "missing": sorted(expected - present),
            "duplicated": sorted(k for k, v in self.writes.items() if v > 1),
            "unexpected": sorted(present - expected),
        }


def assert_exactly_once(tally: Tally, expected: set[str]) -> None:
    v = tally.verdict(expected)
    twice = [(k, tally.writes[k]) for k in v["duplicated"][:3]]
    assert not any(v.values()), (
        f"{tally.sink} ({tally.signal}): {tally.stored} stored of {len(expected)} expected; "
        f"{len(v['missing'])} missing (e.g. {v['missing'][:3]}), {len(v['duplicated'])} written more than "
        f"once (e.g. {twice}), {len(v['unexpected'])} unexpected"
    )


async def stored(sink: str, stack: Stack) -> Tally:
    """The sink's :class:`Tally`, read from its datastore (or, for ``notifier.sent``, from Kafka)."""
    ep, n = stack.ep, stack.names
    if sink == "issue-ingestor":
        return await issue_tally(
            host=ep.mysql_host, port=ep.mysql_port, user=n.mysql_user, password=stack.mysql_password,
            db=n.mysql_db,
        )  # fmt: skip
    if sink == "log-sink":
        return await mongo_tally(sink, ep.mongo_url, n.logs_db, "wide_events", ("ledger",))
    if sink == "notifier":
        return await mongo_tally(sink, ep.mongo_url, n.notifier_db, "notifications", ("event_id", "user_id"))
    if sink == "notifier.sent":
        return await sent_tally(ep.kafka, n.topic("platform.notifications.sent"))
    return await es_tally(ep.elasticsearch_url, n.search_alias)


async def issue_tally(*, host: str, port: int, user: str, password: str, db: str) -> Tally:
    import asyncmy

    tally = Tally("issue-ingestor", "chatbot sessions per issue")
    conn = await asyncmy.connect(host=host, port=port, user=user, password=password, db=db, connect_timeout=5)
    try:
        async with conn.cursor() as cur:
            await cur.execute(
                "SELECT i.issue, i.isSolved, COUNT(s.id) FROM ChatbotIssue i "
                "LEFT JOIN ChatbotSession s ON s.issue = i.issue GROUP BY i.issue, i.isSolved"
            )
            for issue, solved, sessions in await cur.fetchall():
                tally.writes[issue] = int(sessions)
                if solved:
                    tally.solved.add(issue)
    finally:
        conn.close()
    return tally


async def mongo_tally(sink: str, url: str, db: str, collection: str, fields: tuple[str, ...]) -> Tally:
    from pymongo import AsyncMongoClient

    tally = Tally(sink, f"documents per {'+'.join(fields)}")
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(url, serverSelectionTimeoutMS=5000)
    try:
        projection = dict.fromkeys(fields, 1)
        async for d in client[db][collection].find({}, projection):
            if all(f in d for f in fields):
                tally.writes[":".join(str(d[f]) for f in fields)] += 1
    finally:
        await client.close()
    return tally


async def es_tally(url: str, alias: str) -> Tally:
    from elasticsearch import AsyncElasticsearch
    from elasticsearch.helpers import async_scan

    tally = Tally("search-indexer", "_version per message")
    es = AsyncElasticsearch(url, request_timeout=60)
    try:
        await es.indices.refresh(index=alias)
        async for hit in async_scan(
            es, index=alias, query={"query": {"match_all": {}}}, size=2000, version=True
        ):
            tally.writes[hit["_source"]["message_id"]] += int(hit["_version"])
    finally:
        await es.close()
    return tally


async def sent_tally(bootstrap: str, topic: str) -> Tally:
    """``notifications.sent`` as a consumer reads it."""
    return sent_tally_of(await read_to_end(bootstrap, topic))


def sent_tally_of(records: Iterable[Any]) -> Tally:
    """Records per (event_id, user_id); a second copy of one *produced record* (same bytes, same CreateTime,
    another offset: a producer retry the broker wrote twice) is counted in ``resent``, not in ``writes``."""
    tally = Tally("notifier.sent", "notifications.sent records per event_id+user_id")
    seen: set[tuple[bytes, int]] = set()
    for rec in records:
        v = json.loads(rec.value or b"{}")
        key = f"{v['event_id']}:{v['user_id']}"
        copy = (rec.value or b"", rec.timestamp)
        if copy in seen:
            tally.resent[key] += 1
            continue
        seen.add(copy)
        tally.writes[key] += 1
    return tally


async def read_to_end(bootstrap: str, topic: str, timeout: float = 60.0) -> list[Any]:
    """Every record of ``topic`` up to its high watermarks (no group).

    ``fetch_max_wait_ms`` is long on purpose: Tansu on S3 answers a fetch whose object reads take longer
    than the wait with nothing, so with the default 500 ms a large topic reads slowly or not at all.
    """
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest",
        fetch_max_wait_ms=5000,
    )  # fmt: skip
    await consumer.start()
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        if not parts:
            await consumer.topics()
            parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in parts]
        if not tps:
            return []
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        # The end is the high watermark of the fetch responses (Tansu's ListOffsets answers the base offset
        # of the last batch + 1 for "latest").
        upto = {tp: 0 for tp in tps}  # next offset to read per partition (by what was returned)
        out: list[Any] = []
        deadline = time.monotonic() + timeout
        while True:
            for tp, msgs in (await consumer.getmany(timeout_ms=500)).items():
                out.extend(msgs)
                if msgs:
                    upto[tp] = max(upto[tp], msgs[-1].offset + 1)
            high = {tp: consumer.highwater(tp) for tp in tps}
            if all(h is not None and upto[tp] >= h for tp, h in high.items()):
                return out
            if time.monotonic() > deadline:
                raise AssertionError(f"{topic}: read up to {upto}, not to its high watermarks {high}")
    finally:
        await consumer.stop()


@dataclass(frozen=True)
class StoredRecord:
    """One record as the broker stored it (what :func:`read_s3_topic` returns)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int
    headers: tuple[tuple[str, bytes], ...]


def read_s3_topic(broker: Any, topic: str) -> list[StoredRecord]:
    """Every record of ``topic`` as a durable private Tansu (``start_private("kafka", storage="s3")``)
    stored it in its S3 bucket: one object per produced batch,
    ``…/topics/<topic>/partitions/<p>/records/<base>.batch``, each a Kafka v2 record batch (offsets relative
    to the object's base offset).

    Independent of the broker's fetch path, which after restarts under concurrent producers can leave
    records no consumer reaches (see docs/soak.md); what is here is what the broker durably accepted.
    """
    import boto3
    from aiokafka.record.default_records import DefaultRecordBatch

    s3 = boto3.client(
        "s3", endpoint_url=f"http://127.0.0.1:{broker.storage.port}", region_name="us-east-1",
        aws_access_key_id="devservers", aws_secret_access_key="devservers",
    )  # fmt: skip
    prefix = f"clusters/tansu_cluster/topics/{topic}/partitions/"
    out: list[StoredRecord] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=broker.bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            key: str = obj["Key"]
            if not key.endswith(".batch"):
                continue
            parts = key[len(prefix) :].split("/")  # <partition>/records/<base>.batch
            partition, base = int(parts[0]), int(parts[-1].removesuffix(".batch"))
            data = s3.get_object(Bucket=broker.bucket, Key=key)["Body"].read()
            while data:  # normally one batch per object; read on if there are several
                length = 12 + int.from_bytes(data[8:12], "big")
                batch = DefaultRecordBatch(bytearray(data[:length]))
                for rec in batch:
                    offset = base + rec.offset - batch.base_offset
                    headers = tuple((h, v) for h, v in rec.headers)
                    out.append(
                        StoredRecord(topic, partition, offset, rec.key, rec.value, rec.timestamp, headers)
                    )
                data = data[length:]
    out.sort(key=lambda r: (r.partition, r.offset))
    return out


# --------------------------------------------------------------------------------------------- private MySQL
class PrivateMariaDB:
    """A MariaDB of the test's own: its own --datadir and port, started and stopped by its PID."""

    MARIADBD = "/usr/sbin/mariadbd"

    def __init__(self, directory: Path) -> None:
        from devservers import free_port

        self.dir = directory
        self.port = free_port()
        self.popen: subprocess.Popen[bytes] | None = None

    def install(self) -> PrivateMariaDB:
        self.dir.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["mariadb-install-db", "--no-defaults", f"--datadir={self.dir / 'data'}", "--user=root",
             "--auth-root-authentication-method=normal", "--skip-test-db"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, timeout=60,
        )  # fmt: skip
        return self

    def start(self, timeout: float = 30.0) -> None:
        self.popen = subprocess.Popen(
            [self.MARIADBD, "--no-defaults", f"--datadir={self.dir / 'data'}", f"--port={self.port}",
             "--bind-address=127.0.0.1", f"--socket={self.dir / 'mysqld.sock'}",
             f"--pid-file={self.dir / 'mysqld.pid'}", "--user=root", "--skip-name-resolve",
             "--innodb-buffer-pool-size=64M", f"--log-error={self.dir / 'error.log'}"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(f"mariadbd exited: {(self.dir / 'error.log').read_text()[-2000:]}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.5):
                return
            time.sleep(0.2)
        raise RuntimeError(f"mariadbd did not listen on {self.port} within {timeout}s")

    def stop(self, timeout: float = 30.0) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)  # our own child, by PID
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)
        self.popen = None


# ----------------------------------------------------------------------------------------- private datastores
class Datastore:
    """stop()/start() a private datastore; ``endpoints`` point the stack at it."""

    def __init__(self, kind: str, directory: Path) -> None:
        self.kind = kind
        self.directory = directory
        self._srv: Any = None

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Datastore]:
        if self.kind == "mysql":
            self._srv = PrivateMariaDB(self.directory).install()
            self._srv.start()
        else:
            from devservers import start_private

            self._srv = start_private(self.kind, data_dir=self.directory)
        try:
            yield self
        finally:
            self._srv.stop()

    def endpoints(self) -> Any:
        ep = shared_endpoints(["kafka"])
        if self.kind == "mysql":
            ep.mysql_port = self._srv.port
        elif self.kind == "mongo":
            ep.mongo_url = self._srv.address
        else:
            ep.elasticsearch_url = self._srv.address
        return ep

    def stop(self) -> None:
        self._srv.stop()

    def start(self) -> None:
        self._srv.start()

    @property
    def pid(self) -> int:
        """The server's PID (its own session: the PID is its process group)."""
        pid = self._srv.popen.pid if self.kind == "mysql" else self._srv.pid
        assert pid is not None, f"{self.kind} is not running"
        return int(pid)

    def freeze(self) -> None:
        """SIGSTOP: the server hangs (connections stay open, nothing answers)."""
        os.killpg(self.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        os.killpg(self.pid, signal.SIGCONT)
