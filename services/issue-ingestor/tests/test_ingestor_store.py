"""The MySQL adapter on the real MariaDB: migrations, round trip, idempotent batches, sessions, queries."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from consumer_runtime import Record
from ingestor_testlib import MysqlDb, fetch, issue_json
from issue_ingestor.store import IssueStore, Migration, bundled_migrations
from platform_events import CHATBOT_ISSUES, decode

pytestmark = pytest.mark.integration

KOREAN = "도장 부스 온도 이상 🔥 — 작업자 확인 필요 (Ü, 漢字)"


def rec(raw: bytes, offset: int, partition: int = 0, ts_ms: int = 1_754_672_737_000) -> Record[Any]:
    return Record("t", partition, offset, None, decode(CHATBOT_ISSUES, raw), ts_ms, raw)


async def rows(store: IssueStore) -> list[tuple[Any, ...]]:
    return await fetch(store, "SELECT * FROM ChatbotIssue ORDER BY issue")


async def sessions(store: IssueStore) -> list[tuple[Any, ...]]:
    return await fetch(
        store, "SELECT issue, seq, status, opened_at, closed_at FROM ChatbotSession ORDER BY issue, seq"
    )


async def test_migrations_recorded_and_idempotent(store: IssueStore) -> None:
    assert await store.schema_versions() == [m.version for m in bundled_migrations()] == [1]
    assert await store.migrate() == []  # nothing pending: nothing applied twice
    charsets = await fetch(
        store,
        "SELECT TABLE_NAME, TABLE_COLLATION FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() "
        "ORDER BY TABLE_NAME",
    )
    assert {name for name, _ in charsets} >= {"ChatbotIssue", "ChatbotSession", "schema_version"}
    assert all(collation.startswith("utf8mb4") for _, collation in charsets)


async def test_new_migration_is_applied_once(store: IssueStore) -> None:
    extra = Migration(
        9999, "9999_test_probe.sql", "-- probe\nCREATE TABLE IF NOT EXISTS probe_9999 (x INT);\n"
    )
    try:
        assert await store.migrate([*bundled_migrations(), extra]) == [9999]
        assert await store.migrate([*bundled_migrations(), extra]) == []
        assert 9999 in await store.schema_versions()
    finally:
        await fetch(store, "DROP TABLE IF EXISTS probe_9999")
        await fetch(store, "DELETE FROM schema_version WHERE version = 9999")


async def test_round_trip_every_field(store: IssueStore) -> None:
    raw = issue_json(
        "PAINT_003_20250808_001",
        processType="정기점검",
        modeType="도장설비",
        modeLogId="PAINT_LOG_한글_003",
        description=KOREAN,
        isSolved=False,
        timestamp="2025-08-08T17:05:37.123456+09:00",
    )
    assert await store.write([rec(raw, 41, partition=2)]) == []
    got = await store.get_issue("PAINT_003_20250808_001")
    assert got is not None
    assert {
        k: got[k] for k in ("issue", "processType", "modeType", "modeLogId", "description", "isSolved")
    } == {
        "issue": "PAINT_003_20250808_001",
        "processType": "정기점검",
        "modeType": "도장설비",
        "modeLogId": "PAINT_LOG_한글_003",
        "description": KOREAN,
        "isSolved": False,
    }
    assert got["timestamp"] == "2025-08-08T08:05:37.123456Z"  # stored in UTC, microseconds kept
    assert (got["kafka_partition"], got["kafka_offset"], got["session_seq"]) == (2, 41, 1)
    assert got["received_at"].endswith("Z")
    assert got["updated_at"] == got["received_at"]
    # every vehicle kind and a null description round-trip too
    others = [
        issue_json(f"M{i}", modeType=mode, description=None)
        for i, mode in enumerate(["프레스", "용접기", "도장설비", "차량조립설비"])
    ]
    await store.write([rec(r, i) for i, r in enumerate(others)])
    for i, mode in enumerate(["프레스", "용접기", "도장설비", "차량조립설비"]):
        one = await store.get_issue(f"M{i}")
        assert one is not None
        assert one["modeType"] == mode
        assert one["description"] is None


async def test_redelivered_batch_changes_nothing(store: IssueStore) -> None:
    batch = [
        rec(issue_json("A"), 0),
        rec(issue_json("B", modeType="용접기"), 1),
        rec(issue_json("A", isSolved=True, timestamp="2025-08-08T18:00:00Z"), 2),
    ]
    await store.write(batch)
    before_rows, before_sessions = await rows(store), await sessions(store)
    await store.write(batch)  # a crash before the commit: the whole batch comes again
    await store.write(batch[1:])
    assert await rows(store) == before_rows  # updated_at too: not even re-written
    assert await sessions(store) == before_sessions
    assert [(s[0], s[1], s[2]) for s in before_sessions] == [("A", 1, "closed"), ("B", 1, "open")]


async def test_older_event_never_overwrites(store: IssueStore) -> None:
    await store.write(
        [rec(issue_json("A", isSolved=True, description="최신", timestamp="2025-08-09T00:00:00Z"), 5)]
    )
    before = await rows(store)
    await store.write(
        [rec(issue_json("A", isSolved=False, description="예전", timestamp="2025-08-08T00:00:00Z"), 9)]
    )
    assert await rows(store) == before
    got = await store.get_issue("A")
    assert got is not None
    assert got["description"] == "최신"
    assert got["isSolved"] is True
    assert [(s[1], s[2]) for s in await sessions(store)] == [
        (1, "closed")
    ]  # no session reopened by a stale event


async def test_session_lifecycle_across_batches(store: IssueStore) -> None:
    await store.write([rec(issue_json("S", timestamp="2025-08-08T10:00:00Z"), 0)])
    assert await sessions(store) == [("S", 1, "open", datetime(2025, 8, 8, 10), None)]
    await store.write([rec(issue_json("S", isSolved=True, timestamp="2025-08-08T11:00:00Z"), 1)])
    await store.write(
        [rec(issue_json("S", isSolved=True, timestamp="2025-08-08T11:30:00Z"), 2)]
    )  # closes once
    assert await sessions(store) == [("S", 1, "closed", datetime(2025, 8, 8, 10), datetime(2025, 8, 8, 11))]
    await store.write([rec(issue_json("S", timestamp="2025-08-08T12:00:00Z"), 3)])  # reopened
    await store.write(
        [rec(issue_json("S", timestamp="2025-08-08T12:10:00Z"), 4)]
    )  # still open: no new session
    assert await sessions(store) == [
        ("S", 1, "closed", datetime(2025, 8, 8, 10), datetime(2025, 8, 8, 11)),
        ("S", 2, "open", datetime(2025, 8, 8, 12), None),
    ]
    listed = await store.list_sessions("S")
    assert [(s["seq"], s["status"], s["closed_at"]) for s in listed] == [
        (1, "closed", "2025-08-08T11:00:00Z"),
        (2, "open", None),
    ]
    got = await store.get_issue("S")
    assert got is not None
    assert got["session_seq"] == 2
    assert got["isSolved"] is False


async def test_delete_removes_sessions(store: IssueStore) -> None:
    await store.write(
        [rec(issue_json("D"), 0), rec(issue_json("D", isSolved=True, timestamp="2025-08-09T00:00:00Z"), 1)]
    )
    await store.write([rec(issue_json("D", timestamp="2025-08-10T00:00:00Z"), 2)])
    assert await store.delete_issue("D") == 2
    assert await store.get_issue("D") is None
    assert await sessions(store) == []
    assert await store.delete_issue("D") is None


async def test_list_filters_paging_and_total(store: IssueStore) -> None:
    batch = []
    for i in range(12):
        batch.append(
            rec(
                issue_json(
                    f"L{i:02d}",
                    processType="장애접수" if i % 2 else "정기점검",
                    modeType=["프레스", "용접기", "도장설비", "차량조립설비"][i % 4],
                    isSolved=i % 3 == 0,
                    timestamp=f"2025-08-{i + 1:02d}T00:00:00Z",
                ),
                i,
            )
        )
    await store.write(batch)
    total, page = await store.list_issues(limit=5, offset=0)
    assert total == 12
    assert [p["issue"] for p in page] == ["L11", "L10", "L09", "L08", "L07"]
    total, page = await store.list_issues(limit=5, offset=10)
    assert total == 12
    assert [p["issue"] for p in page] == ["L01", "L00"]
    total, page = await store.list_issues(limit=100, offset=0, process_type="장애접수", mode_type="용접기")
    assert total == 3
    assert {p["issue"] for p in page} == {"L01", "L05", "L09"}
    total, _ = await store.list_issues(limit=100, offset=0, is_solved=True)
    assert total == 4
    total, page = await store.list_issues(
        limit=100, offset=0, since=datetime(2025, 8, 3), until=datetime(2025, 8, 6)
    )
    assert total == 3
    assert {p["issue"] for p in page} == {"L02", "L03", "L04"}


async def test_readiness_ping(store: IssueStore, issue_db: MysqlDb) -> None:
    await store.ping()
    wrong = IssueStore(issue_db.settings(db_password="wrong", db_migrate=False))
    try:
        with pytest.raises(Exception, match="Access denied"):
            await wrong.ping()
    finally:
        await wrong.close()


async def test_follow_up_without_description_keeps_stored_one(store: IssueStore) -> None:
    await store.write([rec(issue_json("K", description="유압 누유"), 0)])
    await store.write(
        [rec(issue_json("K", description=None, isSolved=True, timestamp="2025-08-09T00:00:00Z"), 1)]
    )
    got = await store.get_issue("K")
    assert got is not None
    assert (got["description"], got["isSolved"]) == ("유압 누유", True)
