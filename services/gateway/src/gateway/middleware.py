"""Pure-ASGI middleware (cheap: no per-request task): request size limit, trusted proxies, safe path ids,
request log and metrics. One structured log line per request (method, route, status, duration) — the wide
event."""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Sequence
from re import Pattern
from typing import Any
from urllib.parse import unquote

from prometheus_client import Counter, Histogram
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Mount, Router, compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.config import IPNetwork
from gateway.logs import log

REQUESTS = Counter("gateway_http_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram(
    "gateway_http_request_seconds",
    "HTTP request duration",
    ["method", "route"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


class BodyLimit:
    """413 for bodies above ``max_bytes``, on every route (the console's too).

    A declared ``Content-Length`` above the limit is refused before anything is read (the server holds the
    body to its declared length). A body without one (``Transfer-Encoding: chunked``) is read here, at most
    ``max_bytes`` of it, before the app sees it: refused at the first byte past the limit, else handed on
    whole. So no handler ever meets an oversize body, however it reads it."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared: int | None = None
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = None
                break
        if declared is not None:
            if declared > self.max_bytes:
                too_large = self._too_large(
                    f"request body of {declared} bytes exceeds {self.max_bytes} bytes"
                )
                await too_large(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        parts: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client left while sending
                return
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > self.max_bytes:
                await self._too_large(f"request body exceeds {self.max_bytes} bytes")(scope, receive, send)
                return
            parts.append(chunk)
            if not message.get("more_body", False):
                break
        whole: Message | None = {"type": "http.request", "body": b"".join(parts), "more_body": False}

        async def replay() -> Message:
            nonlocal whole
            if whole is not None:
                message, whole = whole, None
                return message
            return await receive()  # after the body: only the disconnect is left to hear

        await self.app(scope, replay, send)

    @staticmethod
    def _too_large(message: str) -> JSONResponse:
        # the rest of the body is not read: the connection closes after the answer
        return JSONResponse({"error": "payload_too_large", "message": message}, 413, {"connection": "close"})


class TrustedProxies:
    """Behind the proxies of ``TRUSTED_PROXIES`` (IPs/CIDRs; the Ingress controller) a request's scheme is
    its ``X-Forwarded-Proto`` and its client the last address of ``X-Forwarded-For`` that is not one of
    those proxies. From any other peer both headers are ignored: a client cannot claim TLS or another
    address. (uvicorn's own proxy-header handling is off: ``gateway.__main__``.)"""

    def __init__(self, app: ASGIApp, networks: Sequence[IPNetwork]) -> None:
        self.app = app
        self.networks = tuple(networks)

    def trusted(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in self.networks)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.networks and scope["type"] in ("http", "websocket"):
            client = scope.get("client")
            if client and self.trusted(client[0]):
                protos: list[str] = []
                hops: list[str] = []
                for name, value in scope.get("headers", []):
                    if name == b"x-forwarded-proto":
                        protos += value.decode("latin-1").split(",")
                    elif name == b"x-forwarded-for":  # repeated headers are one list, in order
                        hops += [h.strip() for h in value.decode("latin-1").split(",") if h.strip()]
                proto = protos[-1].strip().lower() if protos else ""
                if proto in ("http", "https"):
                    secure = proto == "https"
                    if scope["type"] == "websocket":
                        scope["scheme"] = "wss" if secure else "ws"
                    else:
                        scope["scheme"] = proto
                if hops:
                    host = next((h for h in reversed(hops) if not self.trusted(h)), hops[0])
                    scope["client"] = (host, 0)
        await self.app(scope, receive, send)


_SUSPECT = (b"%2f", b"%2e", b"%5c", b"/.", b"\\")


def _bad_id(value: str) -> bool:
    """A path parameter that would leave its segment upstream: contains ``/`` or is ``.`` / ``..``."""
    decoded = unquote(value)
    return "/" in decoded or "\\" in decoded or decoded in (".", "..")


def route_templates(routes: Sequence[Any], prefix: str = "") -> list[str]:
    """The path template of every route, also inside included routers and mounted apps."""
    out: list[str] = []
    for route in routes:
        if isinstance(route, Mount):
            out += route_templates(route.routes, prefix + route.path)
        elif hasattr(route, "original_router"):  # FastAPI's lazily included router
            out += route_templates(list(route.original_router.routes), prefix + route.include_context.prefix)
        elif isinstance(route, BaseRoute) and isinstance(path := getattr(route, "path", None), str):
            out.append(prefix + path)
    return out


def _refused_param(patterns: Sequence[Pattern[str]], raw_path: str) -> str | None:
    """The first path parameter of a route matching ``raw_path`` (still percent-encoded, so ``a%2Fb`` is one
    segment) that is not a safe id, else ``None``."""
    for pattern in patterns:
        match = pattern.match(raw_path)
        if match is None:
            continue
        for name, value in match.groupdict().items():
            if _bad_id(value):
                return name
    return None


class SafePathIds:
    """422 naming the parameter for a path parameter that contains ``/`` (also as ``%2F``) or is a dot
    segment (``.``, ``..``, also as ``%2E``), before routing and so before any proxying: such an id would
    name another path of the upstream service. Matched on the raw path, where ``a%2Fb`` is one segment
    (routing on the decoded path would have split it and answered another route)."""

    def __init__(self, app: ASGIApp, router: Router) -> None:
        self.app = app
        self.router = router
        self._patterns: list[Pattern[str]] | None = None

    def patterns(self) -> list[Pattern[str]]:
        """The routes' templates as regexes over the raw path (built once, at the first suspect request)."""
        if self._patterns is None:
            templates = dict.fromkeys(t for t in route_templates(self.router.routes) if "{" in t)
            self._patterns = [compile_path(t)[0] for t in templates if ":path}" not in t]
        return self._patterns

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            raw = scope.get("raw_path") or scope.get("path", "").encode("utf-8")
            lowered = raw.lower()
            if any(s in lowered for s in _SUSPECT):
                name = _refused_param(self.patterns(), raw.decode("latin-1"))
                if name is not None:
                    await self._refusal(name)(scope, receive, send)
                    return
        await self.app(scope, receive, send)

    @staticmethod
    def _refusal(name: str) -> JSONResponse:
        message = f"{name}: an id must not contain '/' nor be '.' or '..' (also percent-encoded)"
        detail = {"field": name, "location": "path", "message": message.split(": ", 1)[1]}
        body = {"error": "validation_error", "message": message, "field": name, "details": [detail]}
        return JSONResponse(body, 422)


class RequestLog:
    """Counts and times every request by route template, and logs one line per request."""

    def __init__(self, app: ASGIApp, *, log_lines: bool = True) -> None:
        self.app = app
        self.log_lines = log_lines
        # Metric children by label values: ``labels()`` takes a lock and builds a key on every call.
        self._counts: dict[tuple[str, str, int], Any] = {}
        self._latencies: dict[tuple[str, str], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            elapsed = time.perf_counter() - started
            route: Any = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "")
            count = self._counts.get((method, template, status))
            if count is None:
                count = self._counts[(method, template, status)] = REQUESTS.labels(method, template, status)
            count.inc()
            latency = self._latencies.get((method, template))
            if latency is None:
                latency = self._latencies[(method, template)] = LATENCY.labels(method, template)
            latency.observe(elapsed)
            if self.log_lines and template not in ("/healthz", "/readyz", "/metrics"):
                log.info(
                    "request",
                    method=method,
                    path=scope.get("path"),
                    route=template,
                    status=status,
                    duration_ms=round(elapsed * 1000, 3),
                    client=(scope.get("client") or ("", 0))[0],
                )
