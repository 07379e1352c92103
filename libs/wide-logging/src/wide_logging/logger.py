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
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Final

from aiokafka import AIOKafkaProducer
from opentelemetry.trace import get_current_span
from platform_events import (
    LOG_EVENTS,
    WideLogEvent,
    decode,
    encode,
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
    ``repaired``: events that were not valid wide events (unserialisable, invalid text, ...) and were stored
    as a reduced event carrying the reason instead. ``truncated``: events above ``max_event_bytes``, stored
    cut to their core fields plus ``truncated: true`` (also counted in ``repaired``).
    ``internal_errors``: unexpected errors the background tasks survived (they are restarted; never 0 → dead).
    Every finalized event ends up in exactly one of ``published``, ``fallback`` or ``dropped`` (or is still
    queued).
    """

    finalized: int = 0
    published: int = 0
    fallback: int = 0
    dropped: int = 0
    publish_failures: int = 0
    repaired: int = 0
    truncated: int = 0
    internal_errors: int = 0


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
        self._publishing: list[dict[str, Any] | bytes] = []  # the publish loop's current batch
        self._storing: list[bytes] = []  # the fallback loop's current batch

    # ------------------------------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Start the background tasks. Never fails because Kafka or MongoDB is down (that is what the
        fallback and the retries are for); connections are made lazily."""
        if self._tasks:
            return
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        if self._mongo is None:
            timeout_ms = self.config.mongo_timeout_ms
            self._mongo = AsyncMongoClient(
                self.config.mongo_url,
                tz_aware=True,
                connect=False,
                serverSelectionTimeoutMS=min(5_000, timeout_ms),
                connectTimeoutMS=timeout_ms,
                socketTimeoutMS=timeout_ms,
                timeoutMS=timeout_ms,  # a hung MongoDB fails the insert, which is then retried
            )
        self._tasks = [
            asyncio.create_task(
                self._supervised(self._publish_loop, self._recover_publish), name="wide-logging:publish"
            ),
            asyncio.create_task(
                self._supervised(self._fallback_loop, self._recover_store), name="wide-logging:fallback"
            ),
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
        """A new wide event for this service: ``event_id``, ``timestamp`` and ``service`` filled in, and
        ``trace_id``/``span_id`` (W3C hex) of the current OpenTelemetry span when there is one, so a log
        query by ``trace_id`` finds the events of one traced request."""
        event = {"event_id": new_event_id(), "timestamp": utc_now(), "service": self.config.service}
        span = get_current_span().get_span_context()
        if span.is_valid:
            event["trace_id"] = format(span.trace_id, "032x")
            event["span_id"] = format(span.span_id, "016x")
        event.update(context)
        return event

    def finalize(self, event: Mapping[str, Any] | WideLogEvent) -> None:
        """Hand the finished event over; returns at once, never blocks, never raises.

        Missing ``event_id``/``timestamp``/``service`` are filled in. The mapping is copied (shallowly), so
        the caller may reuse it. Serialisation happens in the background task (``MQ_ENABLED=false``: here).
        """
        try:
            try:
                if isinstance(event, WideLogEvent):
                    item = event.model_dump(mode="python", by_alias=True)
                else:
                    item = dict(event)
                item.setdefault("event_id", new_event_id())
                item.setdefault("timestamp", utc_now())
                item.setdefault("service", self.config.service)
            except Exception as exc:  # a broken mapping must not break the request path
                log.error("wide event could not be read: %s", _safe_repr(exc))
                reason = f"finalize() got an unreadable event: {_safe_repr(exc)}"
                item = {"event_id": new_event_id(), "timestamp": utc_now(), "service": self.config.service,
                        "wide_logging_error": reason}  # fmt: skip
            self.counters.finalized += 1
            loop = self._loop
            if loop is not None and threading.get_ident() != self._loop_thread:
                loop.call_soon_threadsafe(self._enqueue, item)
            else:
                self._enqueue(item)
        except Exception as exc:  # last line of defence: the request path never sees a logging error
            self.counters.internal_errors += 1
            log.error("finalize() failed: %s", _safe_repr(exc))

    # ------------------------------------------------------------------------------------------ internals
    def _settle(self, count: int) -> None:
        self._unsettled -= count
        if self._unsettled <= 0:
            self._unsettled = 0
            self._settled.set()

    def _enqueue(self, item: dict[str, Any]) -> None:
        self._unsettled += 1
        self._settled.clear()
        try:
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
        except Exception as exc:  # never: _encode and _drop do not raise; counted if it happens anyway
            self.counters.internal_errors += 1
            self._drop(item, f"internal error: {_safe_repr(exc)}")

    def _to_fallback(self, raw: bytes) -> None:
        try:
            self._fallback.put_nowait(raw)
        except asyncio.QueueFull:
            self._drop(raw, "both queues are full (Kafka and MongoDB are too slow or down)")

    def _drop(self, item: Any, reason: str) -> None:
        """Count the event as dropped and write it to the process log (as far as it can be shown)."""
        self.counters.dropped += 1
        self._settle(1)
        try:
            if isinstance(item, bytes):
                text = item.decode("utf-8", "replace")
            else:
                text = json.dumps(item, default=_safe_repr, ensure_ascii=False)
        except Exception:  # not JSON (circular, too deep, odd keys): its repr, bounded
            text = _safe_repr(item)
        try:
            log.error("wide event dropped (%s): %s", reason, text)
        except Exception:
            self.counters.internal_errors += 1

    def _encode(self, item: dict[str, Any]) -> tuple[bytes, bytes]:
        """(key, wire bytes) of the event; never raises.

        An event that is not a valid wide event is reduced to its core and short scalar fields (strings cut
        to 1,024 characters). One above ``max_event_bytes`` is reduced the same way and marked
        ``truncated: true``; if that is still too big, only the core fields (``event_id``, ``timestamp``,
        ``service``) are kept. Either way it carries the reason and keeps its ``event_id`` when usable."""
        limit = self.config.max_event_bytes
        size: int | None = None
        try:
            event = WideLogEvent.model_validate(item)
            raw = encode(event)
            if len(raw) <= limit:
                return event.event_id.encode("utf-8"), raw
            size = len(raw)
            reason = f"wide event is {size} bytes encoded; the limit is {limit} bytes"
        except Exception as exc:  # ValidationError, EventEncodeError, RecursionError, odd objects, ...
            reason = _safe_reason(exc)
            if "too_large" in reason or "bytes encoded" in reason:
                size = -1
        self.counters.repaired += 1
        truncated = size is not None
        if truncated:
            self.counters.truncated += 1
        candidates: list[Callable[[], dict[str, Any]]] = [
            lambda: _reduced(item, reason, truncated=truncated),
            lambda: _core(item, reason, truncated=True),
        ]
        for build in candidates:
            try:
                event = WideLogEvent.model_validate(build())
                raw = encode(event)
                if len(raw) <= limit:
                    break
            except Exception:
                continue
        else:  # even the core fields are unusable: a fresh core event that carries the reason
            fresh = _core({}, reason, truncated=True, service=self.config.service)
            event = WideLogEvent.model_validate(fresh)
            raw = encode(event)
        try:
            log.warning("wide event %s is not valid (%s); storing a reduced copy", event.event_id, reason)
        except Exception:
            self.counters.internal_errors += 1
        return event.event_id.encode("utf-8"), raw

    async def _supervised(self, loop: Any, recover: Any) -> None:
        """Run a background loop forever: an unexpected error is counted and logged, the batch it was
        working on is recovered (never lost uncounted), and the loop starts again."""
        while True:
            try:
                await loop()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.counters.internal_errors += 1
                with contextlib.suppress(Exception):
                    log.error("wide-logging background task failed, restarting: %s", _safe_repr(exc))
                recover()
                await asyncio.sleep(0.05)

    def _recover_publish(self) -> None:
        """The publish loop died mid-batch: what it had not settled goes to the MongoDB fallback."""
        batch, self._publishing = self._publishing, []
        for entry in batch:
            if isinstance(entry, bytes):
                if self._in_flight.pop(id(entry), None) is not None:
                    self._to_fallback(entry)
            else:
                self._to_fallback(self._encode(entry)[1])

    def _recover_store(self) -> None:
        """The fallback loop died mid-batch: what it had not settled is counted as dropped and logged."""
        batch, self._storing = self._storing, []
        for raw in batch:
            if self._in_flight.pop(id(raw), None) is not None:
                self._drop(raw, "internal error while storing it")

    async def _publish_loop(self) -> None:
        while True:
            first = await self._queue.get()
            batch = [first]
            while len(batch) < self.config.batch_size and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            self._publishing = list(batch)
            encoded = [self._encode(item) for item in batch]
            for _key, raw in encoded:
                self._in_flight[id(raw)] = raw
            self._publishing = [raw for _key, raw in encoded]
            for _key, raw in await self._publish(encoded):
                self._in_flight.pop(id(raw), None)
                self._to_fallback(raw)
            self._publishing = []

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
            self._storing = batch
            await self._store(batch)
            self._storing = []

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
            except Exception as exc:  # cannot happen for bytes we encoded; never lose it silently
                self._in_flight.pop(id(raw), None)
                self._drop(raw, f"not a wide event: {_safe_repr(exc)}")
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


_MAX_REASON_CHARS: Final = 2000


def _safe_repr(value: object, limit: int = 4000) -> str:
    """``repr`` that never raises (an object's own ``__repr__`` may) and stays bounded."""
    try:
        text = repr(value)
    except Exception:
        text = f"<unrepresentable {type(value).__name__}>"
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"


def _safe_reason(exc: BaseException) -> str:
    try:
        text = str(exc)
    except Exception:
        text = ""
    first = text.splitlines()[0] if text else type(exc).__name__
    if isinstance(exc, ValidationError):  # the first line only names the model: add the first error
        with contextlib.suppress(Exception):
            error = exc.errors(include_url=False, include_input=False)[0]
            first = f"{'.'.join(str(p) for p in error['loc']) or 'event'}: {error['type']}: {error['msg']}"
    return first[:_MAX_REASON_CHARS]


def _core(
    item: Mapping[str, Any], error: str, *, truncated: bool, service: str | None = None
) -> dict[str, Any]:
    """The core fields (``event_id``, ``timestamp``, ``service``) of an event, each kept only if usable,
    plus the reason and the ``truncated`` marker."""
    event_id = item.get("event_id")
    ts = item.get("timestamp")
    svc = item.get("service", service)
    out: dict[str, Any] = {
        "event_id": event_id if isinstance(event_id, str) and _usable(event_id, 128) else new_event_id(),
        "timestamp": ts if isinstance(ts, str | datetime) and _usable_time(ts) else utc_now(),
        "service": svc if isinstance(svc, str) and _usable(svc, 128) else (service or "unknown"),
        "wide_logging_error": error[:_MAX_REASON_CHARS].encode("utf-8", "replace").decode("utf-8"),
        "wide_logging_reduced": True,
    }
    if truncated:
        out["truncated"] = True
    return out


def _usable(text: str, max_chars: int) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return 0 < len(text) <= max_chars and bool(text.strip())


def _usable_time(value: str | datetime) -> bool:
    try:
        WideLogEvent.model_validate({"event_id": "x", "service": "x", "timestamp": value})
    except Exception:
        return False
    return True


def _reduced(
    item: MutableMapping[str, Any] | Mapping[str, Any], error: str, *, truncated: bool
) -> dict[str, Any]:
    """The core fields plus the short scalar context of an invalid event, and why it was reduced."""
    out: dict[str, Any] = {}
    for key, value in item.items():
        if isinstance(value, bool | int | float) or value is None:
            out[str(key)[:128]] = value
        elif isinstance(value, str):
            out[str(key)[:128]] = value[:_MAX_SCALAR_CHARS]
    out.update(_core(item, error, truncated=truncated))
    out = {k: v for k, v in out.items() if not isinstance(v, float) or v == v}
    return out
