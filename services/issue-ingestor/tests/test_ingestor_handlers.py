"""The pure batch logic: versions, last-write-wins, session lifecycle, missing timestamps. No servers."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from consumer_runtime import Record
from hypothesis import given, settings
from hypothesis import strategies as st
from issue_ingestor.handlers import (
    IssueRow,
    RejectedEvent,
    SessionRow,
    StoredIssue,
    WritePlan,
    event_time,
    issue_ids,
    make_version,
    needs_history,
    plan_batch,
    prepare,
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


class MemoryDb:
    """What MySQL holds after plans were written (the planner sends final values: the conditional upserts
    of ``store.py`` then amount to replacing the row and the sessions it sends)."""

    def __init__(self, *, lean: bool = False) -> None:
        self.rows: dict[str, IssueRow] = {}
        self.sessions: dict[tuple[str, int], SessionRow] = {}
        self.history: dict[str, dict[str, bool]] = {}
        #: as the store loads state: rows + latest session, the history only where ``needs_history`` says
        self.lean = lean
        self.history_reads = 0

    def full(self, issue: str) -> StoredIssue:
        return StoredIssue(replace(self.rows[issue]), tuple(self.history.get(issue, {}).items()))

    def stored(self) -> dict[str, StoredIssue]:
        if self.lean:
            return {
                issue: StoredIssue(
                    replace(row), last_session=self.sessions.get((issue, row.session_seq)), complete=False
                )
                for issue, row in self.rows.items()
            }
        return {issue: self.full(issue) for issue in self.rows}

    def write(self, batch: list[Record[Any]]) -> WritePlan:
        prepared = prepare(batch)
        stored = self.stored()
        late = needs_history(prepared, stored)
        self.history_reads += len(late)
        stored.update((issue, self.full(issue)) for issue in late)
        plan = plan_batch(prepared, stored)
        for row in plan.issues:
            self.rows[row.issue] = row
        for session in plan.sessions:
            self.sessions[(session.issue, session.seq)] = session
        for issue, version, solved in plan.events:
            self.history.setdefault(issue, {})[version] = solved
        return plan


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
    db = MemoryDb()
    db.write([rec("A", 0)])

    solved = db.write([rec("A", 1, isSolved=True, timestamp=T1)])
    assert solved.sessions == [
        SessionRow("A", 1, "closed", datetime(2025, 8, 8, 17, 5, 37, 123000), datetime(2025, 8, 8, 18))
    ]

    again = db.write([rec("A", 2, isSolved=True, timestamp=T2, description="재확인")])
    assert again.sessions == []  # closed once only
    assert again.issues[0].description == "재확인"

    reopened = db.write([rec("A", 3, timestamp="2025-08-09T08:00:00Z")])
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
    db = MemoryDb()
    db.write(batch)
    again = db.write(batch)
    assert again.issues == []
    assert again.events == []
    assert again.sessions == []
    assert (again.accepted, again.ignored) == (0, 3)


def test_older_event_does_not_overwrite_newer() -> None:
    db = MemoryDb()
    db.write([rec("A", 0, isSolved=True, timestamp=T1, description="new")])
    before = replace(db.rows["A"])
    late = db.write([rec("A", 5, timestamp=T0, description="old")])
    assert late.issues == []  # the newer row and its description stay as they are
    assert db.rows["A"] == before
    assert late.events == [("A", late_version(5, T0), False)]  # but the event joins the history


def late_version(offset: int, ts: str) -> str:
    return make_version(datetime.fromisoformat(ts), 0, offset)


def test_late_create_fills_the_description_and_the_opened_at() -> None:
    db = MemoryDb()
    db.write([rec("A", 7, isSolved=True, timestamp=T1, description=...)])
    assert db.rows["A"].description is None
    at_18 = datetime(2025, 8, 8, 18)
    assert list(db.sessions.values()) == [SessionRow("A", 1, "closed", at_18, at_18)]

    late = db.write([rec("A", 3, timestamp=T0, description="100톤 프레스 유압 이상")])
    row = db.rows["A"]
    assert (row.description, row.is_solved, row.kafka_offset) == ("100톤 프레스 유압 이상", True, 7)
    assert late.sessions == [
        SessionRow("A", 1, "closed", datetime(2025, 8, 8, 17, 5, 37, 123000), datetime(2025, 8, 8, 18))
    ]


def test_late_unsolved_between_two_solved_opens_the_session_it_missed() -> None:
    db = MemoryDb()
    db.write([rec("A", 0), rec("A", 1, isSolved=True, timestamp=T1)])
    db.write([rec("A", 3, isSolved=True, timestamp="2025-08-08T21:00:00Z")])
    db.write([rec("A", 2, timestamp=T2)])  # late: reopened at 19:00, closed by the 21:00 event
    hours = [
        (s.seq, s.status, s.opened_at.hour, s.closed_at and s.closed_at.hour) for s in db.sessions.values()
    ]
    assert hours == [
        (1, "closed", 17, 18),
        (2, "closed", 19, 21),
    ]
    assert db.rows["A"].session_seq == 2


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


@st.composite
def issue_history(draw: st.DrawFn) -> list[Record[Any]]:
    """One issue's events: colliding minutes, any solved/unsolved pattern, descriptions present, null or
    absent, several partitions."""
    events = []
    for offset in range(draw(st.integers(1, 8))):
        minute = draw(st.integers(0, 20))
        events.append(
            rec(
                "A",
                offset,
                partition=draw(st.integers(0, 2)),
                isSolved=draw(st.booleans()),
                description=draw(st.sampled_from([..., None, "원인 A", "원인 B"])),
                modeLogId=f"LOG_{offset}",
                timestamp=f"2025-08-08T10:{minute:02d}:00Z",
            )
        )
    return events


@settings(max_examples=300, deadline=None)
@given(issue_history(), st.data())
def test_any_permutation_and_duplication_gives_the_same_row_and_sessions(
    events: list[Record[Any]], data: st.DataObject
) -> None:
    in_order = MemoryDb()  # the reference: one event at a time, oldest first
    for event in sorted(events, key=lambda r: make_version(event_time(r), r.partition, r.offset)):
        in_order.write([event])

    shuffled = data.draw(st.permutations(events))
    repeated = data.draw(st.lists(st.sampled_from(events), max_size=6))
    arrival = shuffled + repeated
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(arrival) - 1)), max_size=4)))
    any_order = MemoryDb()
    for start, end in zip([0, *cuts], [*cuts, len(arrival)], strict=True):
        if start < end:
            any_order.write(arrival[start:end])

    assert any_order.rows == in_order.rows
    assert any_order.sessions == in_order.sessions
    # the store's way: rows + latest session, the history only for late events and redeliveries
    lean = MemoryDb(lean=True)
    for start, end in zip([0, *cuts], [*cuts, len(arrival)], strict=True):
        if start < end:
            lean.write(arrival[start:end])
    assert lean.rows == in_order.rows
    assert lean.sessions == in_order.sessions
    opened = sorted(event_time(r) for r in events)[0].replace(tzinfo=None)
    assert any_order.sessions[("A", 1)].opened_at == opened  # the earliest event time seen


def test_events_newer_than_the_stored_ones_need_no_history() -> None:
    db = MemoryDb(lean=True)
    db.write([rec("A", 0), rec("B", 1)])
    db.write([rec("A", 2, isSolved=True, timestamp=T1)])
    reopened = db.write([rec("A", 3, timestamp=T2), rec("B", 4, isSolved=True, timestamp=T2)])
    assert db.history_reads == 0
    assert [(s.issue, s.seq, s.status) for s in reopened.sessions] == [("A", 2, "open"), ("B", 1, "closed")]
    assert (reopened.opened, reopened.closed) == (1, 1)
    assert {r.issue: r.session_seq for r in reopened.issues} == {"A": 2, "B": 1}


def test_redelivery_late_event_or_same_microsecond_read_the_history() -> None:
    db = MemoryDb(lean=True)
    db.write([rec("A", 0, timestamp=T1)])
    assert db.write([rec("A", 0, timestamp=T1)]).accepted == 0  # redelivered: never a second session
    assert db.history_reads == 1
    db.write([rec("A", 1, timestamp=T0, isSolved=True)])  # late
    assert db.history_reads == 2
    db.write([rec("A", 2, timestamp=T1)])  # same microsecond as the row's event, later offset
    assert db.history_reads == 3
    assert len({seq for issue, seq in db.sessions if issue == "A"}) == 2


def test_planner_refuses_a_late_event_without_the_history() -> None:
    db = MemoryDb()
    db.write([rec("A", 0, timestamp=T1)])
    lean = {"A": StoredIssue(db.rows["A"], last_session=db.sessions[("A", 1)], complete=False)}
    with pytest.raises(ValueError, match="stored history"):
        plan_batch([rec("A", 1, timestamp=T0)], lean)
    assert needs_history(prepare([rec("A", 1, timestamp=T2)]), lean) == []
    # a latest session that does not match the row (open, but the row's event was solved) is not trusted
    solved = replace(db.rows["A"], is_solved=True)
    assert needs_history(prepare([rec("A", 1, timestamp=T2)]), {"A": replace(lean["A"], row=solved)}) == ["A"]
