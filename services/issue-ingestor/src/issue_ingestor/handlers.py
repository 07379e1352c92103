"""Pure logic: a batch of decoded issue events + the stored state of their issues → the rows to write.

Rules (also in the README):

- **Version.** Every event gets a version: its event time (µs), then its Kafka partition and offset. A row is
  replaced only by an event with a greater version, so a redelivered event (same version) or a late, older
  one (smaller version) changes nothing. Equal timestamps are ordered by offset (same partition = the later
  event wins).
- **Sessions.** The current session is open exactly while the issue is unsolved:
  the first event of an issue opens session 1 (closed at once when that event is already solved);
  an accepted event with ``isSolved: true`` closes the open session (once: later solved events change
  nothing); an accepted ``isSolved: false`` event for a solved issue opens the next session (seq + 1).
  Events that are not accepted (stale or redelivered) never touch sessions.
- **Description.** A newer event without ``description`` (absent or null) keeps the stored one.
- **Missing timestamp.** The event time is the Kafka record timestamp, not the time of processing, so a
  redelivery computes the same version.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

from consumer_runtime import Failure, Record
from platform_events import FactoryIssueEvent, ms_to_datetime, to_utc
from pydantic_core import from_json

__all__ = [
    "IssueRow",
    "Prepared",
    "RejectedEvent",
    "SessionRow",
    "StoredIssue",
    "WritePlan",
    "event_time",
    "make_version",
    "plan_batch",
    "prepare",
    "to_db_datetime",
]

_ORIGIN: Final = datetime(1, 1, 1, tzinfo=UTC)
#: MySQL DATETIME holds years 1000-9999 only.
MIN_DB_TIME: Final = datetime(1000, 1, 1, tzinfo=UTC)

SessionStatus = Literal["open", "closed"]


class RejectedEvent(ValueError):
    """A decoded event that can never be stored (dead-lettered by the runtime with stage ``handler``)."""

    @property
    def reason(self) -> str:
        return str(self)


_MICROSECOND: Final = timedelta(microseconds=1)


def make_version(when: datetime, partition: int, offset: int) -> str:
    """A fixed-width string whose order is (event time, partition, offset): 18 + 10 + 19 digits."""
    micros = (to_utc(when) - _ORIGIN) // _MICROSECOND
    return f"{micros:018d}{partition:010d}{offset:019d}"


def to_db_datetime(value: datetime) -> datetime:
    """Aware → naive UTC (what a DATETIME(6) column holds)."""
    return to_utc(value).replace(tzinfo=None)


def event_time(record: Record[FactoryIssueEvent]) -> datetime:
    """The event's own ``timestamp``, or the Kafka record timestamp when the event had none.

    The decoder fills a missing timestamp with the time of decoding, which differs on every redelivery; the
    record timestamp does not.
    """
    raw = record.raw
    if raw is not None and not _has_timestamp(raw):
        return ms_to_datetime(record.timestamp_ms)
    stamped: datetime = record.value.timestamp
    return stamped


_TS_VALUE: Final = re.compile(rb'"timestamp"\s*:\s*[^n\s]')


def _has_timestamp(raw: bytes) -> bool:
    """Whether the top-level object has a non-null ``timestamp``; exact, and cheap in the common case."""
    hits = raw.count(b'"timestamp"')
    if hits == 0:
        return False
    # One object (no braces inside strings or nested objects) and one "timestamp" key with a value that is
    # not null: certainly the top-level field. Anything else is settled by parsing.
    if hits == 1 and raw.count(b"{") == 1 and _TS_VALUE.search(raw):
        return True
    try:
        data = from_json(raw)
    except ValueError:
        return True
    return not (isinstance(data, dict) and data.get("timestamp") is None)


@dataclass(frozen=True, slots=True)
class StoredIssue:
    """What the batch logic needs to know about an issue already in the database."""

    issue: str
    is_solved: bool
    version: str
    session_seq: int
    session_opened_at: datetime | None  # naive UTC, of the current session
    session_open: bool


@dataclass(slots=True)
class IssueRow:
    """Values of one ``ChatbotIssue`` upsert (datetimes naive UTC). Built per event, settled by the fold."""

    issue: str
    process_type: str
    mode_type: str
    mode_log_id: str
    description: str | None
    is_solved: bool
    timestamp: datetime
    kafka_partition: int
    kafka_offset: int
    session_seq: int
    version: str

    def params(self, now: datetime) -> tuple[Any, ...]:
        """Parameters in the column order of ``store.UPSERT_ISSUES`` (received_at = updated_at = now)."""
        return (
            self.issue,
            self.process_type,
            self.mode_type,
            self.mode_log_id,
            self.description,
            self.is_solved,
            self.timestamp,
            now,
            now,
            self.kafka_partition,
            self.kafka_offset,
            self.session_seq,
            self.version,
        )


@dataclass(frozen=True, slots=True)
class SessionRow:
    """Final state of one ``ChatbotSession`` touched by the batch (datetimes naive UTC)."""

    issue: str
    seq: int
    status: SessionStatus
    opened_at: datetime
    closed_at: datetime | None

    def params(self) -> tuple[Any, ...]:
        return (self.issue, self.seq, self.status, self.opened_at, self.closed_at)


@dataclass
class WritePlan:
    """Everything one batch writes: at most one issue row per issue, the sessions it opened or closed."""

    issues: list[IssueRow] = field(default_factory=list)
    sessions: list[SessionRow] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    accepted: int = 0  # events that changed their issue
    ignored: int = 0  # redelivered or older than what is stored
    opened: int = 0
    closed: int = 0


@dataclass
class _State:
    row: IssueRow
    is_solved: bool
    session_seq: int
    session_opened_at: datetime | None
    session_open: bool
    changed: bool = False


def _candidate(record: Record[FactoryIssueEvent]) -> IssueRow:
    event = record.value
    when = event_time(record)  # aware UTC already (the event model normalises it)
    if when < MIN_DB_TIME:
        raise RejectedEvent(f"timestamp: {when.isoformat()} is before year 1000 (MySQL DATETIME range)")
    micros = (when - _ORIGIN) // _MICROSECOND
    return IssueRow(
        issue=event.issue,
        process_type=event.process_type.value,
        mode_type=event.mode_type.value,
        mode_log_id=event.mode_log_id,
        description=event.description,
        is_solved=event.is_solved,
        timestamp=when.replace(tzinfo=None),
        kafka_partition=record.partition,
        kafka_offset=record.offset,
        session_seq=0,
        version=f"{micros:018d}{record.partition:010d}{record.offset:019d}",
    )


def issue_ids(records: Sequence[Record[FactoryIssueEvent]]) -> list[str]:
    """The distinct issue ids of a batch, sorted (rows are then locked in index order: no deadlocks)."""
    return sorted({r.value.issue for r in records})


@dataclass
class Prepared:
    """A batch turned into candidate rows (in order) plus the events that can never be stored."""

    rows: list[IssueRow]
    failures: list[Failure]

    @property
    def issue_ids(self) -> list[str]:
        """Distinct issue ids, sorted (rows are then locked in index order: no lock-order deadlocks)."""
        return sorted({row.issue for row in self.rows})


def prepare(records: Sequence[Record[FactoryIssueEvent]]) -> Prepared:
    """Per-event work that needs no stored state (done while the state query runs)."""
    rows: list[IssueRow] = []
    failures: list[Failure] = []
    for record in records:
        try:
            rows.append(_candidate(record))
        except RejectedEvent as exc:
            failures.append(Failure(record, exc, stage="handler"))
    return Prepared(rows, failures)


def plan_batch(
    records: Sequence[Record[FactoryIssueEvent]] | Prepared, stored: Mapping[str, StoredIssue]
) -> WritePlan:
    """Fold the batch's events, in order, onto the stored state of their issues."""
    prepared = records if isinstance(records, Prepared) else prepare(records)
    plan = WritePlan(failures=list(prepared.failures))
    states: dict[str, _State] = {}
    sessions: dict[tuple[str, int], SessionRow] = {}

    for row in prepared.rows:
        state = states.get(row.issue)
        if state is None:
            known = stored.get(row.issue)
            if known is not None:
                state = _State(
                    row=row,
                    is_solved=known.is_solved,
                    session_seq=known.session_seq,
                    session_opened_at=known.session_opened_at,
                    session_open=known.session_open,
                )
                current_version = known.version
            else:
                current_version = ""
        else:
            current_version = state.row.version

        if row.version <= current_version:
            plan.ignored += 1
            continue
        plan.accepted += 1

        if state is None:  # first event ever seen for this issue: session 1
            state = _State(
                row=row, is_solved=False, session_seq=0, session_opened_at=None, session_open=False
            )
            _open(plan, sessions, state, row)
        elif row.is_solved and state.session_open:
            _close(plan, sessions, state, row)
        elif not row.is_solved and not state.session_open:
            _open(plan, sessions, state, row)
        if row.is_solved and state.session_open:  # a first event that is already solved
            _close(plan, sessions, state, row)

        if row.description is None and state.changed:  # a follow-up without description keeps it
            row.description = state.row.description
        state.row = row
        state.is_solved = row.is_solved
        state.changed = True
        states[row.issue] = state

    for state in states.values():
        if state.changed:
            state.row.session_seq = state.session_seq
            plan.issues.append(state.row)
    plan.sessions = list(sessions.values())
    return plan


def _open(plan: WritePlan, sessions: dict[tuple[str, int], SessionRow], state: _State, row: IssueRow) -> None:
    state.session_seq += 1
    state.session_opened_at = row.timestamp
    state.session_open = True
    sessions[(row.issue, state.session_seq)] = SessionRow(
        row.issue, state.session_seq, "open", row.timestamp, None
    )
    plan.opened += 1


def _close(
    plan: WritePlan, sessions: dict[tuple[str, int], SessionRow], state: _State, row: IssueRow
) -> None:
    opened_at = state.session_opened_at or row.timestamp
    key = (row.issue, state.session_seq)
    sessions[key] = SessionRow(row.issue, state.session_seq, "closed", opened_at, row.timestamp)
    state.session_open = False
    plan.closed += 1
