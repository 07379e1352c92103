"""The operator console in a real browser (Playwright driving Debian's chromium) against the running stack:
the gateway in front of the four real services (fixture ``stack`` of conftest.py).

Pause a service and see its state change, search a Korean word and see it highlighted, see a mention
notification arrive live, dead-letter a bad record and replay it, browse a topic and a group (an offset reset
is refused while the group runs; dismissing the confirmation sends nothing). Screenshots go to
``test-artifacts/console/``.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from consumer_runtime.testing import wait_until
from gateway_testlib import ADMIN_TOKEN, AUTH, Stack

pytestmark = pytest.mark.integration

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts" / "console"
TIMEOUT_MS = 30_000

if shutil.which(CHROMIUM) is None:
    pytest.skip(f"no chromium at {CHROMIUM} (make browser installs it)", allow_module_level=True)

from playwright.async_api import Browser, Page, async_playwright, expect  # noqa: E402


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        launched = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def page(browser: Browser, stack: Stack) -> AsyncIterator[Page]:
    """A fresh browser context logged in to the console (through the login form)."""
    context = await browser.new_context(base_url=stack.gateway.url, viewport={"width": 1480, "height": 1000})
    context.set_default_timeout(TIMEOUT_MS)
    opened = await context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        await login(opened)
        yield opened
    finally:
        await context.close()
    assert not errors, f"JavaScript errors in the console: {errors}"


async def login(page: Page) -> None:
    await page.goto("/console/")
    assert "/console/login" in page.url, page.url  # not logged in → the login page
    await page.fill("#token", "not-the-token")
    await page.click("button[type=submit]")
    await expect(page.locator("#login-error")).to_be_visible()
    await page.fill("#token", ADMIN_TOKEN)
    await page.click("button[type=submit]")
    await expect(page.locator("h1")).to_have_text("Services")
    cookie = next(c for c in await page.context.cookies() if c["name"] == "gw_console")
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"


JOIN_TIMEOUT_MS = 40_000


async def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


async def test_pause_and_resume_a_service_from_the_overview(page: Page, stack: Stack) -> None:
    state = page.locator('[data-testid="state-log-sink"]')
    await expect(state).to_have_text("running")
    for name in ("issue-ingestor", "search-indexer", "notifier"):
        await expect(page.locator(f'[data-testid="state-{name}"]')).to_have_text("running")
    await expect(page.locator("#readiness")).to_have_text("ready")
    await shot(page, "01-overview")

    row = page.locator('tr[data-service="log-sink"]')
    await row.locator('button[data-action="pause"]').click()
    await expect(state).to_have_text("paused")
    await expect(page.locator("#flash")).to_contain_text("pause → log-sink: applied")
    api = (await stack.client.get("/api/v1/services/log-sink", headers=AUTH)).json()
    assert api["status"]["state"] == "paused"
    assert api["desired"]["action"] == "pause"
    await shot(page, "02-overview-paused")

    await row.locator('button[data-action="resume"]').click()
    await expect(state).to_have_text("running")
    assert (await stack.client.get("/api/v1/services/log-sink", headers=AUTH)).json()["status"][
        "state"
    ] == "running"


async def test_search_a_korean_word_shows_highlighted_hits(page: Page, stack: Stack) -> None:
    word = f"배포{uuid.uuid4().hex[:6]}"
    sent = await stack.client.post(
        "/messages",
        json={"channel_id": "ch_dev", "author_id": "user_001", "content": f"프로젝트 {word} <b>태그</b>"},
    )
    assert sent.status_code == 200, sent.text
    message_id = sent.json()["message_id"]

    async def indexed() -> bool:
        hits = (await stack.client.get("/messages/search", params={"q": word})).json()
        return message_id in json.dumps(hits)

    await wait_until(indexed, timeout=30, interval=0.3, what="message indexed")
    await page.click("nav >> text=Message search")
    await page.fill("#search-q", word)
    await page.click("form button.primary")
    hit = page.locator(f'li.hit[data-message-id="{message_id}"]')
    await expect(hit).to_be_visible()
    await expect(hit.locator("mark").first).to_contain_text("배포")
    await expect(page.locator("#search-total")).to_contain_text(word)
    # the message's own markup is shown as text, never interpreted
    await expect(hit).to_contain_text("<b>태그</b>")
    assert await hit.locator("b").count() == 0
    await shot(page, "03-search-korean")


async def test_a_mention_notification_appears_live(page: Page, stack: Stack) -> None:
    user = f"user_{uuid.uuid4().hex[:8]}"
    await page.click("nav >> text=Notifications")
    await page.fill("#notif-user", user)
    await page.click("form button.primary")
    await expect(page.locator("#live-status")).to_have_text("connected")
    await expect(page.locator("#unread")).to_have_text("0")

    text = f"라이브 알림 {uuid.uuid4().hex[:6]}"
    sent = await stack.client.post(
        "/messages",
        json={"channel_id": "ch_ops", "author_id": "user_003", "content": text, "mentions": [user]},
    )
    assert sent.status_code == 200, sent.text
    live = page.locator("#live li")
    await expect(live).to_have_count(1)
    await expect(live.first).to_contain_text(text)
    await expect(live.first).to_contain_text("user_003")
    await shot(page, "04-notification-live")

    await page.reload()  # the stored list has it too; mark it read
    await expect(page.locator("#unread")).to_have_text("1")
    await page.click("text=Mark all read")
    await expect(page.locator("#unread")).to_have_text("0")


async def _dead_letters(stack: Stack, dlq: str) -> list[dict[str, Any]]:
    response = await stack.client.get(f"/api/v1/dlq/{dlq}/messages", params={"limit": 500}, headers=AUTH)
    return list(response.json()["dead_letters"]) if response.status_code == 200 else []


async def test_produce_a_bad_record_then_replay_its_dead_letter(page: Page, stack: Stack) -> None:
    topic = stack.names.topic("issues")
    dlq = f"{topic}.dlq"
    marker = f"BAD_{uuid.uuid4().hex[:8]}"
    # Produce from the console: schema check off, so the bad record reaches the consumer.
    await page.goto(f"/console/topics/{topic}")
    await page.fill("input[name=key]", marker)
    await page.fill("#value", json.dumps({"issue": marker, "processType": "없는유형"}, ensure_ascii=False))
    await page.click("form.produce button.primary")
    await expect(page.locator(".alert.error")).to_contain_text("not a valid FactoryIssueEvent")
    await page.uncheck("input[name=validate]")
    await page.click("form.produce button.primary")
    await expect(page.locator("#produce-result")).to_contain_text("Produced to")

    async def dead_lettered() -> list[dict[str, Any]]:
        return [d for d in await _dead_letters(stack, dlq) if d["key"] == marker]

    letters = await wait_until(dead_lettered, timeout=30, interval=0.3, what="bad record dead-lettered")
    letter = letters[0]
    await page.goto(f"/console/dlq/{dlq}")
    ref = f"{letter['partition']}:{letter['offset']}"
    row = page.locator(f'tr[data-ref="{ref}"]')
    await expect(row).to_contain_text(letter["error"]["class"])
    await expect(row).to_contain_text(marker)
    await row.locator("input[type=checkbox]").check()
    await shot(page, "05-dlq")

    page.once("dialog", lambda dialog: dialog.accept())
    await page.click("#replay-selected")
    await expect(page.locator("#replayed")).to_contain_text("Replayed 1")
    await expect(page.locator("#replayed")).to_contain_text(topic)
    await shot(page, "06-dlq-replayed")

    # The replay went to the original topic with its key and a dlq.replayed.from header…
    browsed = (
        await stack.client.get(f"/api/v1/topics/{topic}/messages", params={"from_end": True}, headers=AUTH)
    ).json()
    replayed = [m for m in browsed["messages"] if m["key"] == marker and "dlq.replayed.from" in m["headers"]]
    assert replayed
    assert replayed[0]["headers"]["dlq.replayed.from"] == f"{dlq}/{ref.replace(':', '/')}"
    # …was consumed again and, still invalid, dead-lettered again (nothing lost).
    await wait_until(
        lambda: _count_at_least(stack, dlq, marker, 2), timeout=30, interval=0.3, what="replay handled"
    )
    # The page shows the letter as replayed and its outcome; the new letter keeps its lineage.
    await page.goto(f"/console/dlq/{dlq}")
    cell = page.get_by_test_id(f"replayed-{ref.replace(':', '-')}")
    await expect(cell).to_contain_text("1×")
    await expect(cell).to_contain_text("failed again")
    newer = [d for d in await _dead_letters(stack, dlq) if d["key"] == marker and d["lineage"]]
    assert newer[0]["lineage"]["replayed_from"] == f"{dlq}/{ref.replace(':', '/')}"
    assert newer[0]["lineage"]["replay_count"] == 1
    await expect(
        page.locator(f'tr[data-ref="{newer[0]["partition"]}:{newer[0]["offset"]}"]')
    ).to_contain_text(f"replay 1 of {dlq}/{ref.replace(':', '/')}")
    await shot(page, "06b-dlq-replay-outcome")


async def _count_at_least(stack: Stack, dlq: str, key: str, n: int) -> bool:
    return len([d for d in await _dead_letters(stack, dlq) if d["key"] == key]) >= n


async def test_topics_groups_and_an_offset_reset_needing_confirmation(page: Page, stack: Stack) -> None:
    topic = stack.names.topic("msg-created")
    await page.click("nav >> text=Topics")
    await page.click(f"#topics >> text={topic}")
    await expect(page.locator("h1")).to_contain_text(topic)
    # one row per partition the broker has: 3 as the platform creates it, but one CI run saw 4 — what the
    # local broker gives a topic a producer reaches before it is created (docs/local-servers.md) — so the
    # broker's own answer is the reference
    described = (await stack.client.get(f"/api/v1/topics/{topic}", headers=AUTH)).json()
    assert len(described["partitions"]) >= 3
    await expect(page.locator("#partitions tbody tr")).to_have_count(len(described["partitions"]))
    await expect(page.locator("#messages table")).to_be_visible()  # loaded by htmx on page load
    await shot(page, "07-topic")

    group = stack.names.group("search-indexer")
    await page.goto(f"/console/groups/{group}")
    await expect(page.locator("h1")).to_contain_text(group)
    await expect(page.locator("table.lag").first).to_be_visible()
    await page.select_option("select[name=topic]", topic)
    # Dismissing the confirmation sends nothing.
    page.once("dialog", lambda dialog: dialog.dismiss())
    await page.click("#reset-apply")
    await page.wait_for_timeout(300)
    assert await page.locator("#reset-result").inner_text() == ""
    # A preview while the group runs is refused, with the reason.
    await page.click("#reset-preview")
    await expect(page.locator("#reset-result .alert.error")).to_contain_text("stop its consumers first")
    await shot(page, "08-group")


async def test_factory_issues_and_their_sessions(page: Page, stack: Stack) -> None:
    issue_id = f"WELD_{uuid.uuid4().hex[:8]}"
    event = {
        "issue": issue_id,
        "processType": "장애접수",
        "modeType": "용접기",
        "modeLogId": f"{issue_id}_LOG",
        "description": "용접 전류 이상",
        "timestamp": "2025-08-06T10:30:00",
    }
    assert (await stack.client.post("/api/v1/events/issues", json=event)).status_code == 202

    async def stored() -> bool:
        return (await stack.client.get(f"/api/v1/issues/{issue_id}")).status_code == 200

    await wait_until(stored, timeout=30, interval=0.3, what="issue stored")
    await page.click("nav >> text=Factory issues")
    await page.select_option("select[name=modeType]", "용접기")
    await page.click("form.inline button")
    await page.click(f"#issues >> text={issue_id}")
    await expect(page.locator("#issue")).to_contain_text("용접 전류 이상")
    await expect(page.locator("#sessions tbody tr")).to_have_count(1)
    await expect(page.locator("#sessions")).to_contain_text("open")
    await shot(page, "09-issue")


async def test_logged_out_requests_go_to_the_login_page(browser: Browser, stack: Stack) -> None:
    context = await browser.new_context(base_url=stack.gateway.url)
    try:
        anonymous = await context.new_page()
        await anonymous.goto("/console/dlq")
        assert "/console/login?next=%2Fconsole%2Fdlq" in anonymous.url
        await anonymous.fill("#token", ADMIN_TOKEN)
        await anonymous.click("button[type=submit]")
        await expect(anonymous.locator("h1")).to_have_text("Dead-letter topics")
        await anonymous.click("text=Log out")
        await expect(anonymous.locator("#token")).to_be_visible()
        await anonymous.goto("/console/")
        assert "/console/login" in anonymous.url
    finally:
        await context.close()


async def test_openapi_docs_render_with_only_the_gateway_reachable(browser: Browser, stack: Stack) -> None:
    """/docs needs nothing but the gateway: every request elsewhere (a CDN) is aborted, as it would fail
    on a machine without internet, and Swagger UI still renders the gateway's operations."""
    context = await browser.new_context(base_url=stack.gateway.url)
    blocked: list[str] = []

    async def only_the_gateway(route: Any) -> None:
        if route.request.url.startswith(stack.gateway.url):
            await route.continue_()
        else:
            blocked.append(route.request.url)
            await route.abort("internetdisconnected")

    await context.route("**/*", only_the_gateway)
    try:
        docs = await context.new_page()
        await docs.goto("/docs")
        title = docs.locator(".swagger-ui .info .title")
        await expect(title).to_contain_text("Platform gateway", timeout=15_000)
        await expect(docs.locator(".opblock-summary-path", has_text="/api/v1/services").first).to_be_visible()
        assert not blocked, f"/docs asked for more than the gateway: {blocked}"
        licence = await context.request.get(f"{stack.gateway.url}/docs/static/LICENSE")
        assert licence.ok
        assert "Apache License" in await licence.text()
        await shot(docs, "10-docs-offline")
    finally:
        await context.close()


async def test_stop_and_start_from_the_overview_and_the_feedback_stays(page: Page, stack: Stack) -> None:
    """Overview offers what the state allows: Stop/Start; a stopped service has Pause disabled and Start
    enabled. The feedback of an action stays across the 3-second refreshes until the next action."""
    row = page.locator('tr[data-service="notifier"]')
    state = page.locator('[data-testid="state-notifier"]')
    button = {a: row.locator(f'button[data-action="{a}"]') for a in ("start", "stop", "pause", "resume")}
    # a start joins the consumer group: on the local broker ~3 s, up to ~11 s after a clean leave
    await expect(state).to_have_text("running", timeout=JOIN_TIMEOUT_MS)
    await expect(button["start"]).to_be_disabled()
    await expect(button["stop"]).to_be_enabled()
    await expect(button["pause"]).to_be_enabled()
    try:
        page.once("dialog", lambda dialog: dialog.accept())
        await button["stop"].click()
        await expect(state).to_have_text("stopped")
        await expect(button["pause"]).to_be_disabled()
        await expect(button["resume"]).to_be_disabled()
        await expect(button["stop"]).to_be_disabled()
        await expect(button["start"]).to_be_enabled()
        flash = page.locator("#flash")
        await expect(flash).to_contain_text("stop → notifier: applied")
        # two refreshes of the table later, the feedback is still there
        await page.wait_for_timeout(7_000)
        await expect(flash).to_contain_text("stop → notifier: applied")
        await shot(page, "11-overview-stopped")

        await button["start"].click()
        await expect(state).to_have_text("running", timeout=JOIN_TIMEOUT_MS)
        await expect(flash).to_contain_text("start → notifier: applied")
        await expect(flash).not_to_contain_text("stop →")
        await expect(button["start"]).to_be_disabled()
        await expect(button["pause"]).to_be_enabled()
    finally:  # the stack is shared: leave the notifier running whatever happened
        await stack.client.post("/api/v1/services/notifier/start", headers=AUTH)

    async def assigned() -> bool:
        status = (await stack.client.get("/api/v1/services/notifier", headers=AUTH)).json()["status"]
        return status["state"] == "running" and bool(status["assignment"])

    await wait_until(assigned, timeout=60, interval=0.3, what="notifier running and assigned again")


async def test_an_error_that_ended_is_shown_with_its_recovery_and_collapsed(
    page: Page, stack: Stack, kafka_bootstrap: str
) -> None:
    """While an error lasts it is shown in red with when it began; once the consumer stored a batch again
    the overview shows when it recovered, the error itself collapsed."""
    from consumer_runtime.status import LastError

    runner = stack.service_app("log-sink").state.runner
    runner.last_error = LastError(
        stage="sink", error_class="ServerSelectionTimeoutError", message="mongo down (test)", at=time.time()
    )
    current = page.locator('[data-testid="current-error-log-sink"]')
    await expect(current).to_contain_text("ServerSelectionTimeoutError", timeout=10_000)
    await expect(current).to_contain_text("not recovered")
    await expect(current).to_have_css("color", "rgb(180, 35, 24)")

    # the next stored batch is the recovery
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        event_id = f"evt_{uuid.uuid4().hex}"
        body = {"event_id": event_id, "timestamp": "2026-11-23T10:00:00Z", "service": "console-test"}
        await producer.send_and_wait(stack.names.topic("logs"), json.dumps(body).encode())
    finally:
        await producer.stop()
    past = page.locator('[data-testid="past-error-log-sink"]')
    await expect(past).to_be_visible(timeout=30_000)
    await expect(current).to_have_count(0)
    await expect(past.locator("summary")).to_contain_text("recovered")
    details = past.locator(".past-error-body")
    await expect(details).to_be_hidden()  # collapsed
    await expect(details).to_contain_text("mongo down (test)")  # kept, one click away
    await shot(page, "12-overview-recovered")
