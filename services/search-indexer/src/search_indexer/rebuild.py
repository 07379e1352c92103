"""Rebuild the index by replaying the message topics from the beginning (event sourcing).

1. create a new index ``<alias>-<stamp>`` (refresh off while loading);
2. snapshot the high watermark of every partition of the three topics (the *target*; ``total`` = events
   below it), start a second :class:`ConsumerRunner` in its own, fresh group (``auto_offset_reset=earliest``)
   writing into the new index with the same merge-write as the live consumer;
3. when the replay has committed up to the target on every partition, turn refresh back on, refresh, and
   **atomically** move the alias (one ``update_aliases`` with remove+add) — searches keep hitting the old
   index until that instant and the complete new one after it;
4. snapshot the high watermarks again and let the replay catch up to them: events another writer stored in
   the *old* index just before the swap are replayed into the new one (the merge makes the overlap harmless);
5. stop the replay consumer. The old index is **kept** (marked ``_meta.retired_at``) until an admin deletes
   it (``DELETE /admin/indices/{name}``) or ``REBUILD_KEEP_OLD_INDEX_S`` has passed (default 7 days).

**Guards** (a rebuild by replay must never shrink the index; ``force=true`` overrides both):

- refused at start (409, naming the partitions) when any partition's log start offset is above 0: the
  topic no longer holds the whole history (retention, deleted records), so the replay would lose documents;
- the alias moves only when the new index holds at least as many documents (tombstones included) as the
  current one held before the replay started; otherwise the rebuild fails and the new index is deleted.

High watermarks come from a group-less consumer's fetch responses (``consumer.highwater``), not from
``end_offsets()``, which the local Tansu broker answers wrongly (see README "stand-in differences").
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from aiokafka import TopicPartition
from consumer_runtime import ConsumerRunner, State, ensure_topics, get_logger
from consumer_runtime.kafka_clients import reader
from consumer_runtime.settings import KafkaSettings

from search_indexer import metrics as m
from search_indexer.config import Settings
from search_indexer.sink import MessageSink
from search_indexer.store import MessageStore

log = get_logger(__name__)

Offsets = dict[TopicPartition, tuple[int, int]]  # partition → (log start, high watermark)


class RebuildError(RuntimeError):
    pass


class RebuildBusyError(RebuildError):
    pass


class RebuildRefusedError(RebuildError):
    """A guard refused the rebuild (``force=true`` overrides it)."""


def truncated_partitions(offsets: Offsets) -> list[str]:
    """``topic[partition] (log start N)`` of every partition whose history no longer starts at offset 0."""
    return [
        f"{tp.topic}[{tp.partition}] (log start {begin})"
        for tp, (begin, _high) in sorted(offsets.items(), key=lambda item: (item[0].topic, item[0].partition))
        if begin > 0
    ]


def check_complete_history(offsets: Offsets, *, force: bool) -> None:
    """Refuse a replay that cannot see every event ever published (unless ``force``)."""
    missing = truncated_partitions(offsets)
    if missing and not force:
        raise RebuildRefusedError(
            "the message topics no longer hold their whole history, so a replay would build a smaller index: "
            f"{', '.join(missing)}; the current index is kept (force=true rebuilds anyway)"
        )


def check_not_smaller(new_index: str, new_docs: int, old_docs: int, *, force: bool) -> None:
    """Refuse to swap in an index that holds fewer documents than the current one (unless ``force``)."""
    if new_docs < old_docs and not force:
        raise RebuildRefusedError(
            f"the new index {new_index} holds {new_docs} documents but the current one held {old_docs} "
            "(tombstones included): alias not moved, new index deleted (force=true swaps anyway)"
        )


async def partition_offsets(
    settings: KafkaSettings, topics: Sequence[str], *, timeout_s: float = 20.0
) -> Offsets:
    """(log start offset, high watermark) of every partition of ``topics``, from a group-less consumer.

    The high watermark is read from fetch responses (``consumer.highwater``), which is correct on every
    broker we run against, unlike ``end_offsets()`` on Tansu.
    """
    async with reader(settings) as consumer:
        deadline = time.monotonic() + timeout_s
        parts: list[TopicPartition] = []
        for topic in topics:
            while True:
                await consumer.topics()  # refresh metadata
                found = consumer.partitions_for_topic(topic)
                if found:
                    parts.extend(TopicPartition(topic, p) for p in sorted(found))
                    break
                if time.monotonic() > deadline:
                    raise RebuildError(f"topic {topic!r} has no partitions (does it exist?)")
                await asyncio.sleep(0.2)
        consumer.assign(parts)
        begins = await consumer.beginning_offsets(parts)
        await consumer.seek_to_beginning(*parts)
        while any(consumer.highwater(tp) is None for tp in parts):
            if time.monotonic() > deadline:
                missing = [f"{tp.topic}[{tp.partition}]" for tp in parts if consumer.highwater(tp) is None]
                raise RebuildError(f"no high watermark within {timeout_s}s for {', '.join(missing)}")
            await consumer.getmany(timeout_ms=200, max_records=1)
        return {tp: (int(begins[tp]), int(consumer.highwater(tp))) for tp in parts}


def replay_progress(target: Offsets, committed: Mapping[TopicPartition, int]) -> tuple[int, int, bool]:
    """(events replayed, events to replay, caught up) of ``committed`` offsets against ``target``."""
    replayed = total = 0
    done = True
    for tp, (begin, high) in target.items():
        at = committed.get(tp, begin)
        total += max(0, high - begin)
        replayed += max(0, min(at, high) - begin)
        if at < high:
            done = False
    return replayed, total, done


class RebuildManager:
    """Runs at most one rebuild at a time in this process and reports its progress."""

    def __init__(self, settings: Settings, store: MessageStore) -> None:
        self.settings = settings
        self.store = store
        self._task: asyncio.Task[None] | None = None
        self._runner: ConsumerRunner | None = None
        self._target: Offsets = {}
        self._committed: dict[TopicPartition, int] = {}
        self._status: dict[str, Any] = {"state": "idle"}

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def status(self) -> dict[str, Any]:
        st = dict(self._status)
        runner = self._runner
        if self.running and runner is not None:
            self._observe(runner)
            st["consumer"] = {
                "state": runner.state.value,
                "counts": runner.counts.model_dump(),
                "last_error": runner.last_error.model_dump() if runner.last_error else None,
            }
        return st

    async def start(self, *, force: bool = False) -> dict[str, Any]:
        """Start a rebuild. :class:`RebuildRefusedError` when the topics lost history (unless ``force``)."""
        if not self.settings.kafka_enabled:
            raise RebuildError("KAFKA_ENABLED=false: there is no event log to replay")
        if self.running:
            raise RebuildBusyError(f"rebuild {self._status.get('id')} is already {self._status.get('state')}")
        topics = [spec.name for spec in self.settings.topic_specs()]
        if self.settings.kafka_auto_create_topics:
            await ensure_topics(self.settings, topics)
        check_complete_history(await partition_offsets(self.settings, topics), force=force)
        if self.running:  # another start() won the race while we looked at the topics
            raise RebuildBusyError(f"rebuild {self._status.get('id')} is already {self._status.get('state')}")
        rebuild_id = uuid.uuid4().hex[:8]
        self._target = {}
        self._committed = {}
        self._status = {
            "id": rebuild_id,
            "state": "starting",
            "alias": self.store.alias,
            "new_index": self.store.new_index_name(),
            "old_indices": await self.store.alias_indices(),
            "group": f"{self.settings.kafka_consumer_group}-rebuild-{rebuild_id}",
            "topics": topics,
            "force": force,
            "old_documents": None,
            "kept_indices": [],
            "phase": "replay",
            "replayed": 0,
            "total": None,
            "progress": 0.0,
            "started_at": time.time(),
            "swapped_at": None,
            "finished_at": None,
            "rate_eps": None,
            "documents": None,
            "error": None,
        }
        self._task = asyncio.create_task(self._run(), name=f"rebuild:{rebuild_id}")
        return self.status()

    async def wait(self, timeout_s: float | None = None) -> dict[str, Any]:
        task = self._task
        if task is not None:
            await asyncio.wait_for(asyncio.shield(task), timeout_s)
        return self.status()

    async def close(self) -> None:
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def sweep_retired(self) -> list[str]:
        """Delete the retired indexes older than ``REBUILD_KEEP_OLD_INDEX_S``; returns the deleted ones."""
        keep = self.settings.rebuild_keep_old_index_s
        now = time.time()
        deleted = []
        for name, retired_at in (await self.store.retired_indices()).items():
            if now - retired_at >= keep:
                await self.store.delete_index(name)
                deleted.append(name)
        if deleted:
            log.info("retired indexes deleted", indices=deleted, keep_s=keep)
        return deleted

    async def sweep_forever(self, every_s: float = 3600.0) -> None:
        """Background task of the app: sweep now and then (errors are logged, never fatal)."""
        while True:
            try:
                await self.sweep_retired()
            except Exception as exc:
                log.warning("sweeping retired indexes failed", error=repr(exc))
            await asyncio.sleep(max(1.0, min(every_s, self.settings.rebuild_keep_old_index_s or every_s)))

    # ------------------------------------------------------------------------------------------ the run
    async def _run(self) -> None:
        st = self._status
        s = self.settings
        new_index: str = st["new_index"]
        swapped = False
        started = time.monotonic()
        deadline = started + s.rebuild_timeout_s
        runner: ConsumerRunner | None = None
        log.info("rebuild started", rebuild=st["id"], new_index=new_index, group=st["group"])
        try:
            st["state"] = "creating_index"
            await self.store.create_index(new_index, refresh_interval="-1")
            if s.kafka_auto_create_topics:
                await ensure_topics(s, st["topics"])
            st["state"] = "replaying"
            # counted before the target is taken: everything in it came from events below the target
            if st["old_indices"]:
                st["old_documents"] = await self.store.count(visible_only=False)
            self._target = await partition_offsets(s, st["topics"])
            check_complete_history(self._target, force=st["force"])
            runner = ConsumerRunner(
                name="search-indexer-rebuild",
                settings=s,
                topics=s.topic_specs(),
                sink=MessageSink(self.store, index=new_index),
                group_id=st["group"],
                batch_size=s.rebuild_batch_size,
                max_batch=s.rebuild_batch_size,  # a replay is all backlog: REBUILD_BATCH_SIZE is the bulk
                auto_offset_reset="earliest",
            )
            self._runner = runner
            await runner.start()
            await self._catch_up(runner, deadline)
            replay_s = time.monotonic() - started
            st["rate_eps"] = round(st["replayed"] / replay_s, 1) if replay_s > 0 else None

            st["state"] = "swapping"
            await self.store.set_refresh_interval(new_index, s.search_index_refresh_interval)
            await self.store.refresh(new_index)
            new_documents = await self.store.count(new_index, visible_only=False)
            check_not_smaller(new_index, new_documents, st["old_documents"] or 0, force=st["force"])
            st["old_indices"] = await self.store.swap_alias(new_index)
            swapped = True
            st["swapped_at"] = time.time()

            st["state"] = "catching_up"
            st["phase"] = "catch_up"
            self._target = await partition_offsets(s, st["topics"])
            await self._catch_up(runner, deadline)

            st["state"] = "cleaning_up"
            await runner.close()
            for old in st["old_indices"]:
                await self.store.retire_index(old)
            st["kept_indices"] = list(st["old_indices"])
            await self.sweep_retired()
            st["kept_indices"] = [i for i in st["kept_indices"] if i in await self.store.retired_indices()]
            st["documents"] = await self.store.count(new_index)
            st["state"] = "done"
            m.REBUILDS.labels(outcome="done").inc()
            log.info(
                "rebuild done",
                rebuild=st["id"],
                new_index=new_index,
                replayed=st["replayed"],
                documents=st["documents"],
                rate_eps=st["rate_eps"],
            )
        except BaseException as exc:
            error = "cancelled" if isinstance(exc, asyncio.CancelledError) else f"{type(exc).__name__}: {exc}"
            m.REBUILDS.labels(outcome="failed").inc()
            log.error("rebuild failed", rebuild=st["id"], error=error, swapped=swapped)
            if runner is not None:
                with contextlib.suppress(Exception):
                    await runner.close()
            if not swapped:
                with contextlib.suppress(Exception):
                    await self.store.delete_index(new_index)
            else:
                error += f" (alias already on {new_index}; old index kept: {st['old_indices']})"
            st["error"] = error
            st["state"] = "failed"  # only now: the clean-up above is done when a client sees it
            if not isinstance(exc, Exception):
                raise
        finally:
            st["finished_at"] = time.time()
            self._runner = None

    def _observe(self, runner: ConsumerRunner) -> tuple[int, int, bool]:
        for part in runner.status().assignment:
            committed = part.committed
            if committed is not None:
                tp = TopicPartition(part.topic, part.partition)
                self._committed[tp] = max(committed, self._committed.get(tp, 0))
        replayed, total, done = replay_progress(self._target, self._committed)
        st = self._status
        st["replayed"], st["total"] = replayed, total
        st["progress"] = round(replayed / total, 4) if total else 1.0
        m.REBUILD_REPLAYED.set(replayed)
        m.REBUILD_TOTAL.set(total)
        return replayed, total, done

    async def _catch_up(self, runner: ConsumerRunner, deadline: float) -> None:
        while True:
            _, _, done = self._observe(runner)
            if done:
                return
            if runner.state in (State.STOPPED, State.DISABLED):
                raise RebuildError(f"replay consumer {runner.state.value}: {runner.last_error}")
            if time.monotonic() > deadline:
                raise RebuildError(
                    f"replay did not catch up within REBUILD_TIMEOUT_S={self.settings.rebuild_timeout_s}s "
                    f"({self._status['replayed']}/{self._status['total']}); last error: {runner.last_error}"
                )
            await asyncio.sleep(0.2)
