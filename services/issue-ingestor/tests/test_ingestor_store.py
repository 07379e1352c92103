"""The MySQL adapter on the real MariaDB: migrations, round trip, idempotent batches, sessions, queries."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from consumer_runtime import Record
from devservers import drop_mysql_database, ensure_mysql_database
from ingestor_testlib import ISSUE_DB_PASSWORD, MysqlDb, fetch, issue_json
from issue_ingestor.handlers import make_version
from issue_ingestor.sink import IssueSink
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
    assert await store.schema_versions() == [m.version for m in bundled_migrations()] == [1, 2, 3, 4]
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


async def test_round_trip_every_field(store: IssueStore, sink: IssueSink) -> None:
    raw = issue_json(
        "PAINT_003_20250808_001",
        processType="정기점검",
        modeType="도장설비",
        modeLogId="PAINT_LOG_한글_003",
        description=KOREAN,
        isSolved=False,
        timestamp="2025-08-08T17:05:37.123456+09:00",
    )
    assert await sink.write([rec(raw, 41, partition=2)]) == []
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
    await sink.write([rec(r, i) for i, r in enumerate(others)])
    for i, mode in enumerate(["프레스", "용접기", "도장설비", "차량조립설비"]):
        one = await store.get_issue(f"M{i}")
        assert one is not None
        assert one["modeType"] == mode
        assert one["description"] is None


async def test_redelivered_batch_changes_nothing(store: IssueStore, sink: IssueSink) -> None:
    batch = [
        rec(issue_json("A"), 0),
        rec(issue_json("B", modeType="용접기"), 1),
        rec(issue_json("A", isSolved=True, timestamp="2025-08-08T18:00:00Z"), 2),
    ]
    await sink.write(batch)
    before_rows, before_sessions = await rows(store), await sessions(store)
    await sink.write(batch)  # a crash before the commit: the whole batch comes again
    await sink.write(batch[1:])
    assert await rows(store) == before_rows  # updated_at too: not even re-written
    assert await sessions(store) == before_sessions
    assert [(s[0], s[1], s[2]) for s in before_sessions] == [("A", 1, "closed"), ("B", 1, "open")]


async def test_older_event_never_overwrites(store: IssueStore, sink: IssueSink) -> None:
    await sink.write(
        [rec(issue_json("A", isSolved=True, description="최신", timestamp="2025-08-09T00:00:00Z"), 5)]
    )
    before = await rows(store)
    await sink.write(
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


async def test_session_lifecycle_across_batches(store: IssueStore, sink: IssueSink) -> None:
    await sink.write([rec(issue_json("S", timestamp="2025-08-08T10:00:00Z"), 0)])
    assert await sessions(store) == [("S", 1, "open", datetime(2025, 8, 8, 10), None)]
    await sink.write([rec(issue_json("S", isSolved=True, timestamp="2025-08-08T11:00:00Z"), 1)])
    await sink.write(
        [rec(issue_json("S", isSolved=True, timestamp="2025-08-08T11:30:00Z"), 2)]
    )  # closes once
    assert await sessions(store) == [("S", 1, "closed", datetime(2025, 8, 8, 10), datetime(2025, 8, 8, 11))]
    await sink.write([rec(issue_json("S", timestamp="2025-08-08T12:00:00Z"), 3)])  # reopened
    await sink.write(
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


async def test_delete_removes_sessions(store: IssueStore, sink: IssueSink) -> None:
    await sink.write(
        [rec(issue_json("D"), 0), rec(issue_json("D", isSolved=True, timestamp="2025-08-09T00:00:00Z"), 1)]
    )
    await sink.write([rec(issue_json("D", timestamp="2025-08-10T00:00:00Z"), 2)])
    assert await store.delete_issue("D") == 2
    assert await store.get_issue("D") is None
    assert await sessions(store) == []
    assert await store.delete_issue("D") is None


async def test_list_filters_paging_and_total(store: IssueStore, sink: IssueSink) -> None:
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
    await sink.write(batch)
    total, page, _ = await store.list_issues(limit=5, offset=0)
    assert total == 12
    assert [p["issue"] for p in page] == ["L11", "L10", "L09", "L08", "L07"]
    total, page, _ = await store.list_issues(limit=5, offset=10)
    assert total == 12
    assert [p["issue"] for p in page] == ["L01", "L00"]
    total, page, _ = await store.list_issues(limit=100, offset=0, process_type="장애접수", mode_type="용접기")
    assert total == 3
    assert {p["issue"] for p in page} == {"L01", "L05", "L09"}
    total, _, _ = await store.list_issues(limit=100, offset=0, is_solved=True)
    assert total == 4
    total, page, _ = await store.list_issues(
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


async def test_follow_up_without_description_keeps_stored_one(store: IssueStore, sink: IssueSink) -> None:
    await sink.write([rec(issue_json("K", description="유압 누유"), 0)])
    await sink.write(
        [rec(issue_json("K", description=None, isSolved=True, timestamp="2025-08-09T00:00:00Z"), 1)]
    )
    got = await store.get_issue("K")
    assert got is not None
    assert (got["description"], got["isSolved"]) == ("유압 누유", True)


async def test_issue_ids_differing_in_case_accent_or_trailing_space_are_different_issues(
    store: IssueStore,
    sink: IssueSink,
) -> None:
    ids = ["PRESS_1", "press_1", "PRESS_1 ", "PRÉSS_1"]
    await sink.write([rec(issue_json(i), n) for n, i in enumerate(ids)])
    await sink.write([rec(issue_json("press_1", isSolved=True, timestamp="2025-08-09T00:00:00Z"), 9)])
    assert sorted(r[0] for r in await rows(store)) == sorted(ids)
    by_issue = {s[0]: s for s in await sessions(store)}
    assert len(by_issue) == 4
    assert by_issue["press_1"][1:3] == (1, "closed")
    assert all(by_issue[i][1:3] == (1, "open") for i in ids if i != "press_1")
    got = await store.get_issue("PRESS_1 ")
    assert got is not None
    assert got["issue"] == "PRESS_1 "
    assert await store.get_issue("Press_1") is None


async def test_late_create_is_merged_into_the_row_and_the_session(store: IssueStore, sink: IssueSink) -> None:
    await sink.write(
        [rec(issue_json("M", isSolved=True, description=None, timestamp="2025-08-08T12:00:00Z"), 4)]
    )
    await sink.write([rec(issue_json("M", description="유압 이상", timestamp="2025-08-08T09:00:00Z"), 1)])
    got = await store.get_issue("M")
    assert got is not None
    assert (got["description"], got["isSolved"], got["kafka_offset"]) == ("유압 이상", True, 4)
    assert await sessions(store) == [("M", 1, "closed", datetime(2025, 8, 8, 9), datetime(2025, 8, 8, 12))]
    # a late unsolved event between two solved ones opens the session it belongs to
    await sink.write([rec(issue_json("M", isSolved=True, timestamp="2025-08-08T18:00:00Z"), 7)])
    await sink.write([rec(issue_json("M", timestamp="2025-08-08T15:00:00Z"), 6)])
    assert await sessions(store) == [
        ("M", 1, "closed", datetime(2025, 8, 8, 9), datetime(2025, 8, 8, 12)),
        ("M", 2, "closed", datetime(2025, 8, 8, 15), datetime(2025, 8, 8, 18)),
    ]
    got = await store.get_issue("M")
    assert got is not None
    assert got["session_seq"] == 2


async def test_migrations_upgrade_an_existing_database_and_are_safe_to_rerun(issue_db: MysqlDb) -> None:
    """A database created by 0001 with data in it: 0002 (binary ids), 0003 (history + backfill) and 0004
    (unused session index dropped) keep the data, can run again from the start (a crash mid-migration), and
    the backfilled history keeps the sessions when a late event arrives."""
    suffix = uuid.uuid4().hex[:8]
    name, user = f"ii_mig_{suffix}", f"iim_{suffix}"
    ensure_mysql_database(name, user, ISSUE_DB_PASSWORD, port=issue_db.port)
    db = MysqlDb(issue_db.host, issue_db.port, name, user)
    old = IssueStore(db.settings(db_migrate=False))
    try:
        first, *later = bundled_migrations()
        assert await old.migrate([first]) == [1]
        await fetch(
            old,
            "INSERT INTO ChatbotIssue (issue, processType, modeType, modeLogId, description, isSolved, "
            "`timestamp`, received_at, updated_at, kafka_partition, kafka_offset, session_seq, "
            "event_version) "
            "VALUES (%s, '장애접수', '프레스', 'L', '설명', TRUE, %s, %s, %s, 0, 3, 2, %s)",
            (
                "OLD_1",
                datetime(2025, 8, 8, 14),
                datetime(2025, 8, 8, 14),
                datetime(2025, 8, 8, 14),
                make_version(datetime(2025, 8, 8, 14, tzinfo=UTC), 0, 3),
            ),
        )
        await fetch(
            old,
            "INSERT INTO ChatbotSession (issue, seq, status, opened_at, closed_at) VALUES "
            "('OLD_1', 1, 'closed', '2025-08-08 10:00:00', '2025-08-08 11:00:00'), "
            "('OLD_1', 2, 'closed', '2025-08-08 12:00:00', '2025-08-08 13:00:00')",
        )
        assert await old.migrate() == [m.version for m in later]
        for migration in later:  # a re-run from the start changes nothing and fails nothing
            async with old.connection() as conn, conn.cursor() as cur:
                await conn.autocommit(True)
                for statement in migration.statements():
                    await cur.execute(statement)
        columns = await fetch(
            old,
            "SELECT TABLE_NAME, COLLATION_NAME FROM information_schema.COLUMNS "
            "WHERE TABLE_SCHEMA = DATABASE() AND COLUMN_NAME = 'issue' ORDER BY TABLE_NAME",
        )
        assert columns == [
            ("ChatbotIssue", "utf8mb4_nopad_bin"),
            ("ChatbotIssueEvent", "utf8mb4_nopad_bin"),
            ("ChatbotSession", "utf8mb4_nopad_bin"),
        ]
        assert len(await fetch(old, "SELECT * FROM ChatbotIssueEvent WHERE issue = 'OLD_1'")) == 5
        # 0004: the unused ix_session_status is gone (dropped once, the re-run found nothing to drop)
        indexes = await fetch(
            old,
            "SELECT DISTINCT TABLE_NAME, INDEX_NAME FROM information_schema.STATISTICS "
            "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME LIKE 'Chatbot%%' ORDER BY TABLE_NAME, INDEX_NAME",
        )
        assert indexes == [
            ("ChatbotIssue", "ix_issue_mode_timestamp"),
            ("ChatbotIssue", "ix_issue_process_timestamp"),
            ("ChatbotIssue", "ix_issue_solved_timestamp"),
            ("ChatbotIssue", "ix_issue_timestamp"),
            ("ChatbotIssue", "PRIMARY"),
            ("ChatbotIssueEvent", "PRIMARY"),
            ("ChatbotSession", "PRIMARY"),
            ("ChatbotSession", "ux_session_issue_seq"),
        ]
        # a late event inside the old session 2 changes nothing; one before session 1 moves its opened_at
        await IssueSink(old).write([rec(issue_json("OLD_1", timestamp="2025-08-08T12:30:00Z"), 1)])
        await IssueSink(old).write(
            [rec(issue_json("OLD_1", description=None, timestamp="2025-08-08T09:00:00Z"), 0)]
        )
        assert await sessions(old) == [
            ("OLD_1", 1, "closed", datetime(2025, 8, 8, 9), datetime(2025, 8, 8, 11)),
            ("OLD_1", 2, "closed", datetime(2025, 8, 8, 12), datetime(2025, 8, 8, 13)),
        ]
        got = await old.get_issue("OLD_1")
        assert got is not None
        assert (got["description"], got["isSolved"], got["session_seq"]) == ("설명", True, 2)
    finally:
        await old.close()
        drop_mysql_database(name, user, port=issue_db.port)


async def test_every_statement_has_a_server_side_time_limit(issue_db: MysqlDb) -> None:
    """A hung query ends on the server (MariaDB max_statement_time; MySQL MAX_EXECUTION_TIME hint on reads):
    the error is an ordinary retried failure, not a connection held forever."""
    from asyncmy.errors import OperationalError

    limited = IssueStore(issue_db.settings(db_statement_timeout_s=0.5, db_migrate=False))
    try:
        assert await fetch(limited, "SELECT @@max_statement_time") == [(0.5,)]
        with pytest.raises(OperationalError, match="max_statement_time"):
            await fetch(limited, "SELECT SLEEP(60)")
    finally:
        await limited.close()


async def test_issue_list_counts_up_to_a_cap(
    store: IssueStore, sink: IssueSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    import issue_ingestor.store as store_module

    monkeypatch.setattr(store_module, "COUNT_CAP", 3)
    await sink.write([rec(issue_json(f"C{i}"), i) for i in range(5)])
    total, page, capped = await store.list_issues(limit=2, offset=0)
    assert (total, capped, len(page)) == (3, True, 2)
    total, page, capped = await store.list_issues(limit=10, offset=0, mode_type="용접기")
    assert (total, capped, page) == (0, False, [])


async def test_a_batch_is_two_round_trips_and_a_late_event_three(store: IssueStore, sink: IssueSink) -> None:
    """Lock + read rows and latest sessions, then upserts + COMMIT in one packet; the history is read only
    for a late event or a redelivery."""
    import issue_ingestor.store as store_module

    sent: list[str] = []
    original = store_module._run
    calls: list[str] = []

    async def run(cur: Any, sql: str) -> None:
        calls.append(sql)
        await original(cur, sql)

    async def load_history(*args: Any) -> Any:
        sent.append("history")
        return await real_load_history(*args)

    real_load_history = store.load_history
    store_module._run = run  # type: ignore[assignment]
    store.load_history = load_history  # type: ignore[method-assign]
    try:
        await sink.write([rec(issue_json("A"), 0), rec(issue_json("B"), 1)])
        await sink.write([rec(issue_json("A", isSolved=True, timestamp="2025-08-08T18:00:00Z"), 2)])
        assert sent == []
        assert len(calls) == 2  # one packet each: upserts + COMMIT
        await sink.write([rec(issue_json("A", isSolved=True, timestamp="2025-08-08T18:00:00Z"), 2)])
        assert sent == ["history"]  # the redelivery: only the history tells it apart
        await sink.write([rec(issue_json("B", isSolved=True, timestamp="2025-08-08T10:00:00Z"), 3)])
        assert sent == ["history", "history"]  # late (older than B's row)
    finally:
        store_module._run = original  # type: ignore[assignment]
    assert [(s[0], s[1], s[2]) for s in await sessions(store)] == [
        ("A", 1, "closed"),
        ("B", 1, "closed"),  # the late solved event comes before the unsolved one
        ("B", 2, "open"),
    ]


async def test_a_plan_larger_than_a_packet_is_split_and_all_or_nothing(
    store: IssueStore, sink: IssueSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    import issue_ingestor.store as store_module

    monkeypatch.setattr(store_module, "MAX_PACKET", 2_000)
    batch = [rec(issue_json(f"I{i:03d}", description="설명 " * 20), i) for i in range(60)]
    await sink.write(batch)
    assert len(await rows(store)) == 60
    assert len(await sessions(store)) == 60
    # an error in the last packet (the sessions) rolls back the earlier ones: one transaction
    broken = store_module.UPSERT_SESSIONS.replace("closed_at)", "no_such_column)", 1)
    monkeypatch.setattr(store_module, "UPSERT_SESSIONS", broken)
    more = [rec(issue_json(f"J{i:03d}", description="설명 " * 20), 100 + i) for i in range(30)]
    with pytest.raises(Exception, match="no_such_column"):
        await sink.write(more)
    assert len(await rows(store)) == 60
    assert len(await fetch(store, "SELECT * FROM ChatbotIssueEvent")) == 60
