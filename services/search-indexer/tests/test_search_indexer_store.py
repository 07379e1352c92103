"""The Elasticsearch adapter against the local Elasticsearch-protocol server (noida-db): mapping, merge-write,
conflicts between concurrent writers, partial bulk failures, retried items, search, and the server features
the design relies on (CAS, alias swap, n-gram analysis, highlights)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from elasticsearch import AsyncElasticsearch, ConflictError
from search_indexer import handlers as h
from search_indexer.store import MessageStore, TransientWriteError
from search_indexer_testlib import created, deleted, updated

from conftest import es_settings

pytestmark = pytest.mark.integration


def deltas(*events: Any) -> dict[str, h.MessageState]:
    out: dict[str, h.MessageState] = {}
    for e in events:
        s = h.from_event(e)
        out[s.message_id] = h.merge(out.get(s.message_id), s)
    return out


async def test_ensure_alias_creates_one_index_with_explicit_mapping(
    store: MessageStore, es: AsyncElasticsearch
) -> None:
    assert await store.ensure_alias() == [f"{store.alias}-000001"]  # second call: nothing new
    mapping = (await es.indices.get_mapping(index=store.alias)).body[f"{store.alias}-000001"]["mappings"]
    props = mapping["properties"]
    assert mapping["dynamic"] == "strict"
    assert props["content"]["analyzer"] == "cjk"
    assert props["content"]["fields"]["ngram"]["type"] == "text"
    assert props["channel"]["type"] == "keyword"
    assert props["author"]["type"] == "keyword"
    assert props["created_at"]["type"] == "date"
    assert props["version"]["type"] == "long"
    await store.ping()


async def test_search_korean_word_filters_sort_paging_highlight(store: MessageStore) -> None:
    events = [
        created("k1", "서버를 배포했습니다", ts=1, channel="ch_ops", author="u1"),
        created("k2", "프로젝트 배포 완료", ts=2, channel="ch_dev", author="u2"),
        created("k3", "점심 메뉴 추천", ts=3, channel="ch_dev", author="u1"),
        created("k4", "deploy finished", ts=4, channel="ch_dev", author="u3"),
    ]
    result = await store.write(deltas(*events))
    assert (result.created, result.errors) == (4, {})
    await store.refresh()

    found = await store.search(h.SearchParams(q="배포"))
    assert {m["message_id"] for m in found["hits"]} == {"k1", "k2"}
    assert found["total"] == 2
    by_id = {m["message_id"]: m for m in found["hits"]}
    assert any("<em>" in frag and "배포" in frag for frag in by_id["k1"]["highlights"])  # inside an eojeol

    assert [
        m["message_id"] for m in (await store.search(h.SearchParams(q="배포", channel="ch_dev")))["hits"]
    ] == ["k2"]
    assert {m["message_id"] for m in (await store.search(h.SearchParams(author="u1")))["hits"]} == {
        "k1",
        "k3",
    }
    newest = await store.search(h.SearchParams(sort="newest", limit=2))
    assert [m["message_id"] for m in newest["hits"]] == ["k4", "k3"]
    assert newest["total"] == 4
    page2 = await store.search(h.SearchParams(sort="newest", offset=2, limit=2))
    assert [m["message_id"] for m in page2["hits"]] == ["k2", "k1"]
    since = h.SearchParams(since=events[2].occurred_at, sort="oldest")
    assert [m["message_id"] for m in (await store.search(since))["hits"]] == ["k3", "k4"]
    assert [m["message_id"] for m in (await store.search(h.SearchParams(q="deploy")))["hits"]] == ["k4"]

    msg = await store.get_message("k2")
    assert msg is not None
    assert msg["content"] == "프로젝트 배포 완료"
    assert msg["author_id"] == "u2"
    assert await store.get_message("nope") is None


async def test_update_stale_delete_and_redelivery(store: MessageStore) -> None:
    c = created("m1", "첫 번째 내용", ts=1)
    assert (await store.write(deltas(c))).created == 1
    r = await store.write(deltas(updated("m1", "두 번째 내용", ts=5)))
    assert r.updated == 1
    r = await store.write(deltas(updated("m1", "오래된 수정", ts=3)))  # stale
    assert (r.unchanged, r.updated) == (1, 0)
    r = await store.write(deltas(c))  # redelivered create: 409 on create, re-read, nothing to change
    assert (r.unchanged, r.conflicts, r.created) == (1, 1, 0)
    msg = await store.get_message("m1")
    assert msg is not None
    assert msg["content"] == "두 번째 내용"

    assert (await store.write(deltas(deleted("m1", ts=9)))).updated == 1
    assert await store.get_message("m1") is None
    raw = await store.get_source("m1")
    assert raw is not None
    assert raw["deleted"] is True
    assert raw["content"] is None
    r = await store.write(deltas(updated("m1", "늦게 도착한 수정", ts=7)))  # late update after the delete
    assert r.unchanged == 1
    await store.refresh()
    assert (await store.search(h.SearchParams(q="내용")))["total"] == 0


async def test_concurrent_writers_lose_nothing(store: MessageStore) -> None:
    """Two writers (e.g. replica + replay) hit the same documents: 409s are re-read and merged."""
    ids = [f"c{i}" for i in range(60)]
    creates = [created(i, f"원본 {i}", ts=1) for i in ids]
    updates = [updated(i, f"수정 {i}", ts=2) for i in ids]
    deletes = [deleted(i, ts=3) for i in ids[::5]]
    results = await asyncio.gather(
        store.write(deltas(*creates)), store.write(deltas(*updates)), store.write(deltas(*deletes))
    )
    assert all(not r.errors for r in results)
    expected = deltas(*creates, *updates, *deletes)
    for mid in ids:
        src = await store.get_source(mid)
        assert src is not None
        assert h.from_source(mid, src) == expected[mid]


async def test_permanent_item_errors_are_reported_per_document(
    elasticsearch_url: str, alias: str, es: AsyncElasticsearch
) -> None:
    """A real partial bulk failure: an index whose mapping refuses one document (author as a number)."""
    body = h.index_body(shards=1, replicas=0, refresh_interval="1s")
    body["mappings"]["properties"]["author"] = {"type": "long"}
    await es.indices.create(
        index=f"{alias}-000001", settings=body["settings"], mappings=body["mappings"], aliases={alias: {}}
    )
    store = MessageStore.from_settings(es_settings(elasticsearch_url, alias))
    try:
        events = [
            created("ok1", "a", ts=1, author="123"),
            created("bad", "b", ts=1, author="bob"),
            created("ok2", "c", ts=1, author="456"),
        ]
        result = await store.write(deltas(*events))
        assert set(result.errors) == {"bad"}
        assert result.created == 2
        err = result.errors["bad"]
        assert err.status == 400
        assert "author" in err.reason
        assert await store.get_source("ok1")
        assert await store.get_source("ok2")
        assert await store.get_source("bad") is None
    finally:
        await store.close()


# ------------------------------------------------------------------ retryable items, through a fault proxy
class FaultProxy:
    """An HTTP proxy in front of the real server that answers the first ``fail_items`` bulk items of the next
    ``fail_requests`` bulk requests with ``status`` instead of forwarding them (the rest are forwarded)."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.fail_requests = 0
        self.fail_items = 0
        self.status = 503
        self.bulk_requests = 0
        #: like Elasticsearch's http.max_content_length: a bigger request body is answered 413
        self.max_content_length: int | None = None
        self.bulk_sizes: list[int] = []
        self.url = ""
        self._session: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession()
        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"

    async def close(self) -> None:
        if self._runner:
            await self._runner.cleanup()
        if self._session:
            await self._session.close()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        injected: list[dict[str, Any]] = []
        if request.path.endswith("/_bulk"):
            self.bulk_requests += 1
            self.bulk_sizes.append(len(body))
            if self.max_content_length is not None and len(body) > self.max_content_length:
                return web.json_response({"error": "Request Entity Too Large", "status": 413}, status=413)
            if self.fail_requests > 0:
                self.fail_requests -= 1
                lines = [ln for ln in body.split(b"\n") if ln.strip()]
                kept: list[bytes] = []
                i = 0
                while i < len(lines):
                    action = json.loads(lines[i])
                    op, meta = next(iter(action.items()))
                    width = 1 if op == "delete" else 2
                    if len(injected) < self.fail_items:
                        injected.append(
                            {
                                op: {
                                    "_index": meta.get("_index"),
                                    "_id": meta.get("_id"),
                                    "status": self.status,
                                    "error": {"type": "unavailable_shards_exception", "reason": "injected"},
                                }
                            }
                        )
                    else:
                        kept.extend(lines[i : i + width])
                    i += width
                body = b"\n".join(kept) + b"\n"
        headers = {k: v for k, v in request.headers.items() if k.lower() not in {"host", "content-length"}}
        assert self._session is not None
        items: list[dict[str, Any]] = []
        if injected and body.strip():
            async with self._session.request(
                request.method, self.upstream + request.path_qs, data=body, headers=headers
            ) as up:
                data = await up.json(content_type=None)
                resp_headers = up.headers
                items = data.get("items", [])
        elif injected:
            async with self._session.get(self.upstream + "/", headers=headers) as up:
                resp_headers = up.headers
        else:
            async with self._session.request(
                request.method, self.upstream + request.path_qs, data=body, headers=headers
            ) as up:
                payload = await up.read()
                out = {
                    k: v
                    for k, v in up.headers.items()
                    if k.lower() not in {"content-length", "transfer-encoding", "content-encoding"}
                }
                return web.Response(body=payload, status=up.status, headers=out)
        out = {
            k: v
            for k, v in resp_headers.items()
            if k.lower() not in {"content-length", "transfer-encoding", "content-encoding"}
        }
        merged = {"took": 1, "errors": True, "items": injected + items}
        return web.Response(body=json.dumps(merged).encode(), status=200, headers=out)


@pytest.fixture
async def proxy(elasticsearch_url: str) -> AsyncIterator[FaultProxy]:
    p = FaultProxy(elasticsearch_url)
    await p.start()
    yield p
    await p.close()


async def test_retryable_items_are_retried_with_backoff(proxy: FaultProxy, alias: str) -> None:
    store = MessageStore.from_settings(es_settings(proxy.url, alias))
    try:
        await store.ensure_alias()
        proxy.fail_requests, proxy.fail_items, proxy.status = 2, 3, 429
        events = [created(f"r{i}", f"내용 {i}", ts=1) for i in range(5)]
        result = await store.write(deltas(*events))
        assert result.errors == {}
        assert result.retried == 6
        assert result.created == 5
        assert proxy.bulk_requests == 3
        for i in range(5):
            assert (await store.get_message(f"r{i}")) is not None
    finally:
        await store.close()


async def test_items_failing_beyond_the_retry_budget_fail_the_batch(proxy: FaultProxy, alias: str) -> None:
    store = MessageStore.from_settings(es_settings(proxy.url, alias, search_write_max_retries=2))
    try:
        await store.ensure_alias()
        proxy.fail_requests, proxy.fail_items, proxy.status = 100, 1, 503
        batch = deltas(created("x1", "a", ts=1), created("x2", "b", ts=1))
        with pytest.raises(TransientWriteError, match="still failing after 2 retries"):
            await store.write(batch)
        assert proxy.bulk_requests == 3
        # the runtime retries the whole batch later: the item that did get through is not duplicated
        proxy.fail_requests = 0
        result = await store.write(batch)
        assert (result.errors, result.created, result.unchanged, result.updated) == ({}, 1, 1, 0)
    finally:
        await store.close()


async def test_bulk_requests_are_sized_in_bytes_and_a_413_splits_them(proxy: FaultProxy, alias: str) -> None:
    """A request above the server's http.max_content_length gets 413: it is split, never resent as is; a
    document too large on its own is refused (→ DLQ) and the others are stored."""
    store = MessageStore.from_settings(es_settings(proxy.url, alias, search_bulk_max_bytes=64 * 1024))
    try:
        await store.ensure_alias()
        proxy.max_content_length = 20 * 1024
        events = [created(f"b{i}", f"{i} " + "가" * 700, ts=1) for i in range(40)]  # ~2 KB each, ~85 KB
        events.append(created("huge", "나" * 12_000, ts=1))  # ~36 KB: too large even alone
        result = await store.write(deltas(*events))
        assert set(result.errors) == {"huge"}
        assert result.errors["huge"].status == 413
        assert result.created == 40
        assert result.split >= 2
        accepted = [size for size in proxy.bulk_sizes if size <= proxy.max_content_length]
        assert sum(1 for size in proxy.bulk_sizes if size > 64 * 1024) == 0  # never above the configured size
        assert len(accepted) >= 5
        for i in range(40):
            assert (await store.get_message(f"b{i}")) is not None
    finally:
        await store.close()


# ------------------------------------------------------------------ server features the design relies on
async def test_es_compare_and_set_and_create_conflicts(es: AsyncElasticsearch, alias: str) -> None:
    index = f"{alias}-cas"
    await es.indices.create(index=index)
    first = await es.index(index=index, id="d", document={"v": 1}, op_type="create")
    with pytest.raises(ConflictError):
        await es.index(index=index, id="d", document={"v": 2}, op_type="create")
    await es.index(
        index=index,
        id="d",
        document={"v": 3},
        if_seq_no=first["_seq_no"],
        if_primary_term=first["_primary_term"],
    )
    with pytest.raises(ConflictError):  # the token is stale now
        await es.index(
            index=index,
            id="d",
            document={"v": 4},
            if_seq_no=first["_seq_no"],
            if_primary_term=first["_primary_term"],
        )
    docs = (await es.mget(index=index, ids=["d", "missing"]))["docs"]  # realtime, no refresh needed
    assert docs[0]["_source"] == {"v": 3}
    assert docs[0]["_index"] == index
    assert "_seq_no" in docs[0]
    assert docs[1]["found"] is False
    assert docs[1]["_index"] == index


async def test_es_external_versioning_refuses_stale_versions(es: AsyncElasticsearch, alias: str) -> None:
    """Verified although the design does not use it (see README: delete tombstones are not kept here)."""
    index = f"{alias}-ext"
    await es.indices.create(index=index)
    await es.index(index=index, id="d", document={"v": 200}, version=200, version_type="external")
    with pytest.raises(ConflictError):
        await es.index(index=index, id="d", document={"v": 100}, version=100, version_type="external")
    assert (await es.get(index=index, id="d"))["_version"] == 200


async def test_es_alias_swap_is_atomic_for_concurrent_searches(es: AsyncElasticsearch, alias: str) -> None:
    a, b = f"{alias}-a", f"{alias}-b"
    for index, n in ((a, 3), (b, 5)):
        await es.indices.create(index=index)
        for i in range(n):
            await es.index(index=index, id=str(i), document={"content": "same"})
        await es.indices.refresh(index=index)
    await es.indices.update_aliases(actions=[{"add": {"index": a, "alias": alias}}])
    seen: list[int] = []
    stop = asyncio.Event()

    async def reader() -> None:
        while not stop.is_set():
            seen.append((await es.search(index=alias, query={"match_all": {}}))["hits"]["total"]["value"])

    task = asyncio.create_task(reader())
    for i in range(10):
        src, dst = (a, b) if i % 2 == 0 else (b, a)
        await es.indices.update_aliases(
            actions=[{"remove": {"index": src, "alias": alias}}, {"add": {"index": dst, "alias": alias}}]
        )
        await asyncio.sleep(0.01)
    stop.set()
    await task
    assert seen
    assert set(seen) <= {3, 5}
    assert list((await es.indices.get_alias(name=alias)).body) == [a]


async def test_readiness_probes_are_not_logged_at_info(
    store: MessageStore, capsys: pytest.CaptureFixture[str]
) -> None:
    """A readiness probe (an Elasticsearch request every few seconds) leaves no info line in the service's
    log: the client's per-request lines go out at warning and above only."""
    import logging

    from consumer_runtime.logging import configure_logging

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        configure_logging("search-indexer", "INFO")
        capsys.readouterr()
        for _ in range(3):
            await store.ping()
        lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
        assert [line for line in lines if line.get("level") == "info"] == []
        logging.getLogger("elastic_transport.transport").warning("still shown")
        assert "still shown" in capsys.readouterr().out
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        for name in ("elastic_transport", "httpx", "httpcore"):
            logging.getLogger(name).setLevel(logging.NOTSET)
