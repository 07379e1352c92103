"""The Kafka plumbing below the runtime: every aiokafka client of the services is made here.

- **factories** — :func:`new_group_consumer` (a member of a consumer group), :func:`new_reader` (a consumer
  outside any group: assign, seek, read; it commits nothing) and :func:`reader` (one started for a
  ``with`` block), :func:`start_producer` (the platform's durable producer settings:
  ``KafkaClientSettings.producer_kwargs``), :func:`start_admin`;
- **starting without leaking** — ``start()`` opens connections (a producer its sender task) before it can
  fail, e.g. when the broker is down; such a client must still be stopped (:func:`start_client`);
- **reconnecting** — :class:`Backoff` (the attempts of one reconnect loop, delays from
  :func:`~consumer_runtime.retry.backoff_delay`) and :func:`retry_until_done`;
- :class:`LazyProducer`, the producer of a publisher that writes from a consumer (dead letters, the
  notifier's ``notifications.sent``).

The dead-letter headers are encoded and parsed in :mod:`consumer_runtime.dlq`.

(``wide_logging`` keeps its own few lines for this: it is meant for any app and does not depend on this
package.)
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import RecordMetadata

from consumer_runtime.logging import get_logger
from consumer_runtime.retry import backoff_delay
from consumer_runtime.settings import KafkaClientSettings, KafkaGroupSettings

__all__ = [
    "Backoff",
    "LazyProducer",
    "OutRecord",
    "new_group_consumer",
    "new_reader",
    "reader",
    "retry_until_done",
    "start_admin",
    "start_client",
    "start_producer",
]

log = get_logger(__name__)

_Client = TypeVar("_Client")
T = TypeVar("T")


async def start_client(
    client: _Client, start: Callable[[], Awaitable[object]], close: Callable[[], Awaitable[object]]
) -> _Client:
    """``await start()``; when it fails, ``close()`` what it opened before re-raising."""
    try:
        await start()
    except BaseException:
        with contextlib.suppress(Exception):
            await close()
        raise
    return client


# ---------------------------------------------------------------------------------------------- factories
def new_group_consumer(
    settings: KafkaGroupSettings, *topics: str, group_id: str, **options: Any
) -> AIOKafkaConsumer:
    """A consumer in group ``group_id`` (not started): manual commits, the configured session timing."""
    return AIOKafkaConsumer(
        *topics,
        **settings.client_kwargs(),
        group_id=group_id,
        enable_auto_commit=False,
        session_timeout_ms=settings.kafka_session_timeout_ms,
        heartbeat_interval_ms=settings.kafka_heartbeat_interval_ms,
        rebalance_timeout_ms=settings.kafka_session_timeout_ms,
        **options,
    )


def new_reader(settings: KafkaClientSettings, **options: Any) -> AIOKafkaConsumer:
    """A consumer outside any group (not started): it is assigned partitions, seeks and reads; it never
    commits. ``options`` (e.g. ``fetch_max_wait_ms``) are aiokafka's."""
    kwargs: dict[str, Any] = {"enable_auto_commit": False, "auto_offset_reset": "earliest", **options}
    return AIOKafkaConsumer(**settings.client_kwargs(), group_id=None, **kwargs)


@contextlib.asynccontextmanager
async def reader(settings: KafkaClientSettings, **options: Any) -> AsyncIterator[AIOKafkaConsumer]:
    """A started :func:`new_reader` for the ``with`` block, stopped afterwards."""
    consumer = new_reader(settings, **options)
    await start_client(consumer, consumer.start, consumer.stop)
    try:
        yield consumer
    finally:
        await consumer.stop()


async def start_producer(settings: KafkaClientSettings) -> AIOKafkaProducer:
    """A started durable producer (``settings.producer_kwargs()``: acks=all, compression, retries)."""
    producer = AIOKafkaProducer(**settings.producer_kwargs())
    return await start_client(producer, producer.start, producer.stop)


async def start_admin(settings: KafkaClientSettings, **options: Any) -> AIOKafkaAdminClient:
    """A started admin client (``settings.client_kwargs()`` plus ``options``, e.g. ``request_timeout_ms``)."""
    admin = AIOKafkaAdminClient(**settings.client_kwargs(), **options)
    return await start_client(admin, admin.start, admin.close)


# ------------------------------------------------------------------------------------------- reconnecting
class Backoff:
    """The attempts of one reconnecting loop: after a failure :meth:`failed` gives the delay before the next
    attempt (``backoff_delay``: exponential, jittered, at most ``max_s``) and :meth:`sleep` waits it — cut
    short when ``stop`` is set; after a success :meth:`reset` starts over."""

    def __init__(self, initial_s: float = 0.5, max_s: float = 10.0, *, stop: asyncio.Event | None = None):
        self.initial_s = initial_s
        self.max_s = max_s
        self.stop = stop
        self.attempt = 0

    def reset(self) -> None:
        self.attempt = 0

    def failed(self) -> float:
        self.attempt += 1
        return backoff_delay(self.attempt, initial_s=self.initial_s, max_s=self.max_s)

    async def sleep(self, delay: float) -> None:
        if self.stop is None:
            await asyncio.sleep(delay)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), delay)


async def retry_until_done(
    action: Callable[[], Awaitable[T]],
    *,
    what: str,
    backoff: Backoff | None = None,
    give_up_after_s: float | None = None,
    fatal: tuple[type[BaseException], ...] = (),
    **log_fields: Any,
) -> T:
    """``await action()`` until it succeeds, waiting a :class:`Backoff` delay after each failure (logged as
    ``"<what>; retrying"``). An exception in ``fatal`` is raised at once; after ``give_up_after_s``
    the last failure is raised."""
    backoff = backoff or Backoff()
    deadline = None if give_up_after_s is None else time.monotonic() + give_up_after_s
    while True:
        try:
            return await action()
        except fatal:
            raise
        except Exception as exc:
            if deadline is not None and time.monotonic() > deadline:
                raise
            delay = backoff.failed()
            log.warning(f"{what}; retrying", error=repr(exc), retry_in_s=round(delay, 2), **log_fields)
            await backoff.sleep(delay)


#: One record to send: (topic, value, key, headers).
OutRecord = tuple[str, bytes | None, bytes | None, Sequence[tuple[str, bytes]] | None]


class LazyProducer:
    """A durable producer started on first use (once, also when first uses race); :meth:`send_all`
    returns only once the broker acknowledged every record (acks=all), else raises.

    ``before_start`` runs (under the same lock) just before the producer is started, e.g. to create the
    topic it writes to.
    """

    def __init__(
        self, settings: KafkaClientSettings, *, before_start: Callable[[], Awaitable[None]] | None = None
    ):
        self._settings = settings
        self._before_start = before_start
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> AIOKafkaProducer:
        async with self._lock:
            if self._producer is None:
                if self._before_start is not None:
                    await self._before_start()
                self._producer = await start_producer(self._settings)
            return self._producer

    async def send_all(self, records: Sequence[OutRecord]) -> list[RecordMetadata]:
        """Send and wait for every acknowledgement; the broker's metadata (partition, offset) per record."""
        if not records:
            return []
        producer = await self.start()
        futures = [
            await producer.send(topic, value=value, key=key, headers=headers)
            for topic, value, key, headers in records
        ]
        return list(await asyncio.gather(*futures))

    async def close(self) -> None:
        async with self._lock:
            if self._producer is not None:
                producer, self._producer = self._producer, None
                await producer.stop()
