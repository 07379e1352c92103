"""Calls to the services that own the data, with one pooled HTTP client per service.

A service that cannot be reached (connection refused, DNS, timeout) is a 503 naming it; a 5xx from it is a
502/503 naming it; its 4xx answers (not found, bad query) pass through with the gateway's error shape.

Every call carries ``Authorization: Bearer <INTERNAL_TOKEN>``: the services accept a state-changing request
(consumer control, deletes, marking read, preferences, ``/admin/*``) only with it, and only the gateway holds
it. A service refusing it (401/403: the token differs, or is unset on either side) is the platform's
misconfiguration, not the caller's: a 502 saying so, never the service's 401 passed on to the client.

The client is an ``aiohttp.ClientSession`` per service: on the forward path it costs a fraction of
``httpx.AsyncClient``'s CPU per request (measured: benchmarks/bench_gateway.py, services/gateway/README.md).
"""

from __future__ import annotations

import json as jsonlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import unquote

import aiohttp
from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import Counter, Histogram
from starlette.types import Receive, Scope, Send
from yarl import URL

from gateway.abuse import StreamSlots, caller
from gateway.config import GatewaySettings
from gateway.errors import ApiError, UpstreamUnavailable, hidden

UPSTREAM_SECONDS = Histogram(
    "gateway_upstream_request_seconds",
    "Time of calls to upstream services",
    ["service", "outcome"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
UPSTREAM_ERRORS = Counter("gateway_upstream_errors_total", "Upstream calls that failed", ["service", "kind"])

_HOP_HEADERS = {"content-length", "transfer-encoding", "connection", "keep-alive", "content-encoding"}
_HOP_RAW = frozenset(h.encode() for h in _HOP_HEADERS)
_USER_AGENT = "platform-gateway"
# Idle pooled connections are dropped before the services' own keep-alive (uvicorn: 5 s) closes them, so a
# request is not sent on a connection the server is closing; a GET that still meets one is retried once.
_KEEPALIVE_S = 4.0
_RETRY_ONCE = frozenset({"GET", "HEAD"})
_STREAM_TIMEOUT = aiohttp.ClientTimeout(total=None, connect=3.0, sock_connect=3.0, sock_read=None)


class UpstreamResponse:
    """A complete upstream answer: status, headers, body (read before the connection went back to the
    pool)."""

    __slots__ = ("content", "raw_headers", "status_code")

    def __init__(self, status_code: int, raw_headers: list[tuple[bytes, bytes]], content: bytes) -> None:
        self.status_code = status_code
        self.raw_headers = raw_headers
        self.content = content

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        """The decoded body; ``ValueError`` when it is not JSON."""
        return jsonlib.loads(self.content)


class _LiveStream(StreamingResponse):
    """A proxied stream that ends its upstream side (``end``) when the response is done, however it ends."""

    def __init__(self, content: AsyncIterator[bytes], end: Callable[[], None], **kw: Any) -> None:
        super().__init__(content, **kw)
        self._end = end

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._end()


class Upstreams:
    """One pooled client per upstream service (connection pooling, timeouts)."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.urls = settings.service_urls()
        self._limit = settings.upstream_max_connections
        timeout_s = settings.upstream_timeout_s
        self._timeout = self._client_timeout(timeout_s)
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {timeout_s: self._timeout}
        self._sessions: dict[str, aiohttp.ClientSession] = {}  # made on first use, inside the event loop
        # Live streams have their own pool per service, sized to the stream cap: however many are open,
        # the calls above never wait for a connection a stream holds.
        self._stream_sessions: dict[str, aiohttp.ClientSession] = {}
        self.stream_slots = StreamSlots(
            settings.stream_max_per_user, settings.stream_max_total, settings.stream_retry_after_s
        )
        self._closed = False
        self._streams: set[aiohttp.ClientResponse] = set()  # live (SSE) proxies: close_streams() ends them
        self._seconds: dict[tuple[str, str], Any] = {}  # metric children, cached (labels() locks each time)
        token = settings.internal_token.get_secret_value() if settings.internal_token is not None else ""
        self._headers = {"user-agent": _USER_AGENT}
        if token:  # sent on every call; a service refuses its state-changing endpoints without it
            self._headers["authorization"] = f"Bearer {token}"

    @property
    def names(self) -> list[str]:
        return list(self.urls)

    def close_streams(self) -> int:
        """End every live stream now (SIGTERM): an endless SSE response would otherwise hold the server's
        graceful shutdown for its whole timeout. New streams are refused from here on. Returns how many."""
        self._closed = True
        streams, self._streams = list(self._streams), set()
        for upstream in streams:
            upstream.close()
        return len(streams)

    async def close(self) -> None:
        self._closed = True
        for session in (*self._sessions.values(), *self._stream_sessions.values()):
            await session.close()
        self._sessions.clear()
        self._stream_sessions.clear()

    @staticmethod
    def _client_timeout(seconds: float) -> aiohttp.ClientTimeout:
        """One timeout as httpx meant it: connect (≤ 3 s), pool wait and each read bounded, no total."""
        return aiohttp.ClientTimeout(
            total=None, connect=seconds, sock_connect=min(3.0, seconds), sock_read=seconds
        )

    def _timeout_of(self, seconds: float) -> aiohttp.ClientTimeout:
        timeout = self._timeouts.get(seconds)
        if timeout is None:
            timeout = self._timeouts[seconds] = self._client_timeout(seconds)
        return timeout

    def _session(self, service: str) -> aiohttp.ClientSession:
        """The service's session (callers checked the name with :meth:`_check`)."""
        session = self._sessions.get(service)
        if session is None:
            if self._closed:
                raise UpstreamUnavailable(service, "the gateway is shutting down")
            connector = aiohttp.TCPConnector(
                limit=self._limit, limit_per_host=0, keepalive_timeout=_KEEPALIVE_S
            )
            session = aiohttp.ClientSession(connector=connector, timeout=self._timeout, headers=self._headers)
            self._sessions[service] = session
        return session

    def _stream_session(self, service: str) -> aiohttp.ClientSession:
        """The service's pool of live streams (separate from :meth:`_session`'s)."""
        session = self._stream_sessions.get(service)
        if session is None:
            connector = aiohttp.TCPConnector(limit=self.stream_slots.total, limit_per_host=0)
            session = aiohttp.ClientSession(
                connector=connector, timeout=_STREAM_TIMEOUT, headers={"user-agent": _USER_AGENT}
            )
            self._stream_sessions[service] = session
        return session

    def _check(self, service: str, path: str) -> None:
        """The service is known and ``path`` names a path of it: no segment (an id, percent-encoded) holds a
        ``/`` or ``\\`` or is a dot segment, which would lead the upstream URL elsewhere (a second guard
        behind :class:`gateway.middleware.SafePathIds`, for ids from anywhere else: query, form)."""
        for segment in path.split("?", 1)[0].split("/")[1:]:
            decoded = unquote(segment) if "%" in segment else segment
            if decoded in (".", "..") or "/" in decoded or "\\" in decoded:
                raise ApiError(
                    422,
                    "validation_error",
                    "an id must not contain '/' nor be '.' or '..' (also percent-encoded)",
                )
        if service not in self.urls:
            raise ApiError(
                404, "service_not_found", f"unknown service {service!r}: known are {', '.join(self.urls)}"
            )

    def _observe(self, service: str, outcome: str, started: float) -> None:
        child = self._seconds.get((service, outcome))
        if child is None:
            child = self._seconds[(service, outcome)] = UPSTREAM_SECONDS.labels(service, outcome)
        child.observe(time.perf_counter() - started)

    def _unreachable(self, service: str, exc: BaseException, started: float) -> UpstreamUnavailable:
        if isinstance(exc, TimeoutError):
            UPSTREAM_ERRORS.labels(service, "timeout").inc()
            self._observe(service, "timeout", started)
            return UpstreamUnavailable(service, "timed out", f"{type(exc).__name__} ({self.urls[service]})")
        UPSTREAM_ERRORS.labels(service, "connect").inc()
        self._observe(service, "error", started)
        return UpstreamUnavailable(service, "cannot connect", f"{self.urls[service]}: {exc!r}")

    async def call(
        self,
        service: str,
        method: str,
        path: str,
        *,
        params: Any = None,
        json: Any = None,
        timeout: float | None = None,
        headers: dict[str, str] | None = None,
    ) -> UpstreamResponse:
        """Send one request; unreachable → :class:`UpstreamUnavailable` (503 naming the service)."""
        self._check(service, path)
        started = time.perf_counter()
        try:
            response = await self._send(service, method, path, params, json, timeout, headers)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise self._unreachable(service, exc, started) from None
        self._observe(service, f"{response.status_code // 100}xx", started)
        return response

    async def _send(
        self,
        service: str,
        method: str,
        path: str,
        params: Any,
        json: Any,
        timeout: float | None,
        headers: dict[str, str] | None,
    ) -> UpstreamResponse:
        session = self._session(service)
        url = URL(self.urls[service] + path)  # the path arrives percent-encoded (``seg``); kept as is
        client_timeout = self._timeout if timeout is None else self._timeout_of(timeout)
        for attempt in (1, 2):
            try:
                async with session.request(
                    method,
                    url,
                    params=params or None,
                    json=json,
                    headers=headers,
                    timeout=client_timeout,
                ) as response:
                    content = await response.read()
                    return UpstreamResponse(response.status, list(response.raw_headers), content)
            except aiohttp.ServerDisconnectedError:
                # A pooled connection the server closed while idle: safe to send a GET again, once.
                if attempt == 2 or method not in _RETRY_ONCE:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def json(self, service: str, method: str, path: str, **kw: Any) -> Any:
        """Call and return the decoded JSON of a 2xx answer; other answers become gateway errors."""
        response = await self.call(service, method, path, **kw)
        raise_for_upstream(service, response)
        try:
            return response.json()
        except ValueError:
            raise ApiError(
                502, "upstream_error", f"service {service} answered with non-JSON", service=service
            ) from None

    async def forward(
        self,
        service: str,
        method: str,
        path: str,
        request: Request | None = None,
        *,
        params: Any = None,
        json: Any = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        """Proxy to ``service`` and hand its 2xx answer back unchanged (status, JSON body)."""
        if params is None and request is not None and request.scope.get("query_string"):
            params = request.query_params.multi_items()
        response = await self.call(service, method, path, params=params, json=json, headers=headers)
        raise_for_upstream(service, response)
        out = Response(response.content, status_code=response.status_code)  # sets content-length
        for name, value in response.raw_headers:
            if (name := name.lower()) not in _HOP_RAW:
                out.raw_headers.append((name, value))
        return out

    async def stream(
        self, service: str, path: str, params: Any, request: Request, headers: dict[str, str] | None = None
    ) -> StreamingResponse:
        """Proxy a live (SSE) stream: headers, then every chunk as it arrives, until either side ends.

        Each stream holds a slot of :attr:`stream_slots` (per caller and in total; over either: 429) and a
        connection of the streams' own pool until it ends."""
        self._check(service, path)
        if self._closed:
            raise UpstreamUnavailable(service, "the gateway is shutting down")
        key = caller(request)
        self.stream_slots.take(key)
        try:
            upstream = await self._open_stream(service, path, params, headers)
        except BaseException:
            self.stream_slots.give_back(key)
            raise
        self._streams.add(upstream)
        ended = False

        def end() -> None:
            """Once, however the stream ends (also when the client left before its first chunk, when the
            body generator never starts and so never reaches its ``finally``)."""
            nonlocal ended
            if not ended:
                ended = True
                self._streams.discard(upstream)
                upstream.close()  # an endless stream: drop the connection rather than drain it
                self.stream_slots.give_back(key)

        async def body() -> AsyncIterator[bytes]:
            try:
                async for chunk in upstream.content.iter_any():
                    yield chunk
                    if await request.is_disconnected():
                        break
            except (TimeoutError, aiohttp.ClientError):
                return
            finally:
                end()

        return _LiveStream(
            body(),
            end,
            status_code=upstream.status,
            media_type=upstream.headers.get("content-type", "text/event-stream"),
            headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
        )

    async def _open_stream(
        self, service: str, path: str, params: Any, headers: dict[str, str] | None
    ) -> aiohttp.ClientResponse:
        """The upstream's answer to a stream request, with a 2xx status (else its error is raised)."""
        sent = {"accept": "text/event-stream", **(headers or {})}
        started = time.perf_counter()
        try:
            upstream = await self._stream_session(service).get(
                URL(self.urls[service] + path), params=params or None, headers=sent, timeout=_STREAM_TIMEOUT
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise self._unreachable(service, exc, started) from None
        if upstream.status >= 300:
            try:
                content = await upstream.read()
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise self._unreachable(service, exc, started) from None
            finally:
                upstream.release()
            raise_for_upstream(service, UpstreamResponse(upstream.status, [], content))
        return upstream


def raise_for_upstream(service: str, response: UpstreamResponse) -> None:
    """Turn a non-2xx upstream answer into the gateway's error. A 4xx passes the upstream's message on (it is
    about the request); a 5xx's message (a datastore's error text, say) is logged under a request id and the
    client gets a generic one naming the service and that id."""
    if response.status_code < 300:
        return
    message = _upstream_message(response)
    status = response.status_code
    if status in (401, 403):
        # only the internal-token guard answers these: the gateway and the service disagree on INTERNAL_TOKEN
        UPSTREAM_ERRORS.labels(service, str(status)).inc()
        raise ApiError(
            502,
            "upstream_refused",
            f"service {service} refused the gateway's call: INTERNAL_TOKEN must be set, and the same, on "
            "the gateway and the services",
            service=service,
        )
    if status >= 500:
        UPSTREAM_ERRORS.labels(service, str(status)).inc()
        cause = f"HTTP {status}: {message}"
        if status in (502, 503, 504):
            raise hidden(
                503, "upstream_unavailable", f"service {service} is unavailable", cause, service=service
            )
        raise hidden(502, "upstream_error", f"service {service} failed", cause, service=service)
    body = _json_or_none(response)
    field = body.get("field") if isinstance(body, dict) and isinstance(body.get("field"), str) else None
    error = body.get("error") if isinstance(body, dict) and isinstance(body.get("error"), str) else None
    code = error or {404: "not_found", 409: "conflict", 422: "validation_error"}.get(
        status, "upstream_rejected"
    )
    raise ApiError(status, code, message, field=field, service=service)


def _json_or_none(response: UpstreamResponse) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _upstream_message(response: UpstreamResponse) -> str:
    body = _json_or_none(response)
    if isinstance(body, dict):
        for key in ("message", "detail", "error"):
            value = body.get(key)
            if isinstance(value, str) and value:
                return value
            if isinstance(value, list) and value:
                first = value[0]
                if isinstance(first, dict):
                    loc = ".".join(str(p) for p in first.get("loc", [])[1:])
                    return f"{loc}: {first.get('msg')}" if loc else str(first.get("msg"))
        return str(body)[:300]
    text = response.text.strip()
    return text[:300] or f"HTTP {response.status_code}"


def json_response(data: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(data, status_code=status)
