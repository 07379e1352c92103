"""Abuse limits: who a caller is for a limit, rate limits (``limits``, in-memory windows) and the cap on live
streams. Every refusal is a 429 with ``Retry-After`` (docs/security.md#console-sessions-and-abuse-limits).

A caller is its token's subject when the request carries an identity (``request.state.identity.subject``,
set by the authentication dependency), else its client address — the real one behind a trusted proxy
(:class:`gateway.middleware.TrustedProxies`).
"""

from __future__ import annotations

import math
import time
from collections import Counter

from fastapi import Request
from limits import RateLimitItem, parse_many
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from prometheus_client import Counter as Metric
from starlette.requests import HTTPConnection

from gateway.errors import ApiError

REFUSED = Metric("gateway_limit_refusals_total", "Requests refused by an abuse limit (429)", ["limit"])


def caller(connection: HTTPConnection) -> str:
    """The key of a caller: ``sub:<subject>`` of its identity, else (no token: no identity, or the anonymous
    one of ``GATEWAY_AUTH=open``, shared by every such caller) ``ip:<client address>``."""
    identity = getattr(connection.state, "identity", None)
    subject = getattr(identity, "subject", None)
    if isinstance(subject, str) and subject and getattr(identity, "kind", None) != "anonymous":
        return f"sub:{subject}"
    return f"ip:{connection.client.host if connection.client else ''}"


def too_many(limit: str, message: str, retry_after_s: int) -> ApiError:
    REFUSED.labels(limit).inc()
    return ApiError(429, "rate_limited", message, headers={"Retry-After": str(max(1, retry_after_s))})


class RateLimit:
    """``rate`` (e.g. ``"120/minute"`` or ``"10/second;1000/hour"``) per key, as a sliding window counter
    in this process's memory (expired windows are dropped by the storage)."""

    def __init__(self, name: str, rate: str) -> None:
        self.name = name
        self.items: list[RateLimitItem] = parse_many(rate)
        self._limiter = SlidingWindowCounterRateLimiter(MemoryStorage())

    async def retry_after(self, key: str) -> int | None:
        """Count one hit for ``key``; ``None`` when allowed, else the seconds until one would be."""
        for item in self.items:
            if not await self._limiter.hit(item, self.name, key):
                stats = await self._limiter.get_window_stats(item, self.name, key)
                return max(1, math.ceil(stats.reset_time - time.time()))
        return None

    async def check(self, key: str, what: str) -> None:
        """Raise the 429 when ``key`` is over the rate."""
        wait = await self.retry_after(key)
        if wait is not None:
            raise too_many(self.name, f"too many {what}: retry in {wait} s", wait)


async def limit_publishing(request: Request) -> None:
    """Dependency of the publishing routes (added where their router is included): one rate per caller
    over every publishing route together, so spreading calls over routes gains nothing.

    The identity is established before any dependency runs (:class:`gateway.policy.Authorize`, a
    middleware): the caller is known when it is counted, and a refused credential (401) costs nobody's
    rate."""
    limit: RateLimit = request.app.state.publish_limit
    await limit.check(caller(request), "publish requests")


class StreamSlots:
    """Live streams open per caller and in total; a stream holds its slot until it ends."""

    def __init__(self, per_caller: int, total: int, retry_after_s: int) -> None:
        self.per_caller = per_caller
        self.total = total
        self.retry_after_s = retry_after_s
        self._open: Counter[str] = Counter()
        self._count = 0

    @property
    def open(self) -> int:
        return self._count

    def take(self, key: str) -> None:
        """Take a slot for ``key`` or raise the 429."""
        if self._count >= self.total:
            raise too_many(
                "streams_total",
                f"the gateway has {self.total} live streams open: retry later",
                self.retry_after_s,
            )
        if self._open[key] >= self.per_caller:
            raise too_many(
                "streams_per_caller",
                f"at most {self.per_caller} live streams per caller are open: close one first",
                self.retry_after_s,
            )
        self._open[key] += 1
        self._count += 1

    def give_back(self, key: str) -> None:
        self._count -= 1
        self._open[key] -= 1
        if self._open[key] <= 0:
            del self._open[key]
