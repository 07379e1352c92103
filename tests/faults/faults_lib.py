"""Shared by the fault tests: event generators per sink and exactly-once checks that read each sink's
datastore directly (fault tests are white-box on storage; the e2e suite is black-box)."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from e2e_harness import Stack

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
    return {f"evt{i:07d}:{u}" for i in ids for u in ("user_a", "user_b")}


# --------------------------------------------------------------------------------------------- stored
async def stored(sink: str, stack: Stack) -> tuple[int, list[str]]:
    """(number of stored records, their keys as a list — duplicates kept) read from the sink's datastore."""
    ep, n = stack.ep, stack.names
    if sink == "issue-ingestor":
        import asyncmy

        conn = await asyncmy.connect(
            host=ep.mysql_host,
            port=ep.mysql_port,
            user=n.mysql_user,
            password=stack.mysql_password,
            db=n.mysql_db,
            connect_timeout=5,
        )
        try:
            async with conn.cursor() as cur:
                await cur.execute("SELECT issue FROM ChatbotIssue")
                issues = [r[0] for r in await cur.fetchall()]
                # a redelivered first event must not open a second chatbot session
                await cur.execute("SELECT issue FROM ChatbotSession")
                sessions = [r[0] for r in await cur.fetchall()]
        finally:
            conn.close()
        assert len(sessions) == len(set(sessions)), "an issue got more than one chatbot session"
        return len(issues), issues
    if sink in ("log-sink", "notifier"):
        from pymongo import AsyncMongoClient

        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
            ep.mongo_url, serverSelectionTimeoutMS=5000
        )
        try:
            if sink == "log-sink":
                coll = client[n.logs_db]["wide_events"]
                keys = [d["event_id"] async for d in coll.find({}, {"event_id": 1})]
            else:
                coll = client[n.notifier_db]["notifications"]
                keys = [
                    f"{d['event_id']}:{d['user_id']}"
                    async for d in coll.find({}, {"event_id": 1, "user_id": 1})
                ]
            return await coll.count_documents({}), keys
        finally:
            await client.close()
    from elasticsearch import AsyncElasticsearch
    from elasticsearch.helpers import async_scan

    es = AsyncElasticsearch(ep.elasticsearch_url, request_timeout=60)
    try:
        await es.indices.refresh(index=n.search_alias)
        count = (await es.count(index=n.search_alias))["count"]
        keys = [
            hit["_id"]
            async for hit in async_scan(
                es, index=n.search_alias, query={"query": {"match_all": {}}}, size=2000
            )
        ]
        return count, keys
    finally:
        await es.close()


def assert_exactly_once(sink: str, count: int, keys: list[str], expected: set[str]) -> None:
    dupes = len(keys) - len(set(keys))
    missing = expected - set(keys)
    extra = set(keys) - expected
    assert (not missing, not extra, dupes, count) == (True, True, 0, len(expected)), (
        f"{sink}: stored {count} (expected {len(expected)}), {len(missing)} missing "
        f"(e.g. {sorted(missing)[:3]}), {len(extra)} unexpected, {dupes} duplicates"
    )


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
