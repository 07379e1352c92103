"""Abuse limits of the gateway, against real servers: a gateway with small limits (served by uvicorn) in front
of the stack's real notifier (live SSE streams) and of a real issue-ingestor whose MySQL login is wrong (so
its datastore fails with MySQL's own error text).

* publishing routes share one rate per caller (429 + Retry-After), other routes are not counted;
* live streams are capped per caller and in total (429 + Retry-After) and run on their own upstream pool: with
  the cap of streams open, a normal call to the same service still answers;
* request bodies above the limit are refused (413) also when chunked, on API and console routes alike;
* a path id that is ``.``/``..`` or holds ``/`` (also percent-encoded) is a 422 naming it, before proxying;
* no error body carries an internal failure's text (MySQL's, Kafka's, an address): the log has it under the
  request id the body names.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from consumer_runtime.testing import wait_until
from fastapi import FastAPI
from gateway.abuse import caller
from gateway.app import create_app
from gateway_testlib import AUTH, Names, Served, Stack, gateway_settings, serve
from starlette.requests import Request
from structlog.testing import capture_logs

BAD_DB_PASSWORD = "wrong-password-for-the-test"
PER_CALLER, TOTAL = 2, 3
MAX_BODY = 1024


@pytest.fixture(scope="module")
async def broken_ingestor(
    mysql_server: tuple[str, int], ingestor_db: dict[str, Any], names: Names
) -> AsyncIterator[Served]:
    """A real issue-ingestor whose MySQL password is wrong: every query meets MySQL's "Access denied"."""
    from issue_ingestor.app import create_app as ingestor_app
    from issue_ingestor.config import Settings as IngestorSettings

    settings = IngestorSettings(
        kafka_enabled=False, log_json=False, **{**ingestor_db, "db_password": BAD_DB_PASSWORD}
    )
    served = await serve(ingestor_app(settings))
    yield served
    await served.stop()


@pytest.fixture(scope="module")
async def limited(
    stack: Stack, broken_ingestor: Served, kafka_bootstrap: str, names: Names
) -> AsyncIterator[Served]:
    """A gateway with small limits; it believes X-Forwarded-For from 127.0.0.1, so each test is its own
    client (its own rate bucket) by the address it claims."""
    settings = gateway_settings(
        kafka_bootstrap,
        names,
        issue_ingestor_url=broken_ingestor.url,
        log_sink_url=stack.services["log-sink"].url,
        search_indexer_url=stack.services["search-indexer"].url,
        notifier_url=stack.services["notifier"].url,
        kafka_auto_create_topics=False,  # the stack's gateway made them
        # as `make run`: callers without a token are counted by their address, with one by its subject
        gateway_auth="open",
        publish_rate_limit="3/hour",
        stream_max_per_user=PER_CALLER,
        stream_max_total=TOTAL,
        upstream_max_connections=TOTAL,  # shared with the streams, the cap of them would hold it all
        upstream_timeout_s=10.0,
        max_request_bytes=MAX_BODY,
        trusted_proxies="127.0.0.1",
    )
    served = await serve(create_app(settings))
    yield served
    await served.stop()


@pytest.fixture
async def gw(limited: Served) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=limited.url, timeout=30) as client:
        yield client


def as_client(address: str) -> dict[str, str]:
    return {"x-forwarded-for": address}


def activity(n: int = 0) -> dict[str, Any]:
    return {"user_id": f"user_{n}", "activity": "login"}


# ------------------------------------------------------------------------------------------ publish rate
async def test_publishing_routes_share_one_rate_per_caller(gw: httpx.AsyncClient) -> None:
    me, other = as_client("203.0.113.10"), as_client("203.0.113.11")
    for n in range(3):
        published = await gw.post("/api/v1/events/user-activity", json=activity(n), headers=me)
        assert published.status_code == 202, published.text
    over = await gw.post("/api/v1/events/user-activity", json=activity(), headers=me)
    assert over.status_code == 429
    assert over.json()["error"] == "rate_limited"
    assert 0 < int(over.headers["retry-after"]) <= 3600
    message = {"channel_id": "ch_limits", "author_id": "user_0", "content": "hello"}
    assert (await gw.post("/messages", json=message, headers=me)).status_code == 429  # the same rate
    # reads are not counted (without a token, in open mode, a caller reads the anonymous user's own)
    assert (await gw.get("/api/v1/notifications/anonymous", headers=me)).status_code == 200
    assert (await gw.post("/api/v1/events/user-activity", json=activity(), headers=other)).status_code == 202


async def test_a_caller_is_authenticated_before_it_is_counted() -> None:
    """A refused credential costs no rate: the limit runs after the routes' authentication, so it counts
    the caller's identity, not whoever sends a request."""
    settings = gateway_settings(
        "127.0.0.1:1", Names(), kafka_auto_create_topics=False, api_key="app-key", publish_rate_limit="2/hour"
    )
    app: FastAPI = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw", timeout=60) as client:
            for _ in range(3):
                wrong = await client.post(
                    "/api/v1/events/user-activity", json=activity(), headers={"x-api-key": "x"}
                )
                assert wrong.status_code == 401
            key = {"x-api-key": "app-key"}
            for _ in range(2):  # counted, then refused by the broker that is not there
                response = await client.post("/api/v1/events/user-activity", json=activity(), headers=key)
                assert response.status_code == 503
            over = await client.post("/api/v1/events/user-activity", json=activity(), headers=key)
            assert over.status_code == 429


def test_the_caller_is_the_token_subject_when_there_is_one() -> None:
    scope = {"type": "http", "headers": [], "client": ("198.51.100.1", 1), "state": {}}
    request = Request(scope)
    assert caller(request) == "ip:198.51.100.1"

    class Identity:
        subject = "user_0042"

    request.state.identity = Identity()
    assert caller(request) == "sub:user_0042"

    class Anonymous:  # GATEWAY_AUTH=open without a token: one subject shared by all, so counted by address
        subject = "anonymous"
        kind = "anonymous"

    request.state.identity = Anonymous()
    assert caller(request) == "ip:198.51.100.1"


# ------------------------------------------------------------------------------------------ live streams
#: callers without a token (GATEWAY_AUTH=open) act as this user and stream its notifications; each is its
#: own caller by the address it claims
ANON = "anonymous"


@contextlib.asynccontextmanager
async def open_stream(gw: httpx.AsyncClient, address: str) -> AsyncIterator[httpx.Response]:
    async with gw.stream("GET", f"/api/v1/notifications/{ANON}/stream", headers=as_client(address)) as r:
        yield r


async def test_streams_are_capped_and_never_starve_other_calls(
    gw: httpx.AsyncClient, limited: Served
) -> None:
    slots = limited.app.state.upstreams.stream_slots
    async with contextlib.AsyncExitStack() as streams:
        for _ in range(PER_CALLER):
            response = await streams.enter_async_context(open_stream(gw, "203.0.113.20"))
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
        async with open_stream(gw, "203.0.113.20") as refused:
            assert refused.status_code == 429  # over the caller's cap
            assert int(refused.headers["retry-after"]) > 0
            assert "per caller" in (await refused.aread()).decode()
        third = await streams.enter_async_context(open_stream(gw, "203.0.113.21"))
        assert third.status_code == 200
        assert slots.open == TOTAL
        async with open_stream(gw, "203.0.113.22") as refused:
            assert refused.status_code == 429  # over the total
            assert "live streams open" in (await refused.aread()).decode()
        # the cap of streams is open, more than the regular pool's connections: calls still answer
        listed = await gw.get(f"/api/v1/notifications/{ANON}", headers=as_client("203.0.113.20"))
        assert listed.status_code == 200, listed.text
        prefs = await gw.get(f"/api/v1/notifications/{ANON}/preferences", headers=as_client("203.0.113.23"))
        assert prefs.status_code == 200, prefs.text
    # the streams ended: their slots are given back, a caller may stream again
    await wait_until(lambda: _zero(slots), timeout=30, what="stream slots given back")
    async with open_stream(gw, "203.0.113.20") as again:
        assert again.status_code == 200


async def _zero(slots: Any) -> bool:
    return bool(slots.open == 0)


# ------------------------------------------------------------------------------------------ body size
async def raw_request(served: Served, head: str, body: bytes = b"") -> tuple[int, bytes]:
    """One request over a plain socket, sent whole before the answer is read (as curl does; httpx stops at
    a connection the server closes after an early answer): the status and the answer's body."""
    host, port = served.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(head.encode() + b"\r\n" + body)
        await writer.drain()
        answer = await reader.read()
    finally:
        writer.close()
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


def chunked(payload: bytes, size: int = 256) -> bytes:
    parts = [payload[i : i + size] for i in range(0, len(payload), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


def padded(pad: int) -> bytes:
    return b'{"user_id": "user_1", "activity": "login", "attributes": {"pad": "' + b"x" * pad + b'"}}'


def post_head(path: str, client: str, extra: str = "") -> str:
    kind = "application/x-www-form-urlencoded" if path.startswith("/console/") else "application/json"
    return (
        f"POST {path} HTTP/1.1\r\nhost: gw\r\norigin: http://gw\r\nconnection: close\r\n"
        f"content-type: {kind}\r\nx-forwarded-for: {client}\r\n{extra}"
    )


@pytest.mark.parametrize(
    "path", ["/api/v1/events/user-activity", "/messages", "/api/v1/notifications/u1/read", "/console/login"]
)
async def test_a_chunked_body_over_the_limit_is_refused(limited: Served, path: str) -> None:
    head = post_head(path, "203.0.113.30", "transfer-encoding: chunked\r\n")
    status, body = await raw_request(limited, head, chunked(padded(MAX_BODY * 3)))
    assert status == 413, body
    assert b"payload_too_large" in body


async def test_a_declared_body_over_the_limit_is_refused_and_a_small_chunked_one_passes(
    limited: Served,
) -> None:
    payload = padded(MAX_BODY)
    head = post_head("/api/v1/events/user-activity", "203.0.113.31", f"content-length: {len(payload)}\r\n")
    status, body = await raw_request(limited, head, payload)
    assert status == 413, body
    head = post_head("/api/v1/events/user-activity", "203.0.113.31", "transfer-encoding: chunked\r\n")
    status, body = await raw_request(limited, head, chunked(padded(100)))
    assert status == 202, body
    assert b'"pad":"' + b"x" * 100 + b'"' in body.replace(b" ", b"")


# ------------------------------------------------------------------------------------------ path ids
@pytest.mark.parametrize(
    ("method", "path", "field"),
    [
        ("GET", "/api/v1/issues/%2E%2E", "issue_id"),
        ("GET", "/api/v1/issues/%2e", "issue_id"),
        ("GET", "/api/v1/issues/a%2Fsessions", "issue_id"),  # decoded, it would be another route
        ("GET", "/api/v1/issues/%2E%2E/sessions", "issue_id"),
        ("DELETE", "/api/kafka/issues/..%2F..%2Fconsumer%2Fstop", "issue_id"),
        ("GET", "/api/v1/notifications/%2E%2E/stream", "user_id"),
        ("POST", "/api/v1/notifications/u1/%2E%2E/read", "notification_id"),
        ("PUT", "/api/v1/messages/a%2F..%2Fb", "message_id"),
        ("GET", "/console/issues/%2E%2E", "issue_id"),
    ],
)
async def test_an_id_leaving_its_segment_is_a_422_naming_it(
    gw: httpx.AsyncClient, method: str, path: str, field: str
) -> None:
    response = await gw.request(method, path, headers={**AUTH, **as_client("203.0.113.40")})
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field
    assert "service" not in response.json()  # answered by the gateway, no service was asked


async def test_a_literal_dot_segment_is_refused_too(limited: Served) -> None:
    status, body = await raw_request(
        limited, "GET /api/v1/issues/.. HTTP/1.1\r\nhost: gw\r\nconnection: close\r\n"
    )
    assert status == 422, body
    assert b'"field":"issue_id"' in body.replace(b" ", b"")


async def test_ordinary_ids_with_dots_still_pass(gw: httpx.AsyncClient) -> None:
    response = await gw.get("/api/v1/logs/evt.v1..x", headers=as_client("203.0.113.41"))
    assert response.status_code == 404, response.text  # forwarded: the log-sink does not know it


# ------------------------------------------------------------------------------------------ error text
async def test_mysql_error_text_reaches_no_client(gw: httpx.AsyncClient, broken_ingestor: Served) -> None:
    async with httpx.AsyncClient(base_url=broken_ingestor.url, timeout=30) as service:
        with capture_logs() as logs:
            direct = await service.get("/issues")
    assert direct.status_code == 503
    body = direct.json()
    assert "Access denied" not in direct.text
    assert BAD_DB_PASSWORD not in direct.text
    assert body["request_id"] in body["detail"]
    assert any(e.get("request_id") == body["request_id"] and "Access denied" in e["error"] for e in logs)

    with capture_logs() as logs:
        proxied = await gw.get("/api/v1/issues", headers=as_client("203.0.113.50"))
    assert proxied.status_code == 503
    answer = proxied.json()
    assert (answer["error"], answer["service"]) == ("upstream_unavailable", "issue-ingestor")
    assert "Access denied" not in proxied.text
    assert "mysql" not in proxied.text.lower()
    assert answer["request_id"] in answer["message"]
    assert any(e.get("request_id") == answer["request_id"] for e in logs)


async def test_kafka_error_text_and_addresses_reach_no_client() -> None:
    names = Names()
    app: FastAPI = create_app(gateway_settings("127.0.0.1:1", names, kafka_auto_create_topics=False))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw", timeout=60) as client:
            with capture_logs() as logs:
                response = await client.post("/api/v1/events/user-activity", json=activity(), headers=AUTH)
    assert response.status_code == 503
    answer = response.json()
    assert answer["error"] == "kafka_unavailable"
    assert "127.0.0.1" not in response.text
    assert "Error" not in response.text
    assert any(e.get("request_id") == answer["request_id"] and "127.0.0.1" in e["cause"] for e in logs)
