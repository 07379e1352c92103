"""``/metrics`` on a port of its own (``METRICS_PORT``), so Prometheus may scrape a process without being able
to reach its API: the NetworkPolicies let the monitoring namespace reach this port and nothing else.

The port is served by a second uvicorn server in the same event loop as the API (:func:`serve`, used by
``consumer_runtime.service.serve`` for every service and the gateway). It answers ``GET /metrics`` (and
``HEAD``) from the process's Prometheus registry - the same text as ``/metrics`` on the main port - and 404
to every other path: no route of the API is reachable through it. It stops with the API server: the main
server owns the signals (SIGTERM: graceful shutdown), this one never installs handlers of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Awaitable, Callable, Generator

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from starlette.types import Receive, Scope, Send

from consumer_runtime.settings import ConfigError

__all__ = ["MetricsApp", "bind_metrics_socket", "metrics_server", "serve_with_metrics"]

METRICS_PATH = "/metrics"


class MetricsApp:
    """The ASGI app of the metrics port: ``GET``/``HEAD /metrics`` only."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.registry = registry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # no lifespan (the server runs with lifespan="off"), no websockets
            return
        if scope["path"] != METRICS_PATH:
            await self._answer(send, 404, b'{"detail":"Not Found"}', "application/json")
            return
        if scope["method"] not in ("GET", "HEAD"):
            await self._answer(send, 405, b'{"detail":"Method Not Allowed"}', "application/json", allow=True)
            return
        body = generate_latest(self.registry)
        await self._answer(send, 200, body, CONTENT_TYPE_LATEST, head=scope["method"] == "HEAD")

    @staticmethod
    async def _answer(
        send: Send, status: int, body: bytes, media_type: str, *, allow: bool = False, head: bool = False
    ) -> None:
        headers = [(b"content-type", media_type.encode()), (b"content-length", str(len(body)).encode())]
        if allow:
            headers.append((b"allow", b"GET, HEAD"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if head else body})


class _FollowerServer(uvicorn.Server):
    """A uvicorn server that leaves the process's signals to the main server (it is stopped by it)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def bind_metrics_socket(host: str, port: int) -> socket.socket:
    """The listening socket of the metrics port, bound before anything starts: a port already taken stops
    the start with a message naming ``METRICS_PORT``."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family=family)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"invalid configuration: METRICS_PORT: cannot listen on {host}:{port} ({exc})"
        ) from None
    sock.set_inheritable(True)
    return sock


def metrics_server(host: str, port: int, registry: CollectorRegistry = REGISTRY) -> uvicorn.Server:
    """The (not yet started) server of the metrics port."""
    config = uvicorn.Config(
        MetricsApp(registry),
        host=host,
        port=port,
        lifespan="off",
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=1,
    )
    return _FollowerServer(config)


async def serve_with_metrics(
    main: Callable[[], Awaitable[None]], metrics: uvicorn.Server, sock: socket.socket
) -> None:
    """Run ``main()`` (the API server's ``serve``) and the metrics server next to it, in this event loop;
    the metrics server stops when the API server has (the last scrape sees the shutdown's final counts)."""
    task = asyncio.create_task(metrics.serve(sockets=[sock]), name="metrics-port")
    try:
        await main()
    finally:
        metrics.should_exit = True
        with contextlib.suppress(Exception):
            await task
