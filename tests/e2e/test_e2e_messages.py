"""Seed 004 as a collaboration app meets it: POST /messages → search, live mention notifications,
update/delete reflected, and a rebuild of the search index by replay while users keep searching."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from e2e_harness import Stack, eventually

pytestmark = pytest.mark.integration


class SseReader:
    """Reads a Server-Sent-Events stream in the background; ``events`` holds the parsed ``notification``s."""

    def __init__(self, client: httpx.AsyncClient, path: str, headers: dict[str, str] | None = None) -> None:
        self.client = client
        self.path = path
        self.headers = headers
        self.events: list[dict[str, Any]] = []
        self.ids: list[str] = []
        self.connected = asyncio.Event()
        self.status: int | None = None
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        timeout = httpx.Timeout(10.0, read=None)
        async with self.client.stream("GET", self.path, timeout=timeout, headers=self.headers) as r:
            self.status = r.status_code
            event: dict[str, str] = {}
            async for line in r.aiter_lines():
                if line.startswith(":"):
                    self.connected.set()  # the server's "connected" comment: we are subscribed
                    continue
                if not line:
                    if event.get("event") == "notification":
                        self.events.append(json.loads(event["data"]))
                        self.ids.append(event.get("id", ""))
                    event = {}
                    continue
                name, _, value = line.partition(":")
                event[name] = value.removeprefix(" ")

    @contextlib.asynccontextmanager
    async def open(self) -> AsyncIterator[SseReader]:
        self._task = asyncio.create_task(self._run())
        try:
            done, _ = await asyncio.wait(
                [self._task, asyncio.create_task(self.connected.wait())],
                timeout=15,
                return_when="FIRST_COMPLETED",
            )
            if self._task in done:
                self._task.result()
                raise AssertionError(f"stream {self.path} ended at once (HTTP {self.status})")
            assert self.connected.is_set(), f"stream {self.path} sent nothing within 15 s"
            yield self
        finally:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
                await self._task


async def search(gw: httpx.AsyncClient, q: str, **params: Any) -> dict[str, Any]:
    r = await gw.get("/messages/search", params={"q": q, "limit": 100, **params})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def hit_ids(body: dict[str, Any]) -> set[str]:
    return {h["message_id"] for h in body["hits"]}


async def test_message_search_mentions_update_delete(stack: Stack, gw: httpx.AsyncClient) -> None:
    rid = stack.names.rid
    author, u1, u2 = f"author_{rid}", f"user_a_{rid}", f"user_b_{rid}"
    token = f"tok{rid}"
    admin = stack.admin_headers()  # the app's key reads only its own subject's notifications: an operator's
    assert (await gw.get(f"/api/v1/notifications/{u1}")).status_code == 403

    async with (
        SseReader(gw, f"/api/v1/notifications/{u1}/stream", admin).open() as s1,
        SseReader(gw, f"/api/v1/notifications/{u2}/stream", admin).open() as s2,
    ):
        r = await gw.post(
            "/messages",
            json={
                "channel_id": f"ch_{rid}",
                "author_id": author,
                "content": f"프로젝트 배포 완료 {token} 확인 부탁드립니다",
                "mentions": [
                    u1,
                    u2,
                    u1,
                    author,
                ],  # a repeat and the author: still one each, none for the author
                "attachments": [],
            },
        )
        assert r.status_code == 200, r.text
        msg = r.json()
        assert msg["message_id"]
        assert msg["event_id"]
        assert msg["topic"] == stack.names.topic("platform.messages.created")
        message_id, event_id = msg["message_id"], msg["event_id"]

        # searchable through the gateway, Korean words included
        await eventually(
            lambda: _found(gw, token, message_id), timeout=20, what="the new message is searchable"
        )
        assert message_id in hit_ids(await search(gw, "배포 완료", channel_id=f"ch_{rid}"))
        got = (await gw.get(f"/api/v1/messages/{message_id}")).json()
        assert got["content"].startswith("프로젝트 배포 완료")

        # each mentioned user gets exactly one notification on the live stream
        await eventually(
            lambda: _true(len(s1.events) >= 1 and len(s2.events) >= 1),
            timeout=20,
            what="a live notification for each mentioned user",
        )
        await asyncio.sleep(1.0)  # a duplicate would arrive right behind the first
        for reader, user in ((s1, u1), (s2, u2)):
            assert len(reader.events) == 1, reader.events
            note = reader.events[0]
            assert note["user_id"] == user
            assert note["event_id"] == event_id
            assert note["message_id"] == message_id
            assert token in note["body"]
            [stream_id] = reader.ids  # the stream cursor (opaque; notification_id is in the data)
            assert stream_id.startswith("c1.")

    for user in (u1, u2):
        page = (await gw.get(f"/api/v1/notifications/{user}", headers=admin)).json()
        assert page["total"] == 1, page
        assert page["unread"] == 1, page
    author_page = (await gw.get(f"/api/v1/notifications/{author}", headers=admin)).json()
    assert author_page["total"] == 0, "the author was notified of their own mention"

    note_id = s1.events[0]["notification_id"]
    r = await gw.post(f"/api/v1/notifications/{u1}/{note_id}/read", headers=admin)
    assert r.status_code == 200, r.text
    unread = await gw.get(f"/api/v1/notifications/{u1}", params={"status": "unread"}, headers=admin)
    assert unread.json()["total"] == 0

    # update: the new words are found, the old ones no longer
    new_token = f"new{rid}"
    r = await gw.put(
        f"/api/v1/messages/{message_id}",
        json={"channel_id": f"ch_{rid}", "content": f"수정된 내용 {new_token}"},
    )
    assert r.status_code == 202, r.text
    await eventually(
        lambda: _found(gw, new_token, message_id), timeout=20, what="the updated content is searchable"
    )
    await eventually(
        lambda: _not_found(gw, token, message_id), timeout=20, what="the old content is no longer found"
    )

    # delete: gone from search and from GET
    r = await gw.delete(f"/api/v1/messages/{message_id}", params={"channel_id": f"ch_{rid}"})
    assert r.status_code == 202, r.text
    await eventually(
        lambda: _not_found(gw, new_token, message_id), timeout=20, what="the deleted message disappears"
    )
    assert (await gw.get(f"/api/v1/messages/{message_id}")).status_code == 404


async def test_rebuild_index_by_replay_while_searching(stack: Stack, gw: httpx.AsyncClient) -> None:
    rid = stack.names.rid
    token = f"rb{rid}"
    channel = f"ch_rb_{rid}"
    ids = []
    for i in range(30):
        r = await gw.post(
            "/messages",
            json={"channel_id": channel, "author_id": f"u{i}", "content": f"재색인 테스트 {token} 번호 {i}"},
        )
        assert r.status_code == 200, r.text
        ids.append(r.json()["message_id"])
    # one edited and one deleted message: the replay must end in the same state
    edited, deleted = ids[0], ids[1]
    await gw.put(f"/api/v1/messages/{edited}", json={"channel_id": channel, "content": f"편집됨 {token} 끝"})
    await gw.delete(f"/api/v1/messages/{deleted}", params={"channel_id": channel})
    expected = set(ids) - {deleted}

    async def settled() -> bool:
        body = await search(gw, token)
        edited_ok = any(h["message_id"] == edited and "편집됨" in h["content"] for h in body["hits"])
        return hit_ids(body) == expected and edited_ok

    await eventually(settled, timeout=30, what="30 messages indexed, one edited, one deleted")

    assert (await gw.post("/api/v1/search/rebuild")).status_code == 403  # an app's key is not admin
    r = await gw.post("/api/v1/search/rebuild", headers=stack.admin_headers())
    assert r.status_code == 202, r.text

    searches, states = 0, []
    while True:
        body = await search(gw, token)  # users keep searching: every answer is complete
        searches += 1
        assert hit_ids(body) == expected, f"search during rebuild returned {len(body['hits'])} hits"
        status = (await gw.get("/api/v1/search/rebuild", headers=stack.admin_headers())).json()
        states.append(status.get("state"))
        if status.get("state") in ("done", "failed"):
            break
        assert searches < 600, f"rebuild did not finish: {status}"
        await asyncio.sleep(0.1)
    assert status["state"] == "done", status
    assert searches >= 2, states

    body = await search(gw, token)
    assert hit_ids(body) == expected
    assert any(h["message_id"] == edited and "편집됨" in h["content"] for h in body["hits"])

    # the live consumer keeps indexing into the new index
    r = await gw.post(
        "/messages", json={"channel_id": channel, "author_id": "u_late", "content": f"늦게 {token}"}
    )
    late = r.json()["message_id"]
    await eventually(
        lambda: _found(gw, token, late), timeout=20, what="a message after the rebuild is indexed"
    )


async def _found(gw: httpx.AsyncClient, q: str, message_id: str) -> bool:
    return message_id in hit_ids(await search(gw, q))


async def _not_found(gw: httpx.AsyncClient, q: str, message_id: str) -> bool:
    return message_id not in hit_ids(await search(gw, q))


async def _true(value: bool) -> bool:
    return value
