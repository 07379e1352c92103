"""One wide event per HTTP request (ASGI middleware) or per job (``wide_event`` context manager).

Handlers add context to the current event with :func:`annotate` (``annotate(user_id=..., order_id=...)``);
the event is finalized when the response is finished, with method, path, route, status, duration,
request/user ids and the error (if any).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from wide_logging.logger import WideLogger

__all__ = ["WideEventMiddleware", "annotate", "current_event", "wide_event"]

_current: ContextVar[dict[str, Any] | None] = ContextVar("wide_logging_event", default=None)

_MAX_ERROR_CHARS = 2000


def current_event() -> dict[str, Any] | None:
    """The wide event of the request/job being handled, or None outside of one."""
    return _current.get()


def annotate(**fields: Any) -> None:
    """Add fields to the current wide event (no-op outside a request/job)."""
    event = _current.get()
    if event is not None:
        event.update(fields)


def _level(status: int | None, error: bool) -> str:
    if error or status is None or status >= 500:
        return "error"
    return "warn" if status >= 400 else "info"


def _error(exc: BaseException) -> dict[str, str]:
    return {"type": type(exc).__name__, "message": str(exc)[:_MAX_ERROR_CHARS]}


@contextmanager
def wide_event(logger: WideLogger, operation: str, **context: Any) -> Iterator[dict[str, Any]]:
    """A wide event around a job or any unit of work (sync or async code)::

        with wide_event(logger, "nightly-report", tenant="t1") as ev:
            ev["rows"] = build_report()

    Records ``duration_ms``, ``level`` and the ``error`` if the block raises (the exception propagates).
    """
    event = logger.event(kind="job", operation=operation, **context)
    token = _current.set(event)
    started = time.perf_counter()
    failed = False
    try:
        yield event
    except BaseException as exc:
        failed = True
        event["error"] = _error(exc)
        raise
    finally:
        _current.reset(token)
        event["duration_ms"] = round((time.perf_counter() - started) * 1000, 3)
        event.setdefault("level", "error" if failed else "info")
        logger.finalize(event)


class WideEventMiddleware:
    """Pure ASGI middleware (streaming-safe, no BaseHTTPMiddleware): one wide event per HTTP request.

    ``app.add_middleware(WideEventMiddleware, logger=wide_logger)``. The request id comes from the
    ``X-Request-ID`` header (generated when absent) and is echoed in the response; the user id from
    ``X-User-ID`` unless the handler calls ``annotate(user_id=...)``. Inside an OpenTelemetry span (tracing
    on) the event carries ``trace_id``/``span_id`` and the response an ``X-Trace-ID`` header.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        logger: WideLogger,
        request_id_header: str = "x-request-id",
        user_id_header: str = "x-user-id",
        skip_paths: Iterable[str] = ("/healthz", "/readyz", "/metrics"),
    ) -> None:
        self.app = app
        self.logger = logger
        self.request_id_header = request_id_header.lower()
        self.user_id_header = user_id_header.lower()
        self.skip_paths = frozenset(skip_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in self.skip_paths:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        request_id = headers.get(self.request_id_header) or uuid.uuid4().hex
        client = scope.get("client")
        event = self.logger.event(
            kind="http_request",
            request_id=request_id[:128],
            method=scope.get("method"),
            path=scope.get("path"),
        )
        if query := scope.get("query_string", b"").decode("latin-1"):
            event["query"] = query[:2000]
        if user_id := headers.get(self.user_id_header):
            event["user_id"] = user_id[:128]
        if client:
            event["client_ip"] = client[0]
        if agent := headers.get("user-agent"):
            event["user_agent"] = agent[:512]
        status: list[int] = []

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.append(int(message["status"]))
                response_headers = MutableHeaders(scope=message)
                response_headers.append("X-Request-ID", request_id)
                if trace_id := event.get("trace_id"):  # the request's trace (tracing on): find it by this
                    response_headers.append("X-Trace-ID", trace_id)
            await send(message)

        token = _current.set(event)
        started = time.perf_counter()
        failed = False
        try:
            await self.app(scope, receive, send_wrapper)
        except BaseException as exc:
            failed = True
            event["error"] = _error(exc)
            raise
        finally:
            _current.reset(token)
            event["duration_ms"] = round((time.perf_counter() - started) * 1000, 3)
            event["status"] = status[0] if status else 500
            route = getattr(scope.get("route"), "path", None)
            if route:
                event["route"] = route
            event.setdefault("level", _level(event["status"], failed))
            self.logger.finalize(event)
