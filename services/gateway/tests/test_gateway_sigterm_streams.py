"""SIGTERM ends the gateway's live (SSE) streams at once, so the server's graceful shutdown does not wait its
whole timeout on endless responses (the lifespan's flush keeps its share of the grace period)."""

from __future__ import annotations

import asyncio
import signal
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from fastapi import Request
from gateway.app import _close_streams_on_sigterm
from gateway.config import GatewaySettings
from gateway.errors import ApiError
from gateway.upstream import Upstreams

SERVICE = "notifier"


async def _endless(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await response.prepare(request)
    await response.write(b"id: 1\ndata: hello\n\n")
    await asyncio.Event().wait()  # a live stream: never ends by itself
    return response


@pytest.fixture
async def upstreams() -> AsyncIterator[Upstreams]:
    app = web.Application()
    app.router.add_get("/notifications/u/stream", _endless)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    await web.SockSite(runner, sock).start()
    settings = GatewaySettings(
        kafka_enabled=False, notifier_url=f"http://127.0.0.1:{sock.getsockname()[1]}", upstream_timeout_s=2.0
    )
    ups = Upstreams(settings)
    yield ups
    await ups.close()
    await runner.cleanup()


def _connected_client() -> Request:
    async def receive() -> dict[str, Any]:
        await asyncio.Event().wait()  # the browser stays connected
        return {"type": "http.disconnect"}

    return Request(
        {"type": "http", "method": "GET", "path": "/", "query_string": b"", "headers": []}, receive
    )


async def _first_chunk_then_rest(upstreams: Upstreams, got_first: asyncio.Event) -> bytes:
    response = await upstreams.stream(SERVICE, "/notifications/u/stream", None, _connected_client())
    received = b""
    async for chunk in response.body_iterator:
        received += chunk if isinstance(chunk, bytes) else str(chunk).encode()
        got_first.set()
    return received


async def test_close_streams_ends_a_live_stream_and_refuses_new_ones(upstreams: Upstreams) -> None:
    got_first = asyncio.Event()
    proxy = asyncio.create_task(_first_chunk_then_rest(upstreams, got_first))
    await asyncio.wait_for(got_first.wait(), 10)
    assert not proxy.done()
    assert upstreams.close_streams() == 1
    assert await asyncio.wait_for(proxy, 10) == b"id: 1\ndata: hello\n\n"
    with pytest.raises(ApiError) as refused:
        await upstreams.stream(SERVICE, "/notifications/u/stream", None, _connected_client())
    assert refused.value.status == 503


async def test_sigterm_closes_the_streams_and_still_reaches_the_servers_handler(upstreams: Upstreams) -> None:
    server_saw: list[int] = []
    original = signal.signal(signal.SIGTERM, lambda signum, frame: server_saw.append(signum))
    try:
        restore = _close_streams_on_sigterm(upstreams)
        got_first = asyncio.Event()
        proxy = asyncio.create_task(_first_chunk_then_rest(upstreams, got_first))
        await asyncio.wait_for(got_first.wait(), 10)
        signal.raise_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proxy, 10) == b"id: 1\ndata: hello\n\n"
        assert server_saw == [signal.SIGTERM]  # uvicorn's own handler still runs: the server exits
        restore()
        assert signal.getsignal(signal.SIGTERM) is not None
        signal.raise_signal(signal.SIGTERM)
        assert server_saw == [signal.SIGTERM, signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, original)
