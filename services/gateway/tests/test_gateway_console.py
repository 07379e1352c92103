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
from gateway_testlib import ADMIN_TOKEN, AUTH, Names, gateway_settings, walk_routes
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
