"""Background checks: readiness answered from the last result, never by waiting on a slow dependency.

Every dependency (Kafka, each service's ``/readyz``) is checked by its own task every
``READINESS_INTERVAL_S``, each check bounded by ``READINESS_CHECK_TIMEOUT_S`` — longer than the services'
own datastore checks (3 s), so a service that answers slowly *because* its datastore is down gets to say so,
and the operator reads that cause instead of "timed out". ``/readyz``, ``/health``, the console and the
``gateway_dependency_ready`` gauge all read the cache: they answer at once, with the age of each result.
One slow dependency never delays the others' checks.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from gateway.logs import log

#: A check: resolves to "ok" or the reason it is not (it may also raise; the exception is the reason).
CheckFn = Callable[[], Awaitable[str]]


@dataclass(frozen=True, slots=True)
class CheckResult:
    result: str
    at: float  # time.time() when the answer arrived
    took_s: float


class Checks:
    """The latest result of each named check, refreshed in the background (``start``/``close``)."""

    def __init__(
        self,
        checks: Mapping[str, CheckFn],
        *,
        interval_s: float,
        timeout_s: float,
        on_result: Callable[[str, str], None] | None = None,
    ) -> None:
        self._checks = dict(checks)
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self._on_result = on_result
        self.results: dict[str, CheckResult] = {}
        self._since: dict[str, float] = {}  # check → when the check in flight started (monotonic)
        self._first: dict[str, asyncio.Event] = {name: asyncio.Event() for name in self._checks}
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._loop(name), name=f"gateway:check:{name}") for name in self._checks
            ]

    async def close(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def run_once(self, name: str) -> CheckResult:
        """Run one check now (bounded by the timeout) and record its result."""
        started = time.monotonic()
        self._since[name] = started
        try:
            result = await asyncio.wait_for(self._checks[name](), self.timeout_s)
        except TimeoutError:
            result = f"no answer within {self.timeout_s:g} s"
        except Exception as exc:
            result = str(exc) or type(exc).__name__
        finally:
            self._since.pop(name, None)
        done = CheckResult(result, time.time(), round(time.monotonic() - started, 3))
        self.results[name] = done
        self._first[name].set()
        if self._on_result is not None:
            self._on_result(name, result)
        return done

    async def _loop(self, name: str) -> None:
        while True:
            try:
                await self.run_once(name)
            except Exception as exc:  # never let one bad check stop refreshing it
                log.warning("readiness check failed to run", check=name, error=repr(exc))
            await asyncio.sleep(self.interval_s)

    async def latest(self, wait_s: float = 0.5) -> dict[str, str]:
        """The last result of every check; a check with none yet is waited for up to ``wait_s`` (at start
        up), then reported as still running. Never waits on a slow check that already answered once."""
        missing = [self._first[n].wait() for n in self._checks if n not in self.results]
        if missing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*missing), wait_s)
        out: dict[str, str] = {}
        for name in self._checks:
            done = self.results.get(name)
            if done is not None:
                out[name] = done.result
            else:
                running = time.monotonic() - self._since.get(name, time.monotonic())
                out[name] = f"checking: no answer yet ({running:.0f} s)"
        return out

    def ages(self) -> dict[str, float]:
        """Seconds since each check's last result."""
        now = time.time()
        return {name: round(now - r.at, 1) for name, r in self.results.items()}
