"""The fault suite's exactly-once checks can fail: each one, run over a store that a writer without the
sink's idempotency wrote twice, reports the duplicates (and passes on the same data written once, or written
twice through the unique key the real sink relies on).

These run in ``make test`` (a few seconds: no services, only the shared datastores and broker).
"""

from __future__ import annotations

import contextlib
import json
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from e2e_harness import Names, Stack, drop_mysql, shared_endpoints
from faults_lib import Tally, assert_exactly_once, es_tally, issue_tally, mongo_tally, sent_tally

pytestmark = pytest.mark.integration

IDS = [f"k{i}" for i in range(5)]
REPO = Path(__file__).resolve().parents[2]
MIGRATION = REPO / "services/issue-ingestor/src/issue_ingestor/migrations/0001_initial.sql"


def _fails(tally: Tally, expected: set[str]) -> str:
    with pytest.raises(AssertionError) as caught:
        assert_exactly_once(tally, expected)
    return str(caught.value)


# ------------------------------------------------------------------------------------------ issue-ingestor
@pytest.fixture
async def mysql_stack(tmp_path: Path) -> AsyncIterator[Stack]:
    stack = Stack(Names.fresh("chk"), shared_endpoints(["mysql"]), tmp_path)
    stack.ensure_mysql()
    try:
        yield stack
    finally:
        await drop_mysql(stack.ep, stack.names)


async def _mysql(stack: Stack) -> Any:
    import asyncmy

    return await asyncmy.connect(
        host=stack.ep.mysql_host, port=stack.ep.mysql_port, user=stack.names.mysql_user,
        password=stack.mysql_password, db=stack.names.mysql_db, autocommit=True,
    )  # fmt: skip


async def _naive_issue_write(cur: Any, issue: str) -> None:
    """A writer without the ingestor's event-version check: every delivery of an open event opens a
    session (what a redelivery does to a sink whose idempotency is switched off)."""
    now = datetime.now(UTC).replace(tzinfo=None)
    await cur.execute(
        "INSERT INTO ChatbotIssue (issue, processType, modeType, modeLogId, description, isSolved, "
        "`timestamp`, received_at, updated_at, kafka_partition, kafka_offset, session_seq, event_version) "
        "VALUES (%s, '장애접수', '프레스', 'L', 'd', FALSE, %s, %s, %s, 0, 0, 1, '0') "
        "ON DUPLICATE KEY UPDATE session_seq = session_seq + 1",
        (issue, now, now, now),
    )
    await cur.execute("SELECT session_seq FROM ChatbotIssue WHERE issue = %s", (issue,))
    (seq,) = await cur.fetchone()
    await cur.execute(
        "INSERT INTO ChatbotSession (issue, seq, status, opened_at) VALUES (%s, %s, 'open', %s)",
        (issue, seq, now),
    )


async def test_issue_check_fails_on_a_second_session_per_issue(mysql_stack: Stack) -> None:
    conn = await _mysql(mysql_stack)
    try:
        async with conn.cursor() as cur:
            sql = re.sub(r"--[^\n]*", "", MIGRATION.read_text())
            for statement in filter(str.strip, sql.split(";")):
                await cur.execute(statement)
            for issue in IDS:
                await _naive_issue_write(cur, issue)
        creds = dict(
            host=mysql_stack.ep.mysql_host, port=mysql_stack.ep.mysql_port, user=mysql_stack.names.mysql_user,
            password=mysql_stack.mysql_password, db=mysql_stack.names.mysql_db,
        )  # fmt: skip
        assert_exactly_once(await issue_tally(**creds), set(IDS))  # written once: passes
        async with conn.cursor() as cur:
            await _naive_issue_write(cur, IDS[2])  # redelivered to the non-idempotent writer
        message = _fails(await issue_tally(**creds), set(IDS))
        assert "1 written more than once" in message, message
        assert "('k2', 2)" in message, message
    finally:
        conn.close()


# ------------------------------------------------------------------------------------------ MongoDB sinks
@pytest.fixture
async def mongo_db() -> AsyncIterator[tuple[str, str]]:
    from pymongo import AsyncMongoClient

    url = shared_endpoints(["mongo"]).mongo_url
    db = f"chk{uuid.uuid4().hex[:8]}"
    try:
        yield url, db
    finally:
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(url, serverSelectionTimeoutMS=5000)
        await client.drop_database(db)
        await client.close()


@pytest.mark.parametrize(
    ("collection", "fields", "doc"),
    [
        ("wide_events", ("ledger",), lambda k: {"event_id": k, "ledger": k, "service": "chk"}),
        ("notifications", ("event_id", "user_id"), lambda k: {"event_id": k, "user_id": "u1", "body": "b"}),
    ],
    ids=["log-sink", "notifier"],
)
async def test_mongo_checks_fail_when_written_twice_without_the_unique_key(
    mongo_db: tuple[str, str], collection: str, fields: tuple[str, ...], doc: Any
) -> None:
    from pymongo import AsyncMongoClient
    from pymongo.errors import BulkWriteError

    url, db = mongo_db
    expected = {":".join([k, "u1"][: len(fields)]) for k in IDS}
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(url, serverSelectionTimeoutMS=5000)
    try:
        keyed = client[db][f"{collection}_keyed"]  # as the sinks write: _id derived from the event
        naive = client[db][collection]  # idempotency switched off: the server picks the _id
        for _ in range(2):  # every record delivered twice
            with pytest.raises(BulkWriteError) if _ else contextlib.nullcontext():
                await keyed.insert_many([{"_id": f"id-{k}", **doc(k)} for k in IDS], ordered=False)
            await naive.insert_many([doc(k) for k in IDS])
        sink = "log-sink" if collection == "wide_events" else "notifier"
        assert_exactly_once(await mongo_tally(sink, url, db, f"{collection}_keyed", fields), expected)
        message = _fails(await mongo_tally(sink, url, db, collection, fields), expected)
        assert f"{len(IDS)} written more than once" in message, message
    finally:
        await client.close()


# ------------------------------------------------------------------------------------------ Elasticsearch
async def test_search_check_fails_when_a_message_is_indexed_twice() -> None:
    import httpx

    url = shared_endpoints(["elasticsearch"]).elasticsearch_url
    index = f"chk-{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(base_url=url, timeout=10) as es:
        try:
            for _ in range(2):  # every message delivered twice
                for k in IDS:  # as the indexer writes a created message: op_type=create (409 the 2nd time)
                    r = await es.put(f"/{index}-create/_create/{k}", json={"message_id": k})
                    assert r.status_code in (201, 409), r.text
                    # idempotency switched off: a plain index call rewrites the document
                    r = await es.put(f"/{index}-naive/_doc/{k}", json={"message_id": k})
                    assert r.status_code in (200, 201), r.text
            assert_exactly_once(await es_tally(url, f"{index}-create"), set(IDS))
            message = _fails(await es_tally(url, f"{index}-naive"), set(IDS))
            assert f"{len(IDS)} written more than once" in message, message
        finally:
            await es.delete(f"/{index}-create")
            await es.delete(f"/{index}-naive")


# ---------------------------------------------------------------------------------------- notifications.sent
async def test_sent_check_fails_on_a_second_publish() -> None:
    from aiokafka import AIOKafkaProducer
    from e2e_harness import delete_kafka_names

    bootstrap = shared_endpoints(["kafka"]).kafka
    marker = f"chk{uuid.uuid4().hex[:8]}"
    topic = f"{marker}.platform.notifications.sent"
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:

        async def publish(k: str) -> None:
            value = {"event_id": k, "user_id": "u1", "notification_id": f"ntf-{k}"}
            await producer.send_and_wait(topic, json.dumps(value).encode(), key=b"u1")

        for k in IDS:
            await publish(k)
        expected = {f"{k}:u1" for k in IDS}
        assert_exactly_once(await sent_tally(bootstrap, topic), expected)
        await publish(IDS[0])  # published again (e.g. a redelivery the checkpoint did not stop)
        message = _fails(await sent_tally(bootstrap, topic), expected)
        assert "1 written more than once" in message, message
        assert "('k0:u1', 2)" in message, message
    finally:
        await producer.stop()
        await delete_kafka_names(bootstrap, marker)


def test_sent_check_tells_a_producer_retry_from_a_second_publish() -> None:
    """The same produced record stored twice (same bytes and CreateTime, another offset) is a producer retry
    the broker wrote twice, counted apart; the same notification sent again (a new record) is a duplicate."""
    from types import SimpleNamespace

    from faults_lib import sent_tally_of

    def rec(k: str, ts: int) -> SimpleNamespace:
        value = json.dumps({"event_id": k, "user_id": "u1", "notification_id": f"ntf-{k}"}).encode()
        return SimpleNamespace(value=value, timestamp=ts)

    expected = {f"{k}:u1" for k in IDS}
    records = [rec(k, 1000 + i) for i, k in enumerate(IDS)]
    retried = sent_tally_of([*records, records[0]])
    assert_exactly_once(retried, expected)
    assert retried.resent == {f"{IDS[0]}:u1": 1}
    again = sent_tally_of([*records, rec(IDS[0], 5000)])
    assert "1 written more than once" in _fails(again, expected)
