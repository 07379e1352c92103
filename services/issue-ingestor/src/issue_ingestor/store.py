"""The MySQL adapter (asyncmy pool): migrations, the batch transaction and its statements, and the queries
of the API.

The upserts are conditional on the event version, so even without the row lock an older event can never
overwrite a newer one and a redelivery changes nothing. The batch is orchestrated by
:class:`issue_ingestor.sink.IssueSink`.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import Any, Final

import asyncmy
from consumer_runtime import get_logger, tracing
from consumer_runtime.answers import ISSUE_COUNT_CAP
from platform_events import format_timestamp

from issue_ingestor.config import Settings
from issue_ingestor.handlers import IssueRow, SessionRow, StoredIssue, WritePlan

log = get_logger(__name__)

ISSUE_COLUMNS: Final = (
    "issue, processType, modeType, modeLogId, description, isSolved, `timestamp`, received_at, updated_at, "
    "kafka_partition, kafka_offset, session_seq, event_version, description_version"
)
_NEWER: Final = "VALUES(event_version) > event_version"
_NEWER_DESCRIPTION: Final = "VALUES(description_version) > description_version"
#: Assignments run left to right and see the new values of earlier columns: ``updated_at`` goes first (it
#: compares every version), ``description`` before ``description_version``, ``event_version`` last.
UPSERT_ISSUES: Final = (
    f"INSERT INTO ChatbotIssue ({ISSUE_COLUMNS}) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
    "ON DUPLICATE KEY UPDATE "
    f"updated_at = IF({_NEWER} OR {_NEWER_DESCRIPTION} OR VALUES(session_seq) > session_seq, "
    "VALUES(updated_at), updated_at), "
    f"description = IF({_NEWER_DESCRIPTION}, VALUES(description), description), "
    "description_version = GREATEST(description_version, VALUES(description_version)), "
    "session_seq = GREATEST(session_seq, VALUES(session_seq)), "
    + ", ".join(
        f"{col} = IF({_NEWER}, VALUES({col}), {col})"
        for col in (
            "processType",
            "modeType",
            "modeLogId",
            "isSolved",
            "`timestamp`",
            "kafka_partition",
            "kafka_offset",
        )
    )
    + ", event_version = GREATEST(event_version, VALUES(event_version))"
)
#: Sessions are folded from the whole history of the issue (under the row lock): the planner sends only the
#: ones that changed, with their final values.
UPSERT_SESSIONS: Final = (
    "INSERT INTO ChatbotSession (issue, seq, status, opened_at, closed_at) VALUES (%s, %s, %s, %s, %s) "
    "ON DUPLICATE KEY UPDATE "
    "status = VALUES(status), opened_at = VALUES(opened_at), closed_at = VALUES(closed_at)"
)
#: Each event once per issue: a redelivery is a no-op.
INSERT_EVENTS: Final = (
    "INSERT INTO ChatbotIssueEvent (issue, event_version, isSolved) VALUES (%s, %s, %s) "
    "ON DUPLICATE KEY UPDATE isSolved = isSolved"
)
#: The batch transaction's first statement: with autocommit off the SELECT starts the transaction (no
#: BEGIN), and ``SET TRANSACTION`` (this transaction only) rides in the same packet (asyncmy enables
#: multi-statements).
_START: Final = "SET TRANSACTION ISOLATION LEVEL READ COMMITTED"
#: The batch's issues, locked in index order, with their latest session (``seq = session_seq``): enough to
#: plan events newer than every stored one (``handlers.needs_history``).
_LOAD_ROWS: Final = (
    "SELECT i.issue, i.processType, i.modeType, i.modeLogId, i.description, i.isSolved, i.`timestamp`, "
    "i.kafka_partition, i.kafka_offset, i.session_seq, i.event_version, i.description_version, "
    "s.status, s.opened_at, s.closed_at "
    "FROM ChatbotIssue i LEFT JOIN ChatbotSession s ON s.issue = i.issue AND s.seq = i.session_seq "
    "WHERE i.issue IN ({}) FOR UPDATE"
)
_LOAD_HISTORY: Final = "SELECT issue, event_version, isSolved FROM ChatbotIssueEvent WHERE issue IN ({})"
#: The write statements of a batch and its COMMIT go in as few packets as fit this size (asyncmy's own
#: ``executemany`` limit; MariaDB's ``max_allowed_packet`` is 16 MB by default).
MAX_PACKET: Final = 1_024_000

#: Server errors that mean "this data can never be written as is" (strict mode data errors, FK, ...).
PERMANENT_ERRORS: Final = frozenset(
    {
        1048,  # column cannot be null
        1136,  # column count doesn't match
        1264,  # out of range value
        1292,  # incorrect datetime value
        1366,  # incorrect string value
        1406,  # data too long
        1452,  # foreign key constraint fails
        3140,  # invalid JSON
    }
)

ISSUE_FIELDS: Final = (
    "issue",
    "processType",
    "modeType",
    "modeLogId",
    "description",
    "isSolved",
    "timestamp",
    "received_at",
    "updated_at",
    "kafka_partition",
    "kafka_offset",
    "session_seq",
)
SESSION_FIELDS: Final = ("id", "issue", "seq", "status", "opened_at", "closed_at")

#: ``GET /issues`` counts matching rows up to this many, never more (``total_capped`` says so): a
#: ``COUNT(*)`` over millions of rows on every page is a full index scan. Declared with the answer it
#: describes (``consumer_runtime.answers.IssuePage``).
COUNT_CAP: Final = ISSUE_COUNT_CAP
#: On MySQL (which has no ``max_statement_time``) reads carry this optimizer hint; MariaDB ignores it.
_MYSQL_READ_LIMIT: Final = "/*+ MAX_EXECUTION_TIME({ms}) */"

_MIGRATION_NAME: Final = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
_MIGRATION_LOCK: Final = "issue_ingestor_schema_migration"


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    def statements(self) -> list[str]:
        """Statements split at ``;`` ending a line; ``--`` comment lines dropped."""
        lines = [ln for ln in self.sql.splitlines() if not ln.strip().startswith("--")]
        parts = re.split(r";\s*$", "\n".join(lines), flags=re.MULTILINE)
        return [p.strip() for p in parts if p.strip()]


def bundled_migrations() -> list[Migration]:
    """The ``migrations/NNNN_name.sql`` files shipped with the package, in version order."""
    found = []
    for entry in resources.files("issue_ingestor").joinpath("migrations").iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"duplicate migration versions: {versions}")
    return found


def _multi_row(cur: Any, statement: str, rows: Sequence[Sequence[Any]]) -> list[str]:
    """``statement`` (``INSERT ... VALUES (%s, ...) ON DUPLICATE KEY UPDATE ...``) for all ``rows``, as few
    multi-row statements of at most ``MAX_PACKET`` characters as fit (what asyncmy's ``executemany`` sends),
    the values escaped by the connection (``mogrify``)."""
    if not rows:
        return []
    head, rest = statement.split(" VALUES ", 1)
    values, tail = rest.split(") ", 1)
    values, tail = values + ")", " " + tail
    prefix = f"{head} VALUES "
    out: list[str] = []
    chunk: list[str] = []
    size = len(prefix) + len(tail)
    for row in rows:
        literal = cur.mogrify(values, row)
        if chunk and size + len(literal) + 1 > MAX_PACKET:
            out.append(prefix + ",".join(chunk) + tail)
            chunk, size = [], len(prefix) + len(tail)
        chunk.append(literal)
        size += len(literal) + 1
    out.append(prefix + ",".join(chunk) + tail)
    return out


async def _run(cur: Any, sql: str) -> None:
    """Execute a multi-statement packet and read every result (an error in any statement raises)."""
    await cur.execute(sql)
    while await cur.nextset():
        pass


def utc_now_naive() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _iso(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_timestamp(value)
    return value


class IssueStore:
    """The only way to MySQL; the consumer's sink over it is :class:`issue_ingestor.sink.IssueSink`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._pool: Any = None
        self._lock = asyncio.Lock()
        self._schema_lock = asyncio.Lock()
        self.schema_ready = not settings.db_migrate

    # ------------------------------------------------------------------ lifecycle
    def _connect_kwargs(self) -> dict[str, Any]:
        host, port = self.settings.mysql_address
        return {
            "host": host,
            "port": port,
            "user": self.settings.db_username,
            "password": self.settings.db_password.get_secret_value(),
            "db": self.settings.db_name,
            "charset": "utf8mb4",
            "autocommit": False,
            "connect_timeout": self.settings.db_connect_timeout_s,
            "init_command": "SET time_zone = '+00:00', sql_mode = 'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION'"
            # MariaDB only (MySQL reads a comment): the server ends any statement after this many seconds
            f" /*M!100108 , max_statement_time = {self.settings.db_statement_timeout_s:g} */",
            "ssl": self.settings.db_ssl_context(),
        }

    async def _get_pool(self) -> Any:
        """The pool, created on first use (so the service starts, not ready, while MySQL is down)."""
        if self._pool is None:
            async with self._lock:
                if self._pool is None:
                    self._pool = await asyncmy.create_pool(
                        minsize=0,
                        maxsize=self.settings.db_pool_size,
                        pool_recycle=3600,
                        **self._connect_kwargs(),
                    )
        return self._pool

    async def open(self) -> None:
        """Create the pool and apply pending migrations. Raises when MySQL cannot be reached."""
        await self._get_pool()
        await self.ensure_schema()

    async def ensure_schema(self) -> None:
        """Migrate once per process (retried by the caller until it succeeds: MySQL may start later)."""
        if self.schema_ready:
            return
        async with self._schema_lock:
            if not self.schema_ready:
                await self.timed(self.migrate())
                self.schema_ready = True

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pool.wait_closed(), 5)

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[Any]:
        """A pooled connection; on any error it is closed (never handed out again half-broken)."""
        pool = await self._get_pool()
        conn = await asyncio.wait_for(pool.acquire(), self.settings.db_connect_timeout_s * 2)
        try:
            yield conn
        except BaseException:
            conn.close()
            raise
        finally:
            pool.release(conn)

    def _read_hint(self) -> str:
        return _MYSQL_READ_LIMIT.format(ms=int(self.settings.db_statement_timeout_s * 1000))

    async def timed(self, coro: Any) -> Any:
        return await asyncio.wait_for(coro, self.settings.db_statement_timeout_s)

    # ------------------------------------------------------------------ migrations
    async def migrate(self, migrations: Sequence[Migration] | None = None) -> list[int]:
        """Apply pending migrations in order, under a server-side lock (replicas may start together)."""
        todo = list(migrations) if migrations is not None else bundled_migrations()
        applied_now: list[int] = []
        async with self.connection() as conn, conn.cursor() as cur:
            await conn.autocommit(True)
            await cur.execute("SELECT GET_LOCK(%s, 60)", (_MIGRATION_LOCK,))
            (got,) = await cur.fetchone()
            if got != 1:
                raise RuntimeError("could not take the schema migration lock within 60 s")
            try:
                # look before creating: CREATE ... IF NOT EXISTS on an existing table logs a server warning
                await cur.execute(
                    "SELECT 1 FROM information_schema.TABLES "
                    "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'schema_version'"
                )
                if not await cur.fetchall():
                    await cur.execute(
                        "CREATE TABLE IF NOT EXISTS schema_version ("
                        " version INT NOT NULL PRIMARY KEY, name VARCHAR(255) NOT NULL,"
                        " applied_at DATETIME(6) NOT NULL"
                        ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci"
                    )
                await cur.execute("SELECT version FROM schema_version")
                done = {int(row[0]) for row in await cur.fetchall()}
                for migration in todo:
                    if migration.version in done:
                        continue
                    for statement in migration.statements():
                        await cur.execute(statement)
                    await cur.execute(
                        "INSERT INTO schema_version (version, name, applied_at) VALUES (%s, %s, %s)",
                        (migration.version, migration.name, utc_now_naive()),
                    )
                    applied_now.append(migration.version)
                    log.info("schema migration applied", version=migration.version, name=migration.name)
            finally:
                await cur.execute("SELECT RELEASE_LOCK(%s)", (_MIGRATION_LOCK,))
                await cur.fetchall()
                await conn.autocommit(False)
        return applied_now

    async def schema_versions(self) -> list[int]:
        async with self.connection() as conn, conn.cursor() as cur:
            await cur.execute("SELECT version FROM schema_version ORDER BY version")
            rows = await cur.fetchall()
            await conn.commit()
        return [int(r[0]) for r in rows]

    # ------------------------------------------------------------------ readiness and the batch write
    async def ping(self) -> None:
        """Readiness: the schema is migrated and a pooled connection answers ``SELECT 1``."""
        await self.ensure_schema()
        async with self.connection() as conn, conn.cursor() as cur:
            await self.timed(cur.execute("SELECT 1"))
            await cur.fetchall()
            await conn.commit()

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Any]:
        """The batch transaction on a pooled connection: yields its cursor; rolls back on any error.

        Nothing is sent here: :meth:`load_state` starts the transaction (READ COMMITTED) and :meth:`apply`
        ends it with its COMMIT. Leaving without either commits what is open. With tracing on it is one
        CLIENT span (asyncmy has no instrumentation), a child of the batch's span."""
        span = tracing.client_span(
            "mysql transaction", **{"db.system": "mysql", "db.namespace": self.settings.db_name}
        )
        with span:
            async with self._transaction() as cur:
                yield cur

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[Any]:
        async with self.connection() as conn, conn.cursor() as cur:
            try:
                yield cur
                if conn.get_transaction_status():
                    await conn.commit()
            except BaseException:
                with contextlib.suppress(Exception):
                    await conn.rollback()
                raise

    async def apply(self, cur: Any, plan: WritePlan) -> None:
        """The plan's multi-row upserts and the COMMIT, in the transaction of ``cur``: one packet (several
        for a plan larger than ``MAX_PACKET``), i.e. one round trip.

        The statements run in order (``ChatbotIssue`` first: the other two reference it) and the server stops
        at the first error, which is raised here, before the COMMIT ran."""
        now = utc_now_naive()
        statements = [
            *_multi_row(cur, UPSERT_ISSUES, [row.params(now) for row in plan.issues]),
            *_multi_row(cur, INSERT_EVENTS, plan.events),
            *_multi_row(cur, UPSERT_SESSIONS, [s.params() for s in plan.sessions]),
            "COMMIT",
        ]
        packet: list[str] = []
        size = 0
        for statement in statements:
            if packet and size + len(statement) + 1 > MAX_PACKET:
                await _run(cur, ";\n".join(packet))
                packet, size = [], 0
            packet.append(statement)
            size += len(statement) + 1
        await _run(cur, ";\n".join(packet))

    async def load_state(self, cur: Any, ids: list[str]) -> dict[str, StoredIssue]:
        """Start the transaction, lock the batch's issues and read their rows and latest sessions (one round
        trip). Their histories are read by :meth:`load_history`, only where the planner needs them."""
        if not ids:
            await cur.execute(_START)
            return {}
        marks = ", ".join(["%s"] * len(ids))
        await cur.execute(f"{_START};\n{_LOAD_ROWS.format(marks)}", ids)
        await cur.nextset()
        stored: dict[str, StoredIssue] = {}
        for r in await cur.fetchall():
            row = IssueRow(
                issue=r[0],
                process_type=r[1],
                mode_type=r[2],
                mode_log_id=r[3],
                description=r[4],
                is_solved=bool(r[5]),
                timestamp=r[6],
                kafka_partition=int(r[7]),
                kafka_offset=int(r[8]),
                session_seq=int(r[9]),
                version=r[10],
                description_version=r[11],
            )
            tail = SessionRow(r[0], row.session_seq, r[12], r[13], r[14]) if r[12] is not None else None
            stored[r[0]] = StoredIssue(row, last_session=tail, complete=False)
        return stored

    async def load_history(
        self, cur: Any, stored: dict[str, StoredIssue], ids: Sequence[str]
    ) -> dict[str, StoredIssue]:
        """``stored`` with the whole event history of the issues ``ids`` (locked by :meth:`load_state`)."""
        if not ids:
            return stored
        await cur.execute(_LOAD_HISTORY.format(", ".join(["%s"] * len(ids))), list(ids))
        history: dict[str, list[tuple[str, bool]]] = {}
        for issue, version, solved in await cur.fetchall():
            history.setdefault(issue, []).append((version, bool(solved)))
        out = dict(stored)
        for issue in ids:
            out[issue] = StoredIssue(stored[issue].row, tuple(history.get(issue, ())))
        return out

    # ------------------------------------------------------------------ queries (HTTP API)
    async def list_issues(
        self,
        *,
        limit: int,
        offset: int,
        process_type: str | None = None,
        mode_type: str | None = None,
        is_solved: bool | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> tuple[int, list[dict[str, Any]], bool]:
        """Issues newest first (event time), filtered; returns (total matching up to ``COUNT_CAP``, one page,
        whether there are more than ``COUNT_CAP``)."""
        where: list[str] = []
        args: list[Any] = []
        if process_type is not None:
            where.append("processType = %s")
            args.append(process_type)
        if mode_type is not None:
            where.append("modeType = %s")
            args.append(mode_type)
        if is_solved is not None:
            where.append("isSolved = %s")
            args.append(is_solved)
        if since is not None:
            where.append("`timestamp` >= %s")
            args.append(since)
        if until is not None:
            where.append("`timestamp` < %s")
            args.append(until)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        columns = ", ".join(f"`{c}`" for c in ISSUE_FIELDS)
        hint = self._read_hint()
        async with self.connection() as conn, conn.cursor() as cur:
            await self.timed(
                cur.execute(
                    f"SELECT {hint} COUNT(*) FROM (SELECT 1 FROM ChatbotIssue{clause} LIMIT %s) AS capped",
                    [*args, COUNT_CAP + 1],
                )
            )
            (total,) = await cur.fetchone()
            await self.timed(
                cur.execute(
                    f"SELECT {hint} {columns} FROM ChatbotIssue{clause} "
                    "ORDER BY `timestamp` DESC, issue ASC LIMIT %s OFFSET %s",
                    [*args, limit, offset],
                )
            )
            rows = await cur.fetchall()
            await conn.commit()
        capped = int(total) > COUNT_CAP
        return min(int(total), COUNT_CAP), [self._issue_dict(r) for r in rows], capped

    async def get_issue(self, issue_id: str) -> dict[str, Any] | None:
        columns = ", ".join(f"`{c}`" for c in ISSUE_FIELDS)
        async with self.connection() as conn, conn.cursor() as cur:
            await self.timed(cur.execute(f"SELECT {columns} FROM ChatbotIssue WHERE issue = %s", (issue_id,)))
            row = await cur.fetchone()
            await conn.commit()
        return self._issue_dict(row) if row else None

    async def delete_issue(self, issue_id: str) -> int | None:
        """Delete an issue and its sessions; returns how many sessions went with it, None if unknown."""
        async with self.connection() as conn, conn.cursor() as cur:
            try:
                await conn.begin()
                await cur.execute("SELECT issue FROM ChatbotIssue WHERE issue = %s FOR UPDATE", (issue_id,))
                if await cur.fetchone() is None:
                    await conn.rollback()
                    return None
                await cur.execute("DELETE FROM ChatbotSession WHERE issue = %s", (issue_id,))
                sessions = int(cur.rowcount)
                await cur.execute("DELETE FROM ChatbotIssue WHERE issue = %s", (issue_id,))
                await conn.commit()
            except BaseException:
                with contextlib.suppress(Exception):
                    await conn.rollback()
                raise
        return sessions

    async def list_sessions(self, issue_id: str) -> list[dict[str, Any]]:
        columns = ", ".join(SESSION_FIELDS)
        async with self.connection() as conn, conn.cursor() as cur:
            await self.timed(
                cur.execute(
                    f"SELECT {columns} FROM ChatbotSession WHERE issue = %s ORDER BY seq", (issue_id,)
                )
            )
            rows = await cur.fetchall()
            await conn.commit()
        return [{k: _iso(v) for k, v in zip(SESSION_FIELDS, row, strict=True)} for row in rows]

    @staticmethod
    def _issue_dict(row: Sequence[Any]) -> dict[str, Any]:
        out = {k: _iso(v) for k, v in zip(ISSUE_FIELDS, row, strict=True)}
        out["isSolved"] = bool(out["isSolved"])
        return out
