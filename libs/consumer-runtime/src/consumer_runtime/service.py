"""One way to assemble a service: :func:`build_service` turns a short declaration (name, settings, topics,
sink, datastore, routers, startup/shutdown) into the FastAPI app, :func:`run_service` is its ``__main__``.

Every service built here has ``app.state.settings`` and ``app.state.runner``, the operational routes
(:func:`~consumer_runtime.http.ops_router`), its topics from the registry under their configured names, and
answers a request that finds its datastore down with the same 503; only a request carrying the internal
token (``INTERNAL_TOKEN``, held by the gateway) may change its state. uvicorn turns SIGTERM into the
lifespan's shutdown, where the consumer stops fetching, flushes what is buffered, commits and leaves its group
before the process exits. With ``METRICS_PORT`` set, ``/metrics`` is served on that port too.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Self, TypeVar

import uvicorn
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from uvicorn.config import STARTUP_FAILURE

from consumer_runtime.auth import InternalTokenGuard
from consumer_runtime.control import ControlFollower
from consumer_runtime.core import Sink
from consumer_runtime.docs import install_docs
from consumer_runtime.http import Check, ops_router
from consumer_runtime.logging import configure_logging, get_logger
from consumer_runtime.metrics_port import bind_metrics_socket, metrics_server, serve_with_metrics
from consumer_runtime.runner import ConsumerRunner
from consumer_runtime.settings import KafkaSettings, load_settings
from consumer_runtime.tracing import configure_tracing, instrument_app

log = get_logger(__name__)


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class HttpSettings(BaseSettings):
    """The HTTP side of a service process: where it listens, how it logs, how long a shutdown may take, the
    metrics port and the internal token."""

    model_config = SettingsConfigDict(env_file=None, extra="ignore", case_sensitive=False)

    http_host: str = "0.0.0.0"
    http_port: int = Field(8080, ge=1, le=65535)
    metrics_port: int = Field(
        0,
        ge=0,
        le=65535,
        description="serve /metrics on this port too (what Prometheus scrapes; 0: only on HTTP_PORT)",
    )
    internal_token: SecretStr | None = Field(
        None,
        description="the bearer token the gateway sends to the services; a service requires it on every "
        "request that is not a plain read and on /admin/* (unset: those refuse with 403)",
    )
    log_level: str = "INFO"
    log_json: bool = True
    shutdown_timeout_s: float = Field(25.0, gt=0, description="keep below terminationGracePeriodSeconds")

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in LOG_LEVELS:
            raise ValueError(f"{value!r} is not a log level: use one of {', '.join(LOG_LEVELS)}")
        return level

    @model_validator(mode="after")
    def _metrics_port_of_its_own(self) -> Self:
        if self.metrics_port and self.metrics_port == self.http_port:
            raise ValueError(
                f"METRICS_PORT ({self.metrics_port}) must differ from HTTP_PORT: the metrics port exists so "
                "that scraping never reaches the API (0 turns it off)"
            )
        return self


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


def from_state(name: str) -> Callable[[Request], Any]:
    """A FastAPI dependency that returns ``app.state.<name>`` (a process-wide client built in the lifespan):
    ``StoreDep = Annotated[IssueStore, Depends(from_state("store"))]``."""

    def dependency(request: Request) -> Any:
        return getattr(request.app.state, name)

    dependency.__name__ = f"state_{name}"
    return dependency


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
    """Run the app; logging stays ours (structlog JSON), SIGTERM triggers the graceful lifespan exit.

    With ``METRICS_PORT`` set, ``/metrics`` is also served on that port, by a second server in the same
    event loop (:mod:`consumer_runtime.metrics_port`) that stops with the app's."""
    options: dict[str, Any] = {
        "host": settings.http_host,
        "port": settings.http_port,
        "log_config": None,
        "access_log": False,
        "timeout_graceful_shutdown": int(settings.shutdown_timeout_s),
        **uvicorn_options,
    }
    if not settings.metrics_port:
        uvicorn.run(app, **options)
        return
    sock = bind_metrics_socket(settings.http_host, settings.metrics_port)
    config = uvicorn.Config(app, **options)
    server = uvicorn.Server(config)
    metrics = metrics_server(settings.http_host, settings.metrics_port)
    log.info("metrics port", port=settings.metrics_port, path="/metrics")
    try:
        with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:
            runner.run(serve_with_metrics(server.serve, metrics, sock))
    except KeyboardInterrupt:
        pass
    if not server.started:
        sys.exit(STARTUP_FAILURE)  # the start failed (uvicorn logged why): the exit status uvicorn.run gives


@dataclass(frozen=True, slots=True)
class Datastore:
    """The datastore a service writes to and serves from: ``name`` names its readiness check and its 503s,
    ``ping`` is the check, ``down`` the exceptions it raises while unreachable (answered 503)."""

    name: str
    ping: Check
    down: tuple[type[Exception], ...] = (OSError, TimeoutError)


def answer_down_datastore(app: FastAPI, datastore: Datastore) -> None:
    """A request that finds the datastore down answers 503 ``{"detail": "<name> unavailable (request id
    <id>; …)", "request_id": <id>}``. The datastore's error text (SQL, addresses, server messages) goes to the
    log under that id, never to the client."""

    async def unavailable(request: Request, exc: Exception) -> JSONResponse:
        request_id = uuid.uuid4().hex[:12]
        log.warning(
            f"request failed: {datastore.name} unavailable",
            path=request.url.path,
            error=repr(exc),
            request_id=request_id,
        )
        detail = f"{datastore.name} unavailable (request id {request_id}; see the service's logs)"
        return JSONResponse({"detail": detail, "request_id": request_id}, status_code=503)

    for error in dict.fromkeys((*datastore.down, OSError, TimeoutError)):
        app.add_exception_handler(error, unavailable)


def build_service(
    *,
    name: str,
    description: str,
    settings: ServiceSettings,
    topics: Sequence[str],
    sink: Sink,
    datastore: Datastore,
    routers: Sequence[APIRouter] = (),
    startup: Hook | None = None,
    shutdown: Hook | None = None,
    degraded_checks: Mapping[str, Check] | None = None,
    state: Mapping[str, Any] | None = None,
) -> FastAPI:
    """The app of a consuming service.

    Every request to it that is not a plain read (``GET``/``HEAD``), and every ``/admin/*`` request, needs
    ``Authorization: Bearer <INTERNAL_TOKEN>`` (:class:`~consumer_runtime.auth.InternalTokenGuard`).
    ``topics`` are default names of the registry (``platform_events.TOPIC_*``), consumed under the names
    configured for them; ``startup``/``shutdown`` open and close what the service owns (see
    :func:`consumer_lifespan`); ``degraded_checks`` are reported by ``/readyz`` without gating it; ``state``
    is set on ``app.state`` next to ``settings`` and ``runner``.
    """
    runner = ConsumerRunner(
        name=name, settings=settings, topics=[settings.topic(t) for t in topics], sink=sink
    )
    app = FastAPI(
        title=name,
        description=description,
        version="0.1.0",
        lifespan=consumer_lifespan(runner, settings.shutdown_timeout_s, startup=startup, shutdown=shutdown),
        docs_url=None,  # served by install_docs from the package's own Swagger UI files (no CDN)
        redoc_url=None,  # ReDoc would load from a CDN; /docs is the one docs UI
    )
    install_docs(app)
    app.state.settings = settings
    app.state.runner = runner
    for key, value in (state or {}).items():
        setattr(app.state, key, value)
    app.include_router(
        ops_router(
            service=name,
            runner=runner,
            checks={datastore.name: datastore.ping},
            degraded_checks=degraded_checks,
        )
    )
    for router in routers:
        app.include_router(router)
    answer_down_datastore(app, datastore)
    # only the gateway changes a service's state: every request but a plain read, and /admin/*, needs the
    # internal token (consumer_runtime.auth); reads stay open to what the NetworkPolicies let in (the gateway)
    app.add_middleware(InternalTokenGuard, service=name, token=settings.internal_token)
    if settings.internal_token is None or not settings.internal_token.get_secret_value():
        log.warning(
            "INTERNAL_TOKEN is not set: consumer control, deletes, other writes and /admin/* refuse (403)",
            service=name,
        )
    configure_tracing(name)  # already done by run_service; off unless OTEL_* asks for it
    instrument_app(app)
    return app


AnySettings = TypeVar("AnySettings", bound=HttpSettings)


def run_service(
    name: str,
    settings_class: type[AnySettings],
    create_app: Callable[[AnySettings], FastAPI],
    **uvicorn_options: Any,
) -> None:
    """``python -m <service>``: settings from the environment (a bad variable stops the start naming it),
    JSON logs, tracing when the ``OTEL_*`` variables ask for it (set up before the app makes its datastore
    clients, so their calls are traced), serve the app until SIGTERM (``uvicorn_options`` go to uvicorn)."""
    settings = load_settings(settings_class)
    configure_logging(name, settings.log_level, json=settings.log_json)
    configure_tracing(name)  # a bad OTEL_* value stops the start naming it (ConfigError)
    serve(create_app(settings), settings, **uvicorn_options)
