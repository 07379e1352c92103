"""The console without a browser: every console route needs the login cookie (enumerated, so a new page
cannot be left open), state-changing posts must come from the console's origin, the login sets an HttpOnly
SameSite=Strict cookie, HTML is escaped, assets are vendored (no external URL), and /asyncapi.json is the
generated document of the gateway's configured topic names."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from gateway.app import create_app
from gateway.console.app import _highlight, create_console
from gateway_testlib import ADMIN_TOKEN, Names, gateway_settings, walk_routes
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
        for cookie in (None, "wrong-token", ""):
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
        assert c.cookies["gw_console"] == ADMIN_TOKEN
        # logged in: a state-changing post from another origin is still refused
        assert (await c.post("/console/logout", headers={"origin": "http://evil"})).status_code == 403
        assert (await c.post("/console/logout")).status_code == 403  # neither Origin nor Referer
        out = await c.post("/console/logout", headers=ORIGIN)
        assert out.status_code == 303
        assert "gw_console" not in c.cookies


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
        served = (await c.get("/asyncapi.json")).json()
        openapi = await c.get("/openapi.json")
    assert openapi.status_code == 200
    assert served == asyncapi_document(app.state.topics, server="127.0.0.1:1")
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
