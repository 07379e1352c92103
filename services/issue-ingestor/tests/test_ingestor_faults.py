"""Faults with the real broker and MariaDB: the database going away mid-stream, a crash between the write and
the offset commit. The shared MariaDB is never stopped: the service reaches it through a TCP proxy we cut."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
from consumer_runtime import Failure, Record
from consumer_runtime.testing import KafkaNames, produce, wait_until
from consumer_runtime.topics import ensure_topics
from ingestor_testlib import MysqlDb, RunningService, TcpProxy, fetch, issue_json, wipe
from issue_ingestor.sink import IssueSink
from issue_ingestor.store import IssueStore

pytestmark = pytest.mark.integration


def lifecycle_events(prefix: str, n: int) -> tuple[list[bytes], list[bytes]]:
    """n issues opened, then every other one solved: values and keys."""
    values, keys = [], []
    for i in range(n):
        values.append(
            issue_json(f"{prefix}{i:03d}", description=f"설비 이상 {i}", timestamp="2025-08-08T10:00:00Z")
        )
        keys.append(f"{prefix}{i:03d}".encode())
    for i in range(0, n, 2):
        values.append(issue_json(f"{prefix}{i:03d}", isSolved=True, timestamp="2025-08-08T11:00:00Z"))
        keys.append(f"{prefix}{i:03d}".encode())
    return values, keys


async def snapshot(store: IssueStore) -> tuple[list[Any], list[Any]]:
    issues = await fetch(store, "SELECT * FROM ChatbotIssue ORDER BY issue")
    sessions = await fetch(store, "SELECT * FROM ChatbotSession ORDER BY issue, seq")
    return issues, sessions


async def test_database_down_mid_stream_retries_then_loses_nothing(
    issue_db: MysqlDb, kafka_bootstrap: str, kafka_names: KafkaNames
) -> None:
    proxy = await TcpProxy(issue_db.host, issue_db.port).start()
    settings = issue_db.settings(
        kafka_names,
        kafka_bootstrap_servers=kafka_bootstrap,
        db_host=f"127.0.0.1:{proxy.port}",
        db_connect_timeout_s=2,
        retry_backoff_max_ms=300,
    )
    direct = IssueStore(issue_db.settings())  # the test's own view, not through the proxy
    await ensure_topics(settings, [kafka_names.topic, kafka_names.dlq])
    try:
        async with RunningService(settings) as svc:
            await wipe(svc.store)
            first, first_keys = lifecycle_events("UP", 10)
            await produce(kafka_bootstrap, kafka_names.topic, first, keys=first_keys)
            await wait_until(lambda: svc.runner.counts.stored == len(first), what="first part stored")

            await proxy.cut()
            retries_before = svc.runner.counts.retries
            second, second_keys = lifecycle_events("DOWN", 20)
            await produce(kafka_bootstrap, kafka_names.topic, second, keys=second_keys)
            await wait_until(lambda: svc.runner.counts.retries >= retries_before + 2, what="write retries")

            ready = await svc.http.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["checks"]["mysql"] != "ok"
            assert ready.json()["checks"]["consumer"] != "ok"
            assert svc.runner.status().state == "retrying"
            assert (await svc.http.get("/healthz")).status_code == 200  # alive, just not ready
            assert (await svc.http.get("/issues")).status_code == 503
            assert await direct.get_issue("DOWN000") is None

            await proxy.restore()
            total = len(first) + len(second)
            await wait_until(lambda: svc.runner.counts.stored == total, timeout=30, what="everything stored")

            async def is_ready() -> bool:
                return (await svc.http.get("/readyz")).status_code == 200

            await wait_until(is_ready, what="ready again")
            await wait_until(lambda: svc.runner.status().lag == 0, what="all committed")

        issues, sessions = await snapshot(direct)
        assert len(issues) == 30
        assert len(sessions) == 30  # exactly one session per issue
        closed = [s for s in sessions if s[3] == "closed"]
        assert len(closed) == 15  # every other issue solved, once
    finally:
        await proxy.cut()
        await direct.close()


class CrashAfterWrite(IssueSink):
    """Writes (and commits to MySQL), then hangs before returning: the offsets are never committed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.written = 0

    async def write(self, records: Sequence[Record[Any]]) -> Sequence[Failure]:
        await super().write(records)
        self.written += len(records)
        await asyncio.Event().wait()  # the process "dies" here
        return []


async def test_crash_between_write_and_commit_duplicates_nothing(
    issue_db: MysqlDb, kafka_bootstrap: str, kafka_names: KafkaNames
) -> None:
    settings = issue_db.settings(kafka_names, kafka_bootstrap_servers=kafka_bootstrap, mq_batch_size=1000)
    await ensure_topics(settings, [kafka_names.topic, kafka_names.dlq])
    values, keys = lifecycle_events("KILL", 12)
    await produce(kafka_bootstrap, kafka_names.topic, values, keys=keys)

    crashing = CrashAfterWrite(IssueStore(settings))
    async with RunningService(settings, sink=crashing) as first:
        await wipe(crashing.store)
        await wait_until(lambda: crashing.written == len(values), what="all events written once")
        task = first.runner._task
        assert task is not None
        task.cancel()  # no commit after the write: what a kill -9 leaves behind
        with pytest.raises(asyncio.CancelledError):
            await task
        assert first.runner.counts.commits == 0
        before = await snapshot(crashing.store)
    assert len(before[0]) == 12
    assert len(before[1]) == 12

    async with RunningService(settings) as second:
        await wait_until(
            lambda: second.runner.counts.stored == len(values), what="redelivered and re-applied"
        )
        await wait_until(lambda: second.runner.status().lag == 0, what="committed this time")
        assert second.sink.last_plan is not None
        after = await snapshot(second.store)
    assert after == before  # not one row rewritten (updated_at unchanged), no session added
