"""The pure batch logic: versions, last-write-wins, session lifecycle, missing timestamps. No servers."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from consumer_runtime import Record
from issue_ingestor.handlers import (
    IssueRow,
    RejectedEvent,
    SessionRow,
    StoredIssue,
    event_time,
    issue_ids,
    make_version,
    plan_batch,
)
from platform_events import CHATBOT_ISSUES, decode

T0 = "2025-08-08T17:05:37.123Z"
T1 = "2025-08-08T18:00:00Z"
T2 = "2025-08-08T19:00:00.000001Z"


def rec(
    issue: str, offset: int, *, partition: int = 0, ts_ms: int = 1_754_672_737_000, **fields: Any
) -> Record[Any]:
    body: dict[str, Any] = {
        "issue": issue,
        "processType": "장애접수",
        "modeType": "프레스",
        "modeLogId": "PRESS_LOG_001",
        "description": "100톤 프레스 유압 이상",
        "isSolved": False,
        "timestamp": T0,
        **fields,
    }
    raw = json.dumps({k: v for k, v in body.items() if v is not ...}, ensure_ascii=False).encode()
    return Record("t", partition, offset, issue.encode(), decode(CHATBOT_ISSUES, raw), ts_ms, raw)


def stored_after(rows: list[IssueRow], sessions: list[SessionRow]) -> dict[str, StoredIssue]:
    """What the database holds after a plan was written to an empty database."""
    out = {}
    for row in rows:
        current = [s for s in sessions if s.issue == row.issue and s.seq == row.session_seq]
        out[row.issue] = StoredIssue(
            row.issue,
            row.is_solved,
            row.version,
            row.session_seq,
            current[0].opened_at if current else None,
            bool(current) and current[0].status == "open",
        )
    return out


def test_version_orders_by_time_then_partition_then_offset() -> None:
    t = datetime(2025, 8, 8, tzinfo=UTC)
    later = datetime(2025, 8, 8, 0, 0, 0, 1, tzinfo=UTC)
    assert (
        make_version(t, 0, 999) < make_version(t, 0, 1000) < make_version(t, 1, 0) < make_version(later, 0, 0)
    )
    assert make_version(datetime(1000, 1, 1, tzinfo=UTC), 0, 0) < make_version(
        datetime(9999, 12, 31, tzinfo=UTC), 0, 0
    )
    assert (
        len(make_version(datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), 2**31 - 1, 2**63 - 1)) == 47
    )


def test_first_event_opens_one_session() -> None:
    plan = plan_batch([rec("A", 0)], {})
    assert [r.issue for r in plan.issues] == ["A"]
    assert plan.issues[0].session_seq == 1
    assert plan.sessions == [SessionRow("A", 1, "open", datetime(2025, 8, 8, 17, 5, 37, 123000), None)]
    assert (plan.accepted, plan.ignored, plan.opened, plan.closed) == (1, 0, 1, 0)


def test_first_event_already_solved_opens_and_closes() -> None:
    plan = plan_batch([rec("A", 0, isSolved=True)], {})
    assert plan.sessions == [SessionRow("A", 1, "closed", plan.issues[0].timestamp, plan.issues[0].timestamp)]


def test_solved_closes_once_and_reopen_opens_next_session() -> None:
    first = plan_batch([rec("A", 0)], {})
    state = stored_after(first.issues, first.sessions)

    solved = plan_batch([rec("A", 1, isSolved=True, timestamp=T1)], state)
    assert solved.sessions == [
        SessionRow("A", 1, "closed", datetime(2025, 8, 8, 17, 5, 37, 123000), datetime(2025, 8, 8, 18))
    ]
    state = stored_after(solved.issues, solved.sessions)

    again = plan_batch([rec("A", 2, isSolved=True, timestamp=T2, description="재확인")], state)
    assert again.sessions == []  # closed once only
    assert again.issues[0].description == "재확인"
    state = stored_after(again.issues, again.sessions)

    reopened = plan_batch([rec("A", 3, timestamp="2025-08-09T08:00:00Z")], state)
    assert reopened.sessions == [SessionRow("A", 2, "open", datetime(2025, 8, 9, 8), None)]
    assert reopened.issues[0].session_seq == 2


def test_whole_lifecycle_inside_one_batch() -> None:
    plan = plan_batch(
        [
            rec("A", 0),
            rec("A", 1, isSolved=True, timestamp=T1),
            rec("A", 2, timestamp=T2),
            rec("B", 3, modeType="용접기"),
        ],
        {},
    )
    assert [(s.issue, s.seq, s.status) for s in plan.sessions] == [
        ("A", 1, "closed"),
        ("A", 2, "open"),
        ("B", 1, "open"),
    ]
    by_issue = {r.issue: r for r in plan.issues}
    assert by_issue["A"].session_seq == 2
    assert by_issue["A"].kafka_offset == 2
    assert by_issue["B"].mode_type == "용접기"


def test_redelivery_changes_nothing() -> None:
    batch = [rec("A", 0), rec("A", 1, isSolved=True, timestamp=T1), rec("B", 2)]
    first = plan_batch(batch, {})
    again = plan_batch(batch, stored_after(first.issues, first.sessions))
    assert again.issues == []
    assert again.sessions == []
    assert (again.accepted, again.ignored) == (0, 3)


def test_older_event_does_not_overwrite_newer() -> None:
    newer = plan_batch([rec("A", 0, isSolved=True, timestamp=T1)], {})
    late = plan_batch(
        [rec("A", 5, timestamp=T0, description="old")], stored_after(newer.issues, newer.sessions)
    )
    assert late.issues == []
    assert late.sessions == []
    assert late.ignored == 1


def test_same_timestamp_later_offset_wins() -> None:
    plan = plan_batch([rec("A", 0, description="first"), rec("A", 1, description="second")], {})
    assert plan.issues[0].description == "second"


def test_missing_or_null_timestamp_uses_record_time_not_now() -> None:
    absent = rec("A", 0, timestamp=..., ts_ms=1_700_000_000_123)
    null = rec("B", 0, timestamp=None, ts_ms=1_700_000_000_456)
    assert event_time(absent) == datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=UTC)
    assert event_time(null) == datetime(2023, 11, 14, 22, 13, 20, 456000, tzinfo=UTC)
    present = rec("C", 0, ts_ms=1_700_000_000_000, description='"timestamp": null in the text')
    assert event_time(present) == datetime(2025, 8, 8, 17, 5, 37, 123000, tzinfo=UTC)


def test_event_before_year_1000_is_rejected_and_the_rest_planned() -> None:
    plan = plan_batch([rec("A", 0, timestamp="0999-12-31T00:00:00Z"), rec("B", 1)], {})
    assert [f.record.offset for f in plan.failures] == [0]
    assert isinstance(plan.failures[0].error, RejectedEvent)
    assert plan.failures[0].stage == "handler"
    assert "year 1000" in str(plan.failures[0].error)
    assert [r.issue for r in plan.issues] == ["B"]


def test_issue_ids_sorted_distinct() -> None:
    assert issue_ids([rec("b", 0), rec("a", 1), rec("b", 2)]) == ["a", "b"]


@pytest.mark.parametrize("solved_first", [True, False])
def test_plan_is_deterministic(solved_first: bool) -> None:
    batch = [rec("A", 0, isSolved=solved_first), rec("A", 1, isSolved=not solved_first, timestamp=T1)]
    assert plan_batch(batch, {}).sessions == plan_batch(batch, {}).sessions


def test_follow_up_without_description_keeps_it() -> None:
    plan = plan_batch(
        [rec("A", 0, description="원인 불명"), rec("A", 1, description=..., isSolved=True, timestamp=T1)], {}
    )
    assert plan.issues[0].description == "원인 불명"
    assert plan.issues[0].is_solved is True
