"""``Upstreams``: the forward/json/stream rules, over the network (aiohttp, against a small aiohttp.web
upstream on a free port)."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from fastapi import Request
from gateway.config import GatewaySettings
from gateway.errors import ApiError
from gateway.upstream import Upstreams
from structlog.testing import capture_logs

SERVICE = "issue-ingestor"


async def _issue(request: web.Request) -> web.Response:
    issue_id = request.match_info["issue_id"]
    if issue_id == "missing":
        return web.json_response({"detail": "issue 'missing' not found"}, status=404)
    if issue_id == "boom":
        return web.json_response({"detail": "database exploded"}, status=500)
    if issue_id == "busy":
        return web.json_response({"message": "shutting down"}, status=503)
    if issue_id == "slow":
        await asyncio.sleep(2)
    body = {"issue": issue_id, "raw_path": request.raw_path, "query": list(request.query.items())}
    return web.json_response(body, headers={"x-upstream": "yes"})


async def _echo(request: web.Request) -> web.Response:
    return web.json_response({"method": request.method, "body": await request.json()}, status=201)


async def _stream(request: web.Request) -> web.StreamResponse:
    if request.match_info["user"] == "nobody":
        return web.json_response({"detail": "no such user"}, status=404)
    response = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await response.prepare(request)
    for n in range(3):
        await response.write(f"id: {n}\ndata: {request.query.get('after', '-')}\n\n".encode())
    return response


def _upstream_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/issues/{issue_id}", _issue)
    app.router.add_post("/echo", _echo)
    app.router.add_get("/stream/{user}", _stream)
    return app


@pytest.fixture
async def upstream_url() -> AsyncIterator[str]:
    runner = web.AppRunner(_upstream_app())
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    site = web.SockSite(runner, sock)
    await site.start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    await runner.cleanup()


@pytest.fixture
async def upstreams(upstream_url: str) -> AsyncIterator[Upstreams]:
    settings = GatewaySettings(kafka_enabled=False, issue_ingestor_url=upstream_url, upstream_timeout_s=1.0)
    ups = Upstreams(settings)
    yield ups
    await ups.close()


def _request(query: bytes = b"") -> Request:
    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    scope = {"type": "http", "method": "GET", "path": "/", "query_string": query, "headers": []}
    return Request(scope, receive)


async def test_forward_passes_a_2xx_through(upstreams: Upstreams) -> None:
    response = await upstreams.forward(
        SERVICE, "GET", "/issues/A%3FB%20%ED%95%9C", _request(b"a=1&a=2&b=%ED%95%9C")
    )
    assert response.status_code == 200
    body = json.loads(bytes(response.body))
    assert body["raw_path"].startswith("/issues/A%3FB%20%ED%95%9C")  # the encoded path is kept as sent
    assert body["query"] == [["a", "1"], ["a", "2"], ["b", "한"]]
    headers = {k.decode(): v.decode() for k, v in response.raw_headers}
    assert headers["x-upstream"] == "yes"
    assert headers["content-type"].startswith("application/json")
    assert headers["content-length"] == str(len(bytes(response.body)))
    assert [k for k, _ in response.raw_headers].count(b"content-length") == 1


async def test_json_call_with_a_body(upstreams: Upstreams) -> None:
    assert await upstreams.json(SERVICE, "POST", "/echo", json={"한": 1}) == {
        "method": "POST",
        "body": {"한": 1},
    }


@pytest.mark.parametrize(
    ("issue_id", "status", "error", "text", "hidden"),
    [
        ("missing", 404, "not_found", "issue 'missing' not found", None),  # about the request: passed on
        ("boom", 502, "upstream_error", "failed", "database exploded"),
        ("busy", 503, "upstream_unavailable", "unavailable", "shutting down"),
        ("slow", 503, "upstream_unavailable", "timed out", "TimeoutError"),
    ],
)
async def test_errors_name_the_service(
    upstreams: Upstreams, issue_id: str, status: int, error: str, text: str, hidden: str | None
) -> None:
    with capture_logs() as logs, pytest.raises(ApiError) as info:
        await upstreams.forward(SERVICE, "GET", f"/issues/{issue_id}")
    body = info.value.body
    assert (info.value.status, body.error, body.service) == (status, error, SERVICE)
    assert text in body.message
    if hidden is not None:  # an upstream's failure: its text is logged under the id, never answered
        assert hidden not in body.message
        assert body.request_id
        assert body.request_id in body.message
        assert any(e.get("request_id") == body.request_id and hidden in e["cause"] for e in logs), logs


async def test_unreachable_service_is_503_naming_it() -> None:
    settings = GatewaySettings(kafka_enabled=False, issue_ingestor_url="http://127.0.0.1:9")
    ups = Upstreams(settings)
    try:
        with pytest.raises(ApiError) as info:
            await ups.call(SERVICE, "GET", "/issues/x")
        assert (info.value.status, info.value.body.service) == (503, SERVICE)
        assert "cannot connect" in info.value.body.message
        assert "127.0.0.1:9" not in info.value.body.message  # the address stays in the log
        with pytest.raises(ApiError) as info:
            await ups.stream(SERVICE, "/stream/u", None, _request())
        assert (info.value.status, info.value.body.service) == (503, SERVICE)
        with pytest.raises(ApiError) as info:
            await ups.call("no-such-service", "GET", "/")
        assert info.value.status == 404
    finally:
        await ups.close()


@pytest.mark.parametrize(
    "path",
    ["/issues/..", "/issues/%2E%2E", "/issues/.", "/issues/a%2Fb", "/issues/%2e%2E/x", "/issues/a%5Cb"],
)
async def test_an_id_leaving_its_segment_is_refused_before_the_call(upstreams: Upstreams, path: str) -> None:
    for call in (
        upstreams.forward(SERVICE, "GET", path),
        upstreams.stream(SERVICE, path, None, _request()),
    ):
        with pytest.raises(ApiError) as info:
            await call
        assert (info.value.status, info.value.body.error) == (422, "validation_error")
    assert upstreams.stream_slots.open == 0


async def test_stream_proxies_every_chunk(upstreams: Upstreams) -> None:
    response = await upstreams.stream(SERVICE, "/stream/u", {"after": "7"}, _request())
    assert response.media_type == "text/event-stream"
    assert response.headers["cache-control"] == "no-cache"
    chunks = [c if isinstance(c, bytes) else str(c).encode() async for c in response.body_iterator]
    assert b"".join(chunks).count(b"data: 7\n\n") >= 1  # the disconnected client ends it early


async def test_stream_error_is_mapped(upstreams: Upstreams) -> None:
    with pytest.raises(ApiError) as info:
        await upstreams.stream(SERVICE, "/stream/nobody", None, _request())
    assert (info.value.status, info.value.body.error, info.value.body.service) == (404, "not_found", SERVICE)
