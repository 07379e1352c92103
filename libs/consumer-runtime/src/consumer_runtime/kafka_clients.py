"""Starting aiokafka clients without leaking a half-started one.

``AIOKafkaProducer.start()`` / ``AIOKafkaAdminClient.start()`` open connections (and a producer its sender
task) before they can fail, e.g. when the broker is down; such a client must still be stopped. Every
long-lived client of the services is started through these two functions. :class:`LazyProducer` is the
producer of a publisher that writes from a consumer (dead letters, the notifier's ``notifications.sent``).

(``wide_logging`` keeps its own few lines for this: it is meant for any app and does not depend on this
package.)
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import RecordMetadata

from consumer_runtime.settings import KafkaSettings

__all__ = ["LazyProducer", "OutRecord", "start_admin", "start_producer"]

_Client = TypeVar("_Client")


async def _started(
    client: _Client, start: Callable[[], Awaitable[object]], close: Callable[[], Awaitable[object]]
) -> _Client:
    try:
        await start()
    except BaseException:
        with contextlib.suppress(Exception):
            await close()
        raise
    return client


async def start_producer(settings: KafkaSettings) -> AIOKafkaProducer:
    """A started durable producer (``settings.producer_kwargs()``: acks=all, compression, retries)."""
    producer = AIOKafkaProducer(**settings.producer_kwargs())
    return await _started(producer, producer.start, producer.stop)


async def start_admin(settings: KafkaSettings, **options: Any) -> AIOKafkaAdminClient:
    """A started admin client (``settings.client_kwargs()`` plus ``options``, e.g. ``request_timeout_ms``)."""
    admin = AIOKafkaAdminClient(**settings.client_kwargs(), **options)
    return await _started(admin, admin.start, admin.close)


#: One record to send: (topic, value, key, headers).
OutRecord = tuple[str, bytes | None, bytes | None, Sequence[tuple[str, bytes]] | None]


class LazyProducer:
    """A durable producer started on first use (once, also when first uses race); :meth:`send_all`
    returns only once the broker acknowledged every record (acks=all), else raises.

    ``before_start`` runs (under the same lock) just before the producer is started, e.g. to create the
    topic it writes to.
    """

    def __init__(self, settings: KafkaSettings, *, before_start: Callable[[], Awaitable[None]] | None = None):
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
