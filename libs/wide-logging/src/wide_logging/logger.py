"""``WideLogger``: ``finalize(event)`` hands a wide event to a background task and returns at once.

Path of one event::

    finalize() ──put_nowait──► publish queue ──► Kafka (acks=all, 3 retries, exponential backoff)
        │ queue full                                 │ still failing
        ▼                                            ▼
    fallback queue ───────────────────────────────► MongoDB wide_events (insert_many, _id = event_id)

``MQ_ENABLED=false`` sends everything down the MongoDB path. Nothing is dropped silently: an event is only
dropped when *both* bounded queues are full (or the logger is closed), and then it is counted in
``counters.dropped`` and written in full to the process log at ERROR level.

An event may end up both in Kafka and in MongoDB (a publish that timed out but did arrive, then the
fallback): the log-sink's insert of the same ``event_id`` is a duplicate-key no-op, so it is stored once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import Mapping, MutableMapping
from dataclasses import asdict, dataclass
from typing import Any, Final

from aiokafka import AIOKafkaProducer
from platform_events import (
    LOG_EVENTS,
    EventDecodeError,
    EventEncodeError,
    WideLogEvent,
    decode,
    encode,
    format_timestamp,
    new_event_id,
    utc_now,
)
from pydantic import ValidationError
from pymongo import AsyncMongoClient

from wide_logging.config import WideLoggingConfig
from wide_logging.documents import WIDE_EVENTS, insert_documents, to_document

__all__ = ["Counters", "WideLogger"]

log = logging.getLogger("wide_logging")

_MAX_SCALAR_CHARS: Final = 1024
_FALLBACK_MAX_DELAY_S: Final = 5.0


@dataclass
class Counters:
    """What happened to the events given to :meth:`WideLogger.finalize`.

    ``published``: acknowledged by Kafka. ``fallback``: stored directly in MongoDB (MQ disabled, queue full,
    or publishing failed). ``dropped``: neither — must stay 0; every drop is also logged with the event.
    ``repaired``: events that were not valid wide events (unserialisable / too large) and were stored as a
    reduced event carrying the reason instead.
    """

    finalized: int = 0
    published: int = 0
    fallback: int = 0
    dropped: int = 0
    publish_failures: int = 0
    repaired: int = 0


class WideLogger:
    """The logging adapter. One per process; ``await start()`` at start-up, ``await close()`` at shutdown.

    ``finalize`` may be called from the event loop's thread (returns immediately) or from other threads
    (handed over thread-safely). Use :class:`wide_logging.WideEventMiddleware` for per-request events.
    """

    def __init__(
        self,
        config: WideLoggingConfig | None = None,
        *,
        mongo_client: AsyncMongoClient[dict[str, Any]] | None = None,
    ) -> None:
        self.config = config or WideLoggingConfig.from_env()
        self.counters = Counters()
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(self.config.queue_size)
        self._fallback: asyncio.Queue[bytes] = asyncio.Queue(self.config.fallback_queue_size)
        self._mongo = mongo_client
        self._owns_mongo = mongo_client is None
        self._producer: AIOKafkaProducer | None = None
        self._breaker_until = 0.0
        self._tasks: list[asyncio.Task[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._closed = False
        self._unsettled = 0  # finalized events not yet published, stored or dropped
        self._settled = asyncio.Event()
        self._settled.set()
        self._in_flight: dict[int, bytes] = {}  # taken from a queue, not yet settled (by object id)

    # ------------------------------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Start the background tasks. Never fails because Kafka or MongoDB is down (that is what the
        fallback and the retries are for); connections are made lazily."""
        if self._tasks:
            return
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        if self._mongo is None:
            self._mongo = AsyncMongoClient(
                self.config.mongo_url, tz_aware=True, serverSelectionTimeoutMS=5_000, connect=False
            )
        self._tasks = [
            asyncio.create_task(self._publish_loop(), name="wide-logging:publish"),
            asyncio.create_task(self._fallback_loop(), name="wide-logging:fallback"),
        ]

    async def __aenter__(self) -> WideLogger:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self, timeout_s: float | None = None) -> None:
        """Flush: publish (or fall back) everything queued, then write the fallback queue to MongoDB.

        Whatever cannot be flushed within ``timeout_s`` is counted as dropped and logged in full."""
        if self._closed:
            return
        deadline = time.monotonic() + (self.config.close_timeout_s if timeout_s is None else timeout_s)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.drain(), max(0.0, deadline - time.monotonic()))
        self._closed = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        for raw in list(self._in_flight.values()):
            self._drop(raw, "logger closed while the event was being written")
        self._in_flight.clear()
        while not self._queue.empty():
            self._drop(self._queue.get_nowait(), "logger closed before the event was written")
        while not self._fallback.empty():
            self._drop(self._fallback.get_nowait(), "logger closed before the event was written")
        if self._producer is not None:
            with contextlib.suppress(Exception):
                await self._producer.stop()
            self._producer = None
        if self._owns_mongo and self._mongo is not None:
            await self._mongo.close()
            self._mongo = None

    async def drain(self) -> None:
        """Wait until every event finalized so far is published or stored (or dropped)."""
        while self._unsettled > 0 and self._tasks and not all(t.done() for t in self._tasks):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._settled.wait(), 0.2)

    @property
    def pending(self) -> int:
        return self._queue.qsize() + self._fallback.qsize()

    def stats(self) -> dict[str, int]:
        return {
            **asdict(self.counters),
            "queued": self._queue.qsize(),
            "fallback_queued": self._fallback.qsize(),
        }

    # ------------------------------------------------------------------------------------------ the API
    def event(self, **context: Any) -> dict[str, Any]:
        """A new wide event for this service: ``event_id``, ``timestamp`` and ``service`` filled in."""
        return {"event_id": new_event_id(), "timestamp": utc_now(), "service": self.config.service, **context}

    def finalize(self, event: Mapping[str, Any] | WideLogEvent) -> None:
        """Hand the finished event over; returns at once, never blocks, never raises.

        Missing ``event_id``/``timestamp``/``service`` are filled in. The mapping is copied (shallowly), so
        the caller may reuse it. Serialisation happens in the background task.
        """
        try:
            if isinstance(event, WideLogEvent):
                item = event.model_dump(mode="python", by_alias=True)
            else:
                item = dict(event)
            item.setdefault("event_id", new_event_id())
            item.setdefault("timestamp", utc_now())
            item.setdefault("service", self.config.service)
        except Exception as exc:  # a broken mapping must not break the request path
            log.error("wide event could not be read: %r", exc)
            item = {"event_id": new_event_id(), "timestamp": utc_now(), "service": self.config.service,
                    "wide_logging_error": f"finalize() got an unreadable event: {exc!r}"}  # fmt: skip
        self.counters.finalized += 1
        loop = self._loop
        if loop is not None and threading.get_ident() != self._loop_thread:
            loop.call_soon_threadsafe(self._enqueue, item)
        else:
            self._enqueue(item)

    # ------------------------------------------------------------------------------------------ internals
    def _settle(self, count: int) -> None:
        self._unsettled -= count
        if self._unsettled <= 0:
            self._unsettled = 0
            self._settled.set()

    def _enqueue(self, item: dict[str, Any]) -> None:
        self._unsettled += 1
        self._settled.clear()
        if self._closed:
            self._drop(item, "logger is closed")
            return
        if self.config.mq_enabled:
            try:
                self._queue.put_nowait(item)
                return
            except asyncio.QueueFull:
                pass
        self._to_fallback(self._encode(item)[1])

    def _to_fallback(self, raw: bytes) -> None:
        try:
            self._fallback.put_nowait(raw)
        except asyncio.QueueFull:
            self._drop(raw, "both queues are full (Kafka and MongoDB are too slow or down)")

    def _drop(self, item: dict[str, Any] | bytes, reason: str) -> None:
        self.counters.dropped += 1
        self._settle(1)
        text = item.decode("utf-8", "replace") if isinstance(item, bytes) else json.dumps(item, default=str)
        log.error("wide event dropped (%s): %s", reason, text)

    def _encode(self, item: dict[str, Any]) -> tuple[bytes, bytes]:
        """(key, wire bytes) of the event; an event that is not a valid wide event is reduced, never lost."""
        try:
            event = WideLogEvent.model_validate(item)
            raw = encode(event)
        except (ValidationError, EventEncodeError) as exc:
            self.counters.repaired += 1
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            log.warning(
                "wide event %s is not valid (%s); storing a reduced copy", item.get("event_id"), reason
            )
            event = WideLogEvent.model_validate(_reduced(item, str(exc)))
            raw = encode(event)
        return event.event_id.encode("utf-8"), raw

    async def _publish_loop(self) -> None:
        while True:
            first = await self._queue.get()
            batch = [first]
            while len(batch) < self.config.batch_size and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            encoded = [self._encode(item) for item in batch]
            for _key, raw in encoded:
                self._in_flight[id(raw)] = raw
            for _key, raw in await self._publish(encoded):
                self._in_flight.pop(id(raw), None)
                self._to_fallback(raw)

    async def _publish(self, raws: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        """Publish with retries; returns what could not be published."""
        pending = raws
        attempts = 1 + self.config.publish_retries
        for attempt in range(attempts):
            if time.monotonic() < self._breaker_until:
                return pending
            if attempt:
                await asyncio.sleep(self.config.retry_backoff_ms / 1000 * 2 ** (attempt - 1))
            pending = await self._send(pending)
            if not pending:
                return []
            self.counters.publish_failures += 1
        self._breaker_until = time.monotonic() + self.config.breaker_open_ms / 1000
        log.warning(
            "MQ publish failed, falling back to direct logging: %d events to MongoDB; Kafka skipped %.1fs",
            len(pending),
            self.config.breaker_open_ms / 1000,
        )
        return pending

    async def _send(self, items: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        """One attempt: send all, wait for the acks (bounded); returns the ones not acknowledged."""
        timeout = self.config.publish_timeout_ms / 1000
        try:
            producer = await asyncio.wait_for(self._ensure_producer(), timeout)
        except Exception as exc:
            log.warning("Kafka producer unavailable: %r", exc)
            return items
        futures: list[asyncio.Future[Any]] = []
        try:
            async with asyncio.timeout(timeout):
                for key, raw in items:
                    futures.append(await producer.send(self.config.log_topic, value=raw, key=key))
                await asyncio.gather(*futures, return_exceptions=True)
        except Exception as exc:  # timeout, or the producer refused to take the records
            log.warning("publish attempt failed: %r", exc)
        failed: list[tuple[bytes, bytes]] = []
        for i, item in enumerate(items):
            fut = futures[i] if i < len(futures) else None
            if fut is not None and fut.done() and not fut.cancelled() and fut.exception() is None:
                self.counters.published += 1
                self._in_flight.pop(id(item[1]), None)
                self._settle(1)
            else:
                if fut is not None and not fut.done():
                    fut.cancel()
                failed.append(item)
        return failed

    async def _ensure_producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            producer = AIOKafkaProducer(**self.config.producer_kwargs())
            try:
                await producer.start()
            except BaseException:
                with contextlib.suppress(Exception):
                    await producer.stop()
                raise
            self._producer = producer
        return self._producer

    async def _fallback_loop(self) -> None:
        while True:
            first = await self._fallback.get()
            batch = [first]
            while len(batch) < self.config.batch_size and not self._fallback.empty():
                batch.append(self._fallback.get_nowait())
            for raw in batch:
                self._in_flight[id(raw)] = raw
            await self._store(batch)

    async def _store(self, raws: list[bytes]) -> None:
        """Direct MongoDB write, retried with backoff until it succeeds or the logger closes (then what is
        left is dropped: counted and logged in full). Meanwhile the bounded queues absorb new events."""
        assert self._mongo is not None
        kept: list[bytes] = []
        docs: list[dict[str, Any]] = []
        for raw in raws:
            try:
                docs.append(to_document(decode(LOG_EVENTS, raw)))
                kept.append(raw)
            except EventDecodeError as exc:  # cannot happen for bytes we encoded; never lose it silently
                self._in_flight.pop(id(raw), None)
                self._drop(raw, f"not a wide event: {exc}")
        collection = self._mongo[self.config.mongo_db][WIDE_EVENTS]
        attempt = 0
        while not self._closed:
            try:
                outcome = await insert_documents(collection, docs)
            except Exception as exc:
                attempt += 1
                delay = min(
                    _FALLBACK_MAX_DELAY_S, self.config.retry_backoff_ms / 1000 * 2 ** min(attempt, 16)
                )
                log.warning("direct MongoDB write failed (attempt %d): %r", attempt, exc)
                await asyncio.sleep(delay)
                continue
            for raw in kept:
                self._in_flight.pop(id(raw), None)
            for index, reason in outcome.failed.items():
                self._drop(docs[index], f"MongoDB refused it: {reason}")
            stored = len(docs) - len(outcome.failed)
            self.counters.fallback += stored
            self._settle(stored)
            return
        for raw in kept:
            self._in_flight.pop(id(raw), None)
        for doc in docs:
            self._drop(doc, "MongoDB unreachable")


def _reduced(item: MutableMapping[str, Any] | Mapping[str, Any], error: str) -> dict[str, Any]:
    """The core fields plus the short scalar context of an invalid event, and why it was reduced."""
    out: dict[str, Any] = {}
    for key, value in item.items():
        if isinstance(value, bool | int | float) or value is None:
            out[str(key)[:128]] = value
        elif isinstance(value, str):
            out[str(key)[:128]] = value[:_MAX_SCALAR_CHARS]
    event_id = item.get("event_id")
    out["event_id"] = (
        str(event_id)[:128] if isinstance(event_id, str) and event_id.strip() else new_event_id()
    )
    ts = item.get("timestamp")
    out["timestamp"] = ts if isinstance(ts, str) else format_timestamp(utc_now()) if ts is None else ts
    service = item.get("service")
    out["service"] = str(service)[:128] if isinstance(service, str) and service.strip() else "unknown"
    out["wide_logging_error"] = error[:2000]
    out["wide_logging_reduced"] = True
    try:
        WideLogEvent.model_validate(out)
    except ValidationError:
        out["timestamp"] = format_timestamp(utc_now())
        out = {k: v for k, v in out.items() if not isinstance(v, float) or v == v}
    return out
