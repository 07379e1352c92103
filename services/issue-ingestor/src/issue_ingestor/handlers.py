"""Pure logic: a batch of decoded issue events + the stored state of their issues → the rows to write.

Rules (also in the README):

- **Version.** Every event gets a version: its event time (µs), then its Kafka partition and offset. Equal
  timestamps are ordered by offset (same partition = the later event wins).
- **Merge, not last-write-only.** Every event's (version, isSolved) is kept in ``ChatbotIssueEvent``. The row
  reflects the newest event; its description is the one of the newest event that carried one (so a late
  "create" still fills a description no newer event had). A redelivered event (version already stored)
  changes nothing.
- **Sessions** are folded from the whole history in version order: the first event opens session 1
  (closed at once when it is already solved); a solved event closes the open session; an unsolved event
  while none is open opens the next one. A late event re-folds the history: a session's ``opened_at`` is the
  earliest event time seen. Any permutation or duplication of an issue's events gives the same row and
  sessions.
- **Missing timestamp.** The event time is the Kafka record timestamp, not the time of processing, so a
  redelivery computes the same version.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
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
    "fold_sessions",
    "make_version",
    "needs_history",
    "plan_batch",
    "prepare",
    "to_db_datetime",
    "version_time",
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

    The runtime's decoder already fills a missing timestamp with the record timestamp (``Batch.decode``), so
    both agree; reading it from the record here keeps the event time stable across redeliveries whoever
    decoded the event (a decode without ``received_at`` would use the time of decoding).
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


@dataclass(slots=True)
class IssueRow:
    """Values of one ``ChatbotIssue`` upsert (datetimes naive UTC)."""

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
    #: version of the event the description came from ("" = no event carried one)
    description_version: str = ""

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
            self.description_version,
        )


@dataclass(frozen=True, slots=True)
class StoredIssue:
    """What the batch logic needs to know about an issue already in the database: its row and either the
    (version, isSolved) of every event stored for it (table ``ChatbotIssueEvent``, ``complete``) or only its
    latest session (``last_session``, the one numbered ``row.session_seq``).

    The latest session is enough when every event of the batch is newer than all stored ones
    (:func:`needs_history`): the fold is a left fold, so folding the new events on from the state the stored
    history left (that session, open or closed) gives what folding the whole history would.
    """

    row: IssueRow
    history: tuple[tuple[str, bool], ...] = ()
    last_session: SessionRow | None = None
    complete: bool = True


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
    """Everything one batch writes: at most one issue row per issue, the sessions that changed, and the
    events new to the history."""

    issues: list[IssueRow] = field(default_factory=list)
    sessions: list[SessionRow] = field(default_factory=list)
    events: list[tuple[str, str, bool]] = field(default_factory=list)  # (issue, version, isSolved)
    failures: list[Failure] = field(default_factory=list)
    accepted: int = 0  # events new to their issue's history (stored)
    ignored: int = 0  # redelivered: already in the history
    opened: int = 0
    closed: int = 0


def version_time(version: str) -> datetime:
    """The event time (naive UTC) a version starts with."""
    return (_ORIGIN + timedelta(microseconds=int(version[:18]))).replace(tzinfo=None)


def fold_sessions(
    issue: str, history: Mapping[str, bool], *, tail: SessionRow | None = None
) -> list[SessionRow]:
    """The sessions of an issue from its whole history ``{version: isSolved}``, folded in version order.

    The first event opens session 1 (closed at once when it is solved); a solved event closes the open
    session; an unsolved event while no session is open opens the next one. Any permutation or duplication
    of the events gives the same result, since only the set of versions matters.

    With ``tail`` (the latest session the stored history folded to) the fold goes on from it, for events all
    newer than the stored ones: the result starts with ``tail``.
    """
    out: list[SessionRow] = [tail] if tail is not None else []
    is_open = tail is not None and tail.status == "open"
    for version in sorted(history):
        solved = history[version]
        at = version_time(version)
        if not out:
            out.append(SessionRow(issue, 1, "closed" if solved else "open", at, at if solved else None))
            is_open = not solved
        elif solved and is_open:
            last = out[-1]
            out[-1] = SessionRow(issue, last.seq, "closed", last.opened_at, at)
            is_open = False
        elif not solved and not is_open:
            out.append(SessionRow(issue, out[-1].seq + 1, "open", at, None))
            is_open = True
    return out


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


def needs_history(prepared: Prepared, stored: Mapping[str, StoredIssue]) -> list[str]:
    """The issues whose whole event history the planner needs (sorted): those stored without it that get an
    event not strictly later (in event time) than the stored row's event, i.e. a late event or a redelivery
    (only the history tells an old event from a stored one), or whose latest session does not match the row.

    Strictly later in *time*: every stored event is at most as old as the row's event (the row reflects the
    newest), and the same microsecond goes to the history to stay exact whatever the partition and offset.
    """
    out: set[str] = set()
    for row in prepared.rows:
        known = stored.get(row.issue)
        if known is None or known.complete or row.issue in out:
            continue
        tail = known.last_session
        if (
            row.version[:18] <= known.row.version[:18]
            or tail is None
            or tail.seq != known.row.session_seq
            or (tail.status == "open") == known.row.is_solved
        ):
            out.add(row.issue)
    return sorted(out)


def plan_batch(
    records: Sequence[Record[FactoryIssueEvent]] | Prepared, stored: Mapping[str, StoredIssue]
) -> WritePlan:
    """Merge the batch's events into the stored state of their issues; the result does not depend on the
    order (or repetition) in which an issue's events arrive.

    - The row's fields come from the newest event (greatest version) ever seen, its description from the
      newest event that carried one, its ``session_seq`` from the sessions.
    - The sessions are folded from the whole history (stored versions + the batch's new ones); only the
      sessions that differ from the fold of the stored history are written.
    """
    prepared = records if isinstance(records, Prepared) else prepare(records)
    plan = WritePlan(failures=list(prepared.failures))
    by_issue: dict[str, list[IssueRow]] = {}
    for row in prepared.rows:
        by_issue.setdefault(row.issue, []).append(row)

    for issue, rows in by_issue.items():
        known = stored.get(issue)
        history = dict(known.history) if known is not None else {}
        tail = None if known is None or known.complete else known.last_session
        if known is not None and not known.complete and issue in needs_history(Prepared(rows, []), stored):
            raise ValueError(f"issue {issue!r}: the batch needs its stored history (see needs_history)")
        new: dict[str, IssueRow] = {}
        for row in rows:
            if row.version in history or row.version in new:
                plan.ignored += 1
            else:
                new[row.version] = row
                plan.accepted += 1
        if not new:
            continue
        before = fold_sessions(issue, history, tail=tail)
        history.update((version, row.is_solved) for version, row in new.items())
        after = fold_sessions(issue, history, tail=tail)

        newest = new[max(new)]
        base = known.row if known is not None and known.row.version > newest.version else newest
        result = replace(base)
        described = [version for version, row in new.items() if row.description is not None]
        best = max(described) if described else ""
        if known is not None and known.row.description_version >= best:
            result.description = known.row.description
            result.description_version = known.row.description_version
        else:
            result.description = new[best].description if best else None
            result.description_version = best
        result.session_seq = after[-1].seq

        if known is None or result != known.row:
            plan.issues.append(result)
        plan.events.extend((issue, version, row.is_solved) for version, row in sorted(new.items()))
        previous = {s.seq: s for s in before}
        plan.sessions.extend(s for s in after if previous.get(s.seq) != s)
        plan.opened += len(after) - len(before)
        plan.closed += max(0, _closed(after) - _closed(before))
    return plan


def _closed(sessions: Sequence[SessionRow]) -> int:
    return sum(1 for s in sessions if s.status == "closed")
