"""The consumer's :class:`~consumer_runtime.Sink`: one batch of factory issue events = one MySQL transaction.

Two round trips per batch: lock the batch's issues and read their rows and latest sessions (``SELECT ... FOR
UPDATE``), plan with the pure :mod:`issue_ingestor.handlers`, then one packet with the multi-row upserts into
``ChatbotIssue``, ``ChatbotIssueEvent`` and ``ChatbotSession`` and the COMMIT. A third one reads the event
history of the issues that get a late or redelivered event (``handlers.needs_history``). The statements live
in :mod:`issue_ingestor.store`; transient errors raise, data errors are permanent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from asyncmy.errors import MySQLError, OperationalError
from consumer_runtime import Failure, PermanentError, Record
from platform_events import FactoryIssueEvent

from issue_ingestor.handlers import StoredIssue, WritePlan, issue_ids, needs_history, plan_batch, prepare
from issue_ingestor.store import PERMANENT_ERRORS, IssueStore


class IssueSink:
    def __init__(self, store: IssueStore) -> None:
        self.store = store
        self.last_plan: WritePlan | None = None

    async def ping(self) -> None:
        await self.store.ping()

    async def write(self, records: Sequence[Record[Any]], /) -> Sequence[Failure]:
        """Idempotent batch write. Transient errors raise; data errors are permanent."""
        if not records:
            return []
        try:
            await self.store.ensure_schema()
            failures: list[Failure] = await self.store.timed(self._write(records))
        except MySQLError as exc:
            code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
            if code in PERMANENT_ERRORS and not isinstance(exc, OperationalError):
                raise PermanentError(f"MySQL refused the batch: {exc}") from exc
            raise
        return failures

    async def _write(self, records: Sequence[Record[FactoryIssueEvent]]) -> list[Failure]:
        loading: asyncio.Future[dict[str, StoredIssue]] | None = None
        async with self.store.transaction() as cur:
            try:
                ids = issue_ids(records)
                # the state query is sent first; the per-event work runs while MySQL answers it
                loading = asyncio.ensure_future(self.store.load_state(cur, ids))
                await asyncio.sleep(0)
                prepared = prepare(records)
                stored = await loading
                late = needs_history(prepared, stored)
                if late:
                    stored = await self.store.load_history(cur, stored, late)
                plan = plan_batch(prepared, stored)
                await self.store.apply(cur, plan)
            except BaseException:
                if loading is not None and not loading.done():
                    loading.cancel()
                raise
        self.last_plan = plan
        return plan.failures
