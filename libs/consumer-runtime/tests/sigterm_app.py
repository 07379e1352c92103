"""A minimal service built on the runtime, run as a real process by test_sigterm_integration.py.

Its sink appends JSON lines to a file (fsync'd) — a tiny datastore the test can read after the process died.
While a file ``<out>.down`` exists the datastore is "down": every write fails (a transient error).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from consumer_runtime import (
    ConsumerRunner,
    Record,
    ServiceSettings,
    configure_logging,
    ops_router,
    running,
    serve,
)
from fastapi import FastAPI
from platform_events import TOPICS


class FileSink:
    def __init__(self, path: str) -> None:
        self.path = path

    async def write(self, records: Sequence[Record[Any]]) -> list[Any]:
        if os.path.exists(self.path + ".down"):  # noqa: ASYNC240 - tiny test datastore
            raise ConnectionError("test datastore down")
        with open(self.path, "a", encoding="utf-8") as f:  # noqa: ASYNC230 - tiny test datastore
            for r in records:
                f.write(json.dumps({"event_id": r.value.event_id, "offset": r.offset}) + "\n")
            f.flush()
            os.fsync(f.fileno())
        return []

    async def ping(self) -> None:
        return None


def main() -> None:
    topic, out = sys.argv[1], sys.argv[2]
    settings = ServiceSettings()
    configure_logging("sigterm-app", json=True)
    runner = ConsumerRunner(
        name="sigterm-app",
        settings=settings,
        topics=[TOPICS["log-events"].renamed(topic)],
        sink=FileSink(out),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with running(runner, settings.shutdown_timeout_s):
            yield

    app = FastAPI(lifespan=lifespan)
    app.include_router(ops_router(service="sigterm-app", runner=runner, checks={}))
    serve(app, settings)


if __name__ == "__main__":
    main()
