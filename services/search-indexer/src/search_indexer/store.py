"""The only Elasticsearch adapter: index/alias lifecycle, the idempotent merge-write, search and get.

**Write protocol (per batch, per document).** A batch's events are merged per message id
(:func:`handlers.fold`), then written with optimistic concurrency so concurrent writers (another replica, the
rebuild replay) never lose each other's events:

1. ids whose batch delta contains a ``message.created`` are written optimistically with ``op_type=create``
   (the normal case: a new message; no read needed);
2. the others are read first with one ``mget`` (through the alias); the stored state is merged with the delta
   and written back with ``if_seq_no``/``if_primary_term`` to the concrete index the read came from, or not at
   all when the merge changes nothing (a stale or redelivered event);
3. all writes of a round go out as bulk requests of at most ``SEARCH_BULK_MAX_BYTES`` (10 MiB, below
   Elasticsearch's ``http.max_content_length``; ``async_streaming_bulk`` splits by bytes only). Per item:
   ``409`` → read, merge and write again in the next round; ``429``/``5xx`` → again after a backoff; any other
   error → the records behind that document are returned as permanent failures (→ DLQ). A whole request
   answered ``413`` (too large for the server) is split: the byte limit halves for the rest of the write and
   the unsent documents go again; a document that gets ``413`` on its own is refused for good (→ DLQ).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from consumer_runtime import get_logger
from elasticsearch import ApiError, AsyncElasticsearch, NotFoundError
from elasticsearch.helpers import async_streaming_bulk

from search_indexer import handlers as h
from search_indexer import metrics as m
from search_indexer.config import Settings

log = get_logger(__name__)

_MAX_CONFLICT_ROUNDS: Final = 10
_MIN_CHUNK_BYTES: Final = 1024


class TransientWriteError(RuntimeError):
    """The write could not complete now (retryable items kept failing, or conflicts did not settle)."""


class ItemError(Exception):
    """A document Elasticsearch refuses for good (e.g. a mapping error); its records go to the DLQ."""

    def __init__(self, message_id: str, status: int, error: Any) -> None:
        self.message_id = message_id
        self.status = status
        self.reason = f"elasticsearch refused document {message_id!r} ({status}): {h.describe_error(error)}"
        super().__init__(self.reason)


class AliasConflictError(RuntimeError):
    """The alias name is taken by a concrete index (e.g. one auto-created before this service ran)."""


@dataclass
class _Known:
    """What a read returned for one id: the stored state (None = absent) and its concurrency token."""

    state: h.MessageState | None
    index: str
    seq_no: int | None = None
    primary_term: int | None = None


@dataclass
class WriteResult:
    errors: dict[str, ItemError] = field(default_factory=dict)
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    conflicts: int = 0
    retried: int = 0
    rounds: int = 0
    split: int = 0  # bulk requests answered 413 (too large) and split


def _action_bytes(action: Mapping[str, Any]) -> int:
    """Roughly what one bulk action costs on the wire: its source (the action line is small)."""
    return len(json.dumps(action.get("_source"), ensure_ascii=False, default=str).encode("utf-8")) + 200


class MessageStore:
    """Elasticsearch access for the ``messages`` alias and the indexes behind it."""

    def __init__(self, client: AsyncElasticsearch, settings: Settings) -> None:
        self.es = client
        self.settings = settings
        self.alias = settings.search_index_alias

    # ---------------------------------------------------------------------------------------- lifecycle
    @classmethod
    def from_settings(cls, settings: Settings) -> MessageStore:
        return cls(AsyncElasticsearch(**settings.es_kwargs()), settings)

    async def close(self) -> None:
        await self.es.close()

    async def ping(self) -> None:
        """Readiness: the cluster answers and the alias exists."""
        if not (await self.es.indices.exists_alias(name=self.alias)).body:
            raise RuntimeError(f"alias {self.alias!r} does not exist")

    def new_index_name(self, suffix: str | None = None) -> str:
        stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime())
        return f"{self.alias}-{suffix or stamp + '-' + format(random.getrandbits(16), '04x')}"

    async def ensure_alias(self) -> list[str]:
        """Create the first index behind the alias if there is none (safe to race); the alias's indexes."""
        current = await self.alias_indices()
        if current:
            return current
        if (await self.es.indices.exists(index=self.alias)).body:
            raise AliasConflictError(
                f"{self.alias!r} is a concrete index, not an alias: delete it (or rename SEARCH_INDEX_ALIAS) "
                "and rebuild the index by replay"
            )
        first = self.new_index_name("000001")
        try:
            await self.create_index(first, alias=True)
        except Exception as exc:
            if "resource_already_exists" not in str(exc):
                raise
        return await self.alias_indices()

    async def create_index(
        self, name: str, *, alias: bool = False, refresh_interval: str | None = None
    ) -> None:
        body = h.index_body(
            shards=self.settings.search_index_shards,
            replicas=self.settings.search_index_replicas,
            refresh_interval=refresh_interval or self.settings.search_index_refresh_interval,
        )
        await self.es.indices.create(
            index=name,
            settings=body["settings"],
            mappings=body["mappings"],
            aliases={self.alias: {}} if alias else None,
        )
        log.info("index created", index=name, alias=self.alias if alias else None)

    async def alias_indices(self) -> list[str]:
        resp = await self.es.options(ignore_status=404).indices.get_alias(name=self.alias)
        if resp.meta.status == 404:
            return []
        return sorted(name for name in resp.body if isinstance(resp.body.get(name), Mapping))

    async def swap_alias(self, new_index: str) -> list[str]:
        """Point the alias at ``new_index`` only, in one atomic ``update_aliases``; returns the old ones."""
        old = [i for i in await self.alias_indices() if i != new_index]
        actions: list[dict[str, Any]] = [{"remove": {"index": i, "alias": self.alias}} for i in old]
        actions.append({"add": {"index": new_index, "alias": self.alias}})
        await self.es.indices.update_aliases(actions=actions)
        log.info("alias swapped", alias=self.alias, new=new_index, old=old)
        return old

    async def delete_index(self, name: str) -> None:
        await self.es.options(ignore_status=404).indices.delete(index=name)

    async def retire_index(self, name: str) -> None:
        """Mark an index the alias left (``_meta.retired_at``, epoch seconds): kept, swept later."""
        await self.es.indices.put_mapping(index=name, meta={"retired_at": time.time()})
        log.info("index retired (kept)", index=name)

    async def retired_indices(self) -> dict[str, float]:
        """``{name: retired_at}`` of this alias's indexes that a rebuild retired (never the alias's own)."""
        resp = await self.es.options(ignore_status=404).indices.get_mapping(index=f"{self.alias}-*")
        if resp.meta.status == 404:
            return {}
        current = set(await self.alias_indices())
        out: dict[str, float] = {}
        for name, body in resp.body.items():
            retired_at = ((body or {}).get("mappings") or {}).get("_meta", {}).get("retired_at")
            if name not in current and isinstance(retired_at, int | float):
                out[name] = float(retired_at)
        return out

    async def set_refresh_interval(self, index: str, value: str) -> None:
        await self.es.indices.put_settings(index=index, settings={"index": {"refresh_interval": value}})

    async def refresh(self, index: str | None = None) -> None:
        await self.es.indices.refresh(index=index or self.alias)

    async def count(self, index: str | None = None, *, visible_only: bool = True) -> int:
        query: dict[str, Any] = (
            {"bool": {"must_not": [{"term": {"deleted": True}}]}} if visible_only else {"match_all": {}}
        )
        resp = await self.es.count(index=index or self.alias, query=query)
        return int(resp["count"])

    # -------------------------------------------------------------------------------------------- write
    async def write(self, deltas: Mapping[str, h.MessageState], *, index: str | None = None) -> WriteResult:
        """Merge ``deltas`` (per message id) into the index behind ``index`` (default: the alias)."""
        target = index or self.alias
        result = WriteResult()
        pending = dict(deltas)
        known: dict[str, _Known] = {}
        to_read = {mid for mid, delta in pending.items() if not delta.has_create or delta.deleted}
        conflict_rounds = 0
        retry_rounds = 0
        max_bytes = self.settings.search_bulk_max_bytes
        while pending:
            result.rounds += 1
            if to_read:
                known.update(await self._read(sorted(to_read), target))
                to_read.clear()
            ids, actions = self._actions(pending, known, target, result)
            if not actions:
                break
            conflicted: set[str] = set()
            retry: dict[str, Any] = {}
            started = time.perf_counter()
            try:
                async for ok, item in async_streaming_bulk(
                    self.es,
                    actions,
                    chunk_size=len(actions),
                    max_chunk_bytes=max_bytes,
                    raise_on_error=False,
                    raise_on_exception=True,
                    max_retries=0,
                ):
                    del ok
                    mid = ids.pop(0)
                    op, info = next(iter(item.items()))
                    del op
                    status = int(info.get("status", 0))
                    outcome = h.classify_item(status, info.get("error"))
                    m.ITEMS.labels(outcome=outcome).inc()
                    if outcome == "ok":
                        if info.get("result") == "created":
                            result.created += 1
                        else:
                            result.updated += 1
                        del pending[mid]
                    elif outcome == "conflict":
                        conflicted.add(mid)
                    elif outcome == "retry":
                        retry[mid] = info.get("error")
                    else:
                        result.errors[mid] = ItemError(mid, status, info.get("error"))
                        del pending[mid]
            except ApiError as exc:
                if exc.meta.status != 413 or not ids:
                    raise
                # The request starting at ids[0] was too large for the server: never resend it as is.
                first = ids[0]
                alone = _action_bytes(actions[len(actions) - len(ids)]) >= max_bytes
                if alone or max_bytes <= _MIN_CHUNK_BYTES:
                    result.errors[first] = ItemError(
                        first, 413, "document too large for the server's http.max_content_length"
                    )
                    del pending[first]
                else:
                    max_bytes = max(_MIN_CHUNK_BYTES, max_bytes // 2)
                result.split += 1
                log.warning("bulk request too large (413); splitting", max_bytes=max_bytes, refused=alone)
            m.BULK_SECONDS.observe(time.perf_counter() - started)
            if conflicted:
                result.conflicts += len(conflicted)
                conflict_rounds += 1
                if conflict_rounds > _MAX_CONFLICT_ROUNDS:
                    raise TransientWriteError(
                        f"{len(conflicted)} documents kept conflicting; retrying the batch"
                    )
                to_read |= conflicted
            if retry:
                result.retried += len(retry)
                retry_rounds += 1
                if retry_rounds > self.settings.search_write_max_retries:
                    sample = next(iter(retry.items()))
                    raise TransientWriteError(
                        f"{len(retry)} bulk items still failing after {retry_rounds - 1} retries, "
                        f"e.g. {sample[0]!r}: {h.describe_error(sample[1])}"
                    )
                # The item may or may not have been applied: read again, the merge makes it idempotent.
                to_read |= set(retry)
                delay = self.settings.search_write_retry_backoff_ms / 1000 * 2 ** (retry_rounds - 1)
                await asyncio.sleep(delay * (0.5 + random.random() / 2))
        return result

    def _actions(
        self,
        pending: dict[str, h.MessageState],
        known: Mapping[str, _Known],
        target: str,
        result: WriteResult,
    ) -> tuple[list[str], list[dict[str, Any]]]:
        ids: list[str] = []
        actions: list[dict[str, Any]] = []
        for mid in list(pending):
            delta = pending[mid]
            got = known.get(mid)
            if got is None:  # optimistic: assume a new message
                action: dict[str, Any] = {"_op_type": "create", "_index": target}
                merged = delta
            else:
                merged = h.merge(got.state, delta)
                if got.state is not None and merged == got.state:
                    result.unchanged += 1  # stale or redelivered: the index already knows all of it
                    m.ITEMS.labels(outcome="unchanged").inc()
                    del pending[mid]
                    continue
                if got.state is None:
                    action = {"_op_type": "create", "_index": got.index}
                else:
                    action = {
                        "_op_type": "index",
                        "_index": got.index,
                        "if_seq_no": got.seq_no,
                        "if_primary_term": got.primary_term,
                    }
            action["_id"] = mid
            action["_source"] = h.to_source(merged)
            ids.append(mid)
            actions.append(action)
        return ids, actions

    async def _read(self, ids: Sequence[str], target: str) -> dict[str, _Known]:
        resp = await self.es.mget(index=target, ids=list(ids))
        out: dict[str, _Known] = {}
        for doc in resp["docs"]:
            mid = doc.get("_id")
            if mid is None:
                continue
            if "error" in doc:
                raise TransientWriteError(f"cannot read {mid!r}: {h.describe_error(doc['error'])}")
            index = doc.get("_index") or target
            if doc.get("found"):
                out[mid] = _Known(
                    h.from_source(mid, doc.get("_source") or {}),
                    index,
                    doc.get("_seq_no"),
                    doc.get("_primary_term"),
                )
            else:
                out[mid] = _Known(None, index)
        return out

    # ------------------------------------------------------------------------------------------- query
    async def search(self, params: h.SearchParams) -> dict[str, Any]:
        started = time.perf_counter()
        body = h.build_search(params)
        resp = await self.es.search(index=self.alias, **body)
        total, hits = h.search_hits(resp.body)
        m.SEARCH_SECONDS.observe(time.perf_counter() - started)
        return {"total": total, "offset": params.offset, "limit": params.limit, "hits": hits}

    async def get_message(self, message_id: str) -> dict[str, Any] | None:
        try:
            resp = await self.es.get(index=self.alias, id=message_id)
        except NotFoundError:
            return None
        source = resp.get("_source") or {}
        return h.to_message(source) if h.is_visible(source) else None

    async def get_source(self, message_id: str, *, index: str | None = None) -> dict[str, Any] | None:
        """The raw stored document, tombstones included (tests and diagnostics)."""
        try:
            resp = await self.es.get(index=index or self.alias, id=message_id)
        except NotFoundError:
            return None
        return dict(resp.get("_source") or {})
