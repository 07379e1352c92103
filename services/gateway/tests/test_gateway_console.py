"""The console without a browser: every console route needs the login cookie (enumerated, so a new page
cannot be left open), state-changing posts must come from the console's origin, the login sets an HttpOnly
SameSite=Strict cookie holding a signed session id (expiring, revoked at logout, Secure behind a trusted TLS
proxy), login attempts are rate-limited per client, HTML is escaped, assets are vendored (no external URL),
and /asyncapi.json is the generated document of the gateway's configured topic names."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from gateway.app import create_app
from gateway.console.app import _highlight, create_console
from gateway.console.auth import Sessions
from gateway_testlib import ADMIN_TOKEN, AUTH, Names, gateway_settings, walk_routes
from gateway_testlib import Stack as GatewayStack
from platform_events.asyncapi import asyncapi_document

CONSOLE = Path(__file__).resolve().parents[1] / "src" / "gateway" / "console"
PUBLIC = {("GET", "/login"), ("POST", "/login")}
VALUES = {"service": "log-sink", "action": "pause", "topic": "x", "group_id": "g", "user_id": "u"}
VALUES |= {"issue_id": "i"}
ORIGIN = {"origin": "http://gw"}


def console_routes() -> list[tuple[str, str]]:
    app = create_console(FastAPI())
    out = []
    for path, route in walk_routes(list(app.routes)):
        for method in sorted(route.methods - {"HEAD"}):
            out.append((method, path))
    assert len(out) >= 20, out
    return out


def concrete(path: str) -> str:
    return "/console" + re.sub(r"\{(\w+)\}", lambda m: VALUES[m.group(1)], path)


def offline_app(**overrides: object) -> FastAPI:
    return create_app(gateway_settings("127.0.0.1:1", Names(), kafka_auto_create_topics=False, **overrides))


def client(app: FastAPI, **kw: object) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw", **kw)  # type: ignore[arg-type]


async def test_every_console_route_needs_the_login_cookie() -> None:
    app = offline_app()
    routes = console_routes()
    assert not PUBLIC - set(routes)
    async with client(app) as c:
        for cookie in (None, "wrong-token", "", ADMIN_TOKEN):  # the token itself is no session
            jar = {"cookie": f"gw_console={cookie}"} if cookie is not None else {}
            for method, path in routes:
                if (method, path) in PUBLIC:
                    continue
                url = concrete(path)
                for htmx in (False, True):
                    headers = {**ORIGIN, **jar, **({"hx-request": "true"} if htmx else {})}
                    response = await c.request(method, url, headers=headers)
                    if htmx:
                        assert response.status_code == 401, (method, url, cookie)
                        assert response.headers["hx-redirect"] == "/console/login"
                    elif method == "GET" and not url.endswith("/stream"):
                        assert response.status_code == 303, (method, url, cookie)
                        assert response.headers["location"].startswith("/console/login?next=%2Fconsole")
                    else:
                        assert response.status_code == 401, (method, url, cookie)


async def test_login_sets_an_httponly_strict_cookie_and_logout_clears_it() -> None:
    app = offline_app()
    async with client(app) as c:
        page = await c.get("/console/login")
        assert page.status_code == 200
        assert 'name="token"' in page.text
        assert page.headers["x-frame-options"] == "DENY"
        assert "default-src 'self'" in page.headers["content-security-policy"]
        wrong = await c.post("/console/login", data={"token": "nope"}, headers=ORIGIN)
        assert wrong.status_code == 401
        assert "not valid" in wrong.text
        assert "gw_console" not in c.cookies
        foreign = await c.post(
            "/console/login", data={"token": ADMIN_TOKEN}, headers={"origin": "http://evil"}
        )
        assert foreign.status_code == 403
        ok = await c.post(
            "/console/login", data={"token": ADMIN_TOKEN, "next": "https://evil.example/"}, headers=ORIGIN
        )
        assert ok.status_code == 303
        assert ok.headers["location"] == "/console/"  # never redirects off the console
        set_cookie = ok.headers["set-cookie"].lower()
        assert "httponly" in set_cookie
        assert "samesite=strict" in set_cookie
        assert "path=/console" in set_cookie
        cookie = c.cookies["gw_console"]
        assert ADMIN_TOKEN not in cookie  # a signed session id, never the token
        assert "secure" not in set_cookie  # plain http, no trusted proxy saying otherwise
        assert (await c.get("/console/notifications")).status_code == 200
        # logged in: a state-changing post from another origin is still refused
        assert (await c.post("/console/logout", headers={"origin": "http://evil"})).status_code == 403
        assert (await c.post("/console/logout")).status_code == 403  # neither Origin nor Referer
        out = await c.post("/console/logout", headers=ORIGIN)
        assert out.status_code == 303
        assert "gw_console" not in c.cookies
        # logout revoked the session server-side: the old cookie, sent again, is refused
        again = await c.get("/console/notifications", headers={"cookie": f"gw_console={cookie}"})
        assert again.status_code == 303
        assert again.headers["location"].startswith("/console/login")


def console_of(app: FastAPI) -> FastAPI:
    mount = next(r for r in app.routes if getattr(r, "path", "") == "/console")
    console: FastAPI = mount.app  # type: ignore[attr-defined]
    return console


async def logged_in(c: httpx.AsyncClient, headers: dict[str, str] | None = None) -> httpx.Response:
    response = await c.post(
        "/console/login", data={"token": ADMIN_TOKEN}, headers={**ORIGIN, **(headers or {})}
    )
    assert response.status_code == 303, response.text
    return response


async def test_a_session_expires_server_side_and_a_tampered_cookie_is_refused() -> None:
    app = offline_app(console_session_ttl_s=600)
    async with client(app) as c:
        await logged_in(c)
        cookie = c.cookies["gw_console"]
        assert (await c.get("/console/notifications")).status_code == 200
        c.cookies.clear()
        signed, signature = cookie.rsplit(".", 1)
        other_id = ("B" if cookie[0] == "A" else "A") + cookie[1:]  # another session id, same signature
        other_signature = signed + "." + ("B" if signature[0] == "A" else "A") + signature[1:]
        for forged in (other_id, other_signature, cookie.split(".")[0], ADMIN_TOKEN):
            refused = await c.get("/console/notifications", headers={"cookie": f"gw_console={forged}"})
            assert refused.status_code == 303, forged
        live = await c.get("/console/notifications", headers={"cookie": f"gw_console={cookie}"})
        assert live.status_code == 200
        table = console_of(app).state.sessions
        now = table.clock()
        table.clock = lambda: now + 601  # the server's clock past the session's TTL
        expired = await c.get("/console/notifications", headers={"cookie": f"gw_console={cookie}"})
        assert expired.status_code == 303
        assert len(table) == 0


def test_the_session_table_is_bounded_oldest_first() -> None:
    now = [1000.0]
    table = Sessions(ttl_s=60, max_sessions=2, clock=lambda: now[0])
    first, second, third = table.create(), table.create(), table.create()
    assert (table.valid(first), table.valid(second), table.valid(third)) == (False, True, True)
    assert table.revoke(second)
    assert not table.valid(second)
    assert not table.revoke(second)
    now[0] += 60
    assert not table.valid(third)
    assert len(table) == 0


def proxied(app: FastAPI, peer: str) -> httpx.AsyncClient:
    """A client whose TCP peer address (as the server sees it) is ``peer``."""
    transport = httpx.ASGITransport(app=app, client=(peer, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://gw")


async def test_the_cookie_is_secure_behind_a_trusted_tls_proxy_only() -> None:
    app = offline_app(trusted_proxies="10.0.0.0/8, 192.0.2.1")
    tls = {"x-forwarded-proto": "https", "x-forwarded-for": "203.0.113.9"}
    for peer, headers, secure in (
        ("10.20.30.40", tls, True),  # the Ingress controller says the client came over TLS
        ("192.0.2.1", tls, True),
        ("10.20.30.40", {"x-forwarded-proto": "http"}, False),
        ("10.20.30.40", {}, False),
        ("198.51.100.7", tls, False),  # anyone else: the header is not believed
    ):
        async with proxied(app, peer) as c:
            response = await logged_in(c, headers)
        assert ("secure" in response.headers["set-cookie"].lower()) is secure, (peer, headers)


async def test_login_attempts_are_rate_limited_per_client() -> None:
    app = offline_app(console_login_rate_limit="3/hour", trusted_proxies="10.0.0.1")
    wrong = {"token": "wrong"}
    async with proxied(app, "198.51.100.7") as c:
        for _ in range(3):
            assert (await c.post("/console/login", data=wrong, headers=ORIGIN)).status_code == 401
        limited = await c.post("/console/login", data={"token": ADMIN_TOKEN}, headers=ORIGIN)
        assert limited.status_code == 429  # even the right token: the client is over its attempts
        assert 0 < int(limited.headers["retry-after"]) <= 3600
        assert "Too many login attempts" in limited.text
        assert "gw_console" not in limited.headers.get("set-cookie", "")
        # claiming another address does not help: this peer is not a trusted proxy
        spoofed = await c.post(
            "/console/login", data=wrong, headers={**ORIGIN, "x-forwarded-for": "203.0.113.50"}
        )
        assert spoofed.status_code == 429
    async with proxied(app, "198.51.100.8") as c:  # another client has its own attempts
        await logged_in(c)
    async with proxied(app, "10.0.0.1") as c:  # behind the trusted proxy: each client counted apart
        for n in range(3):  # what the client itself put left of the proxy's entry is not believed
            chain = f"198.51.100.{n}, 203.0.113.1"
            response = await c.post(
                "/console/login", data=wrong, headers={**ORIGIN, "x-forwarded-for": chain}
            )
            assert response.status_code == 401
        over = await c.post(
            "/console/login", data=wrong, headers={**ORIGIN, "x-forwarded-for": "203.0.113.1"}
        )
        assert over.status_code == 429
        await logged_in(c, {"x-forwarded-for": "203.0.113.2"})


async def test_console_is_disabled_without_an_admin_token() -> None:
    app = offline_app(admin_token=None)
    async with client(app) as c:
        page = await c.get("/console/login")
        assert "ADMIN_TOKEN" in page.text
        refused = await c.post("/console/login", data={"token": ""}, headers=ORIGIN)
        assert refused.status_code == 403
        assert (await c.get("/console/", headers={"cookie": "gw_console="})).status_code == 303


def test_search_highlights_are_escaped_then_marked() -> None:
    html = str(_highlight('<script>x</script> 프로젝트 <em>배포</em> "q"'))
    assert "<script>" not in html
    assert "&lt;script&gt;" in html
    assert "<mark>배포</mark>" in html


def test_assets_are_vendored_and_nothing_loads_from_another_site() -> None:
    htmx = (CONSOLE / "static" / "htmx.min.js").read_text()
    assert htmx.startswith("var htmx=function()")
    for path in list((CONSOLE / "templates").glob("*.html")) + list((CONSOLE / "static").glob("*.[cj]s")):
        if path.name == "htmx.min.js":
            continue
        text = path.read_text()
        assert not re.search(r"""(src|href)=["']?(https?:)?//""", text), path.name
        assert "@import" not in text, path.name


async def test_asyncapi_json_is_served_for_the_configured_topic_names() -> None:
    app = offline_app()
    async with client(app) as c:
        served = (await c.get("/asyncapi.json", headers=AUTH)).json()
        anonymous = (await c.get("/asyncapi.json")).json()
        openapi = await c.get("/openapi.json")
    assert openapi.status_code == 200
    assert served == asyncapi_document(app.state.topics, server="127.0.0.1:1")
    assert anonymous == {k: v for k, v in served.items() if k != "servers"}  # broker addresses: admins only
    addresses = {ch["address"] for ch in served["channels"].values()}
    assert app.state.settings.kafka_topic_chatbot_issues in addresses
    assert "/console" not in str(openapi.json()["paths"])  # the console is not part of the API document


@pytest.mark.parametrize("path", ["/console", "/console/static/htmx.min.js", "/console/static/console.css"])
async def test_console_entry_and_static_assets_need_no_login(path: str) -> None:
    async with client(offline_app(), follow_redirects=True) as c:
        response = await c.get(path)
    assert response.status_code == 200
    if path == "/console":
        assert str(response.url).endswith("/console/login?next=%2Fconsole%2F")


# ------------------------------------------------------------------------------- links to a trace's logs
def test_a_records_trace_id_comes_from_a_valid_traceparent_only() -> None:
    from gateway.console.app import trace_id_of

    tid = "4bf92f3577b34da6a3ce929d0e0e4736"
    assert trace_id_of({"traceparent": f"00-{tid}-00f067aa0ba902b7-01", "x": "y"}) == tid
    assert trace_id_of({"traceparent": f"00-{tid.upper()}-00f067aa0ba902b7-01"}) is None
    assert trace_id_of({"traceparent": "00-" + "0" * 32 + "-00f067aa0ba902b7-01"}) is None
    assert trace_id_of({"x-trace": tid}) is None
    assert trace_id_of({}) is None


@pytest.mark.integration
async def test_issue_and_message_pages_link_to_the_logs_of_their_records_trace(
    stack: GatewayStack, kafka_bootstrap: str
) -> None:
    """An issue event produced with a ``traceparent`` header (as the gateway's publish or any traced client
    sends it): the issue page finds that record through the issue's Kafka position and links to the logs
    of its trace; the topic's message rows link too; the logs page lists the trace's wide events. An event
    without the header: the page says so and links nowhere."""
    import json
    import uuid

    from aiokafka import AIOKafkaProducer
    from consumer_runtime.testing import wait_until

    trace_id, span_id = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    traced, plain = f"TRC_{uuid.uuid4().hex[:10]}", f"TRC_{uuid.uuid4().hex[:10]}"
    wide_id = f"evt_{uuid.uuid4().hex}"
    names = stack.names

    def event(issue_id: str) -> bytes:
        return json.dumps(
            {"issue": issue_id, "processType": "장애접수", "modeType": "프레스", "modeLogId": f"{issue_id}_L",
             "description": "trace", "isSolved": False, "timestamp": "2026-12-06T04:00:00"},
            ensure_ascii=False,
        ).encode()  # fmt: skip

    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        headers = [("traceparent", f"00-{trace_id}-{span_id}-01".encode())]
        await producer.send_and_wait(
            names.topic("issues"), event(traced), key=traced.encode(), headers=headers
        )
        await producer.send_and_wait(names.topic("issues"), event(plain), key=plain.encode())
        wide = {"event_id": wide_id, "timestamp": "2026-12-06T04:00:00Z", "service": "gateway", "path": "/x",
                "status": 200, "trace_id": trace_id, "span_id": span_id}  # fmt: skip
        await producer.send_and_wait(names.topic("logs"), json.dumps(wide).encode(), key=wide_id.encode())
    finally:
        await producer.stop()

    gateway = stack.gateway.url
    async with httpx.AsyncClient(base_url=gateway, timeout=30) as c:

        async def stored() -> bool:
            for path in (
                f"/api/kafka/issues/{traced}",
                f"/api/kafka/issues/{plain}",
                f"/api/v1/logs/{wide_id}",
            ):
                if (await c.get(path)).status_code != 200:
                    return False
            return True

        await wait_until(stored, timeout=30, interval=0.3, what="both issues and the wide event stored")
        login = await c.post("/console/login", data={"token": ADMIN_TOKEN}, headers={"origin": gateway})
        assert login.status_code == 303, login.text

        page = await c.get(f"/console/issues/{traced}")
        assert page.status_code == 200, page.text
        link = f'href="/console/logs?trace_id={trace_id}"'
        assert link in page.text

        untraced = await c.get(f"/console/issues/{plain}")
        assert untraced.status_code == 200
        assert "carries no traceparent header" in untraced.text
        assert "/console/logs?trace_id=" not in untraced.text

        rows = await c.get(f"/console/topics/{names.topic('issues')}/messages", params={"limit": 500})
        assert rows.status_code == 200
        assert rows.text.count(link) >= 1

        logs = await c.get("/console/logs", params={"trace_id": trace_id})
        assert logs.status_code == 200
        assert f'data-event-id="{wide_id}"' in logs.text
        other = await c.get("/console/logs", params={"trace_id": uuid.uuid4().hex})
        assert wide_id not in other.text
        assert "No wide log event of this trace" in other.text
        assert (await c.get("/console/logs", params={"trace_id": "not-a-trace"})).status_code == 422
