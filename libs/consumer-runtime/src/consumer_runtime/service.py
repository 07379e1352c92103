"""What every service process shares: HTTP settings, serving with uvicorn, and a graceful shutdown.

uvicorn turns SIGTERM into the lifespan's shutdown, where the consumer stops fetching, flushes what is
buffered, commits and leaves its group before the process exits.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import uvicorn
from fastapi import FastAPI
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from consumer_runtime.control import ControlFollower
from consumer_runtime.runner import ConsumerRunner
from consumer_runtime.settings import KafkaSettings


class HttpSettings(BaseSettings):
    """The HTTP side of a service process: where it listens, how it logs, how long a shutdown may take."""

    model_config = SettingsConfigDict(env_file=None, extra="ignore", case_sensitive=False)

    http_host: str = "0.0.0.0"
    http_port: int = Field(8080, ge=1, le=65535)
    log_level: str = "INFO"
    log_json: bool = True
    shutdown_timeout_s: float = Field(25.0, gt=0, description="keep below terminationGracePeriodSeconds")


class ServiceSettings(KafkaSettings, HttpSettings):
    """A consuming service: the Kafka consumer settings plus the HTTP side."""


@asynccontextmanager
async def running(
    runner: ConsumerRunner, timeout_s: float = 25.0, *, control_key: str | None = None
) -> AsyncIterator[ConsumerRunner]:
    """Run the consumer for the life of the app; on exit flush, commit and leave the group.

    With ``KAFKA_CONTROL_ENABLED`` the state operators asked for (``platform.control``, keyed by
    ``control_key`` or the runner's name) decides whether it starts running, paused or stopped.
    """
    settings = runner.settings
    follower = None
    if settings.kafka_enabled and settings.kafka_control_enabled:
        follower = ControlFollower(settings, runner, key=control_key, topic=settings.kafka_control_topic)
        await follower.start()
    else:
        await runner.start()
    try:
        yield runner
    finally:
        if follower is not None:
            await follower.stop()
        await runner.stop(timeout_s)
        await runner.close()


Hook = Callable[[], Awaitable[None]]


def consumer_lifespan(
    runner: ConsumerRunner,
    timeout_s: float,
    *,
    startup: Hook | None = None,
    shutdown: Hook | None = None,
    control_key: str | None = None,
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """The ``lifespan`` of a consumer service's FastAPI app.

    At start ``startup()`` (open the datastore, start side tasks), then the consumer runs for the life of
    the app (:func:`running`). At exit the consumer stops (flush, commit, leave the group; within
    ``timeout_s``), then ``shutdown()`` closes what the service owns. ``shutdown()`` runs whatever happened
    before it — also when ``startup()`` or the consumer's start failed — so it must tolerate closing
    what was never opened.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            if startup is not None:
                await startup()
            async with running(runner, timeout_s, control_key=control_key):
                yield
        finally:
            if shutdown is not None:
                await shutdown()

    return lifespan


def serve(app: FastAPI, settings: HttpSettings, **uvicorn_options: Any) -> None:
    """Run the app; logging stays ours (structlog JSON), SIGTERM triggers the graceful lifespan exit."""
    uvicorn.run(
        app,
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=int(settings.shutdown_timeout_s),
        **uvicorn_options,
    )
