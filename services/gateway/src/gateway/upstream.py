"""Calls to the services that own the data, with one pooled HTTP client per service.

A service that cannot be reached (connection refused, DNS, timeout) is a 503 naming it; a 5xx from it is a
502/503 naming it; its 4xx answers (not found, bad query) pass through with the gateway's error shape.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import Counter, Histogram

from gateway.config import GatewaySettings
from gateway.errors import ApiError, UpstreamUnavailable

UPSTREAM_SECONDS = Histogram(
    "gateway_upstream_request_seconds",
    "Time of calls to upstream services",
    ["service", "outcome"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
UPSTREAM_ERRORS = Counter("gateway_upstream_errors_total", "Upstream calls that failed", ["service", "kind"])

_HOP_HEADERS = {"content-length", "transfer-encoding", "connection", "keep-alive", "content-encoding"}


class Upstreams:
    """One ``httpx.AsyncClient`` per upstream service (connection pooling, timeouts)."""

    def __init__(
        self, settings: GatewaySettings, transports: Mapping[str, httpx.AsyncBaseTransport] | None = None
    ):
        self.urls = settings.service_urls()
        limits = httpx.Limits(
            max_connections=settings.upstream_max_connections,
            max_keepalive_connections=settings.upstream_max_connections,
        )
        timeout = httpx.Timeout(settings.upstream_timeout_s, connect=min(3.0, settings.upstream_timeout_s))
        self.clients = {
            name: httpx.AsyncClient(
                base_url=url,
                timeout=timeout,
                limits=limits,
                transport=(transports or {}).get(name),
                headers={"user-agent": "platform-gateway"},
            )
            for name, url in self.urls.items()
        }

    @property
    def names(self) -> list[str]:
        return list(self.clients)

    async def close(self) -> None:
        for client in self.clients.values():
            await client.aclose()

    def client(self, service: str) -> httpx.AsyncClient:
        try:
            return self.clients[service]
        except KeyError:
            raise ApiError(
                404, "service_not_found", f"unknown service {service!r}: known are {', '.join(self.clients)}"
            ) from None

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
    ) -> httpx.Response:
        """Send one request; unreachable → :class:`UpstreamUnavailable` (503 naming the service)."""
        client = self.client(service)
        started = time.perf_counter()
        try:
            kwargs: dict[str, Any] = {"params": params, "json": json, "headers": headers}
            if timeout is not None:
                kwargs["timeout"] = timeout
            response = await client.request(method, path, **kwargs)
        except httpx.TimeoutException as exc:
            UPSTREAM_ERRORS.labels(service, "timeout").inc()
            UPSTREAM_SECONDS.labels(service, "timeout").observe(time.perf_counter() - started)
            raise UpstreamUnavailable(service, f"timed out ({type(exc).__name__})") from None
        except httpx.TransportError as exc:
            UPSTREAM_ERRORS.labels(service, "connect").inc()
            UPSTREAM_SECONDS.labels(service, "error").observe(time.perf_counter() - started)
            raise UpstreamUnavailable(service, f"cannot connect to {self.urls[service]} ({exc!s})") from None
        UPSTREAM_SECONDS.labels(service, str(response.status_code // 100) + "xx").observe(
            time.perf_counter() - started
        )
        return response

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
        if params is None and request is not None:
            params = list(request.query_params.multi_items())
        response = await self.call(service, method, path, params=params, json=json, headers=headers)
        raise_for_upstream(service, response)
        passed = {k: v for k, v in response.headers.items() if k.lower() not in _HOP_HEADERS}
        return Response(response.content, status_code=response.status_code, headers=passed)

    async def stream(
        self, service: str, path: str, params: Any, request: Request, headers: dict[str, str] | None = None
    ) -> StreamingResponse:
        """Proxy a live (SSE) stream: headers, then every chunk as it arrives, until either side ends."""
        client = self.client(service)
        upstream = client.build_request(
            "GET",
            path,
            params=params,
            headers={"accept": "text/event-stream", **(headers or {})},
            timeout=httpx.Timeout(None, connect=3.0),
        )
        try:
            response = await client.send(upstream, stream=True)
        except httpx.TransportError as exc:
            UPSTREAM_ERRORS.labels(service, "connect").inc()
            raise UpstreamUnavailable(service, f"cannot connect to {self.urls[service]} ({exc!s})") from None
        if response.status_code >= 300:
            await response.aread()
            await response.aclose()
            raise_for_upstream(service, response)

        async def body() -> AsyncIterator[bytes]:
            try:
                async for chunk in response.aiter_raw():
                    yield chunk
                    if await request.is_disconnected():
                        break
            except httpx.TransportError:
                return
            finally:
                await response.aclose()

        headers = {"cache-control": "no-cache", "x-accel-buffering": "no"}
        media = response.headers.get("content-type", "text/event-stream")
        return StreamingResponse(body(), status_code=response.status_code, media_type=media, headers=headers)


def raise_for_upstream(service: str, response: httpx.Response) -> None:
    """Turn a non-2xx upstream answer into the gateway's error (with the upstream's message)."""
    if response.status_code < 300:
        return
    message = _upstream_message(response)
    status = response.status_code
    if status >= 500:
        UPSTREAM_ERRORS.labels(service, str(status)).inc()
        if status in (502, 503, 504):
            raise ApiError(
                503, "upstream_unavailable", f"service {service} is unavailable: {message}", service=service
            )
        raise ApiError(502, "upstream_error", f"service {service} failed: {message}", service=service)
    body = _json_or_none(response)
    field = body.get("field") if isinstance(body, dict) and isinstance(body.get("field"), str) else None
    error = body.get("error") if isinstance(body, dict) and isinstance(body.get("error"), str) else None
    code = error or {404: "not_found", 409: "conflict", 422: "validation_error"}.get(
        status, "upstream_rejected"
    )
    raise ApiError(status, code, message, field=field, service=service)


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _upstream_message(response: httpx.Response) -> str:
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
