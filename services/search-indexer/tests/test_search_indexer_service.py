"""The whole service against the real local broker (Tansu) and Elasticsearch-protocol server (noida-db):
consume → index → search over HTTP, ordering, dead letters, and rebuild by replay under live searches."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from consumer_runtime import decode_headers
from consumer_runtime.testing import KafkaNames, delete_topics, produce, read_all, wait_until
from consumer_runtime.topics import ensure_topics
from elasticsearch import AsyncElasticsearch
from search_indexer import handlers as h
from search_indexer.app import create_app
from search_indexer.config import Settings
from search_indexer.rebuild import partition_offsets
from search_indexer_testlib import created, deleted, raw, updated

pytestmark = pytest.mark.integration

#: the gateway's internal token: /admin/* of the service needs it (consumer_runtime.auth)
INTERNAL_TOKEN = "indexer-test-internal-token"
INTERNAL = {"Authorization": f"Bearer {INTERNAL_TOKEN}"}


class Harness:
    def __init__(self, settings: Settings, client: httpx.AsyncClient, app: Any) -> None:
        self.settings = settings
        self.http = client
        self.app = app

    @property
    def topics(self) -> dict[str, str]:
        s = self.settings
        return {
            "c": s.kafka_topic_messages_created,
            "u": s.kafka_topic_messages_updated,
            "d": s.kafka_topic_messages_deleted,
        }

    async def send(self, *events: Any) -> None:
        """Produce each event to its own topic, keyed by channel id (in the order given, per topic)."""
        kinds = {"message.created": "c", "message.updated": "u", "message.deleted": "d"}
        for e in events:
            await produce(
                self.settings.kafka_bootstrap_servers,
                self.topics[kinds[e.event_type]],
                [raw(e)],
                keys=[e.channel_id.encode()],
            )

    async def search(self, **params: Any) -> dict[str, Any]:
        r = await self.http.get("/messages/search", params=params)
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    async def ids(self, **params: Any) -> set[str]:
        return {m["message_id"] for m in (await self.search(**params))["hits"]}

    async def until(self, predicate: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
        return await wait_until(predicate, timeout=timeout, interval=0.1, what=what)


@pytest.fixture
async def make_service(
    kafka_bootstrap: str, kafka_names: KafkaNames, elasticsearch_url: str, alias: str
) -> AsyncIterator[Callable[..., Any]]:
    base = kafka_names.topic
    topics = [f"{base}.created", f"{base}.updated", f"{base}.deleted"]
    control = f"{base}.control"  # this test's own operator-command topic (the shared one is left alone)

    @asynccontextmanager
    async def make(**overrides: Any) -> AsyncIterator[Harness]:
        values: dict[str, Any] = {
            "kafka_bootstrap_servers": kafka_bootstrap,
            "kafka_consumer_group": kafka_names.group,
            "kafka_enable_idempotence": False,
            "kafka_session_timeout_ms": 6000,
            "kafka_heartbeat_interval_ms": 1000,
            "mq_batch_timeout_ms": 100,
            "retry_backoff_initial_ms": 50,
            "retry_backoff_max_ms": 500,
            "kafka_control_topic": control,
            "kafka_topic_messages_created": topics[0],
            "kafka_topic_messages_updated": topics[1],
            "kafka_topic_messages_deleted": topics[2],
            "elasticsearch_url": elasticsearch_url,
            "search_index_alias": alias,
            "search_index_replicas": 0,
            "search_index_refresh_interval": "200ms",
            **overrides,
        }
        settings = Settings(**values)
        await ensure_topics(settings, topics + [f"{t}.dlq" for t in topics])
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://indexer") as client:
                yield Harness(settings, client, app)

    yield make
    await delete_topics(kafka_bootstrap, [*topics, *(f"{t}.dlq" for t in topics), control])


async def test_create_update_delete_over_kafka(make_service: Callable[..., Any]) -> None:
    async with make_service() as svc:
        await svc.send(created("m1", "프로젝트 배포 완료", ts=1), created("m2", "점심 메뉴", ts=1))
        await svc.until(lambda: _has(svc, "m1", q="배포"), "created message searchable")

        await svc.send(updated("m1", "긴급 롤백 진행", ts=2))
        await svc.until(lambda: _has(svc, "m1", q="롤백"), "new content found")
        assert "m1" not in await svc.ids(q="배포")  # old content no longer matches

        await svc.send(deleted("m1", ts=3))

        async def gone() -> bool:
            return (
                "m1" not in await svc.ids(q="롤백")
                and (await svc.http.get("/messages/m1")).status_code == 404
            )

        await svc.until(gone, "deleted message gone")
        r = await svc.http.get("/messages/m2")
        assert r.status_code == 200
        assert r.json()["content"] == "점심 메뉴"
        status = (await svc.http.get("/consumer/status")).json()
        assert status["group"] == svc.settings.kafka_consumer_group
        assert status["counts"]["stored"] == 4


async def _has(svc: Harness, mid: str, **params: Any) -> bool:
    return mid in await svc.ids(**params)


async def test_out_of_order_and_redelivered_events(make_service: Callable[..., Any]) -> None:
    c1 = created("o1", "원래 내용", ts=1, author="alice")
    u1 = updated("o1", "최신 내용", ts=5)
    stale = updated("o1", "오래된 수정", ts=3)
    c2 = created("o2", "지울 메시지", ts=1)
    d2 = deleted("o2", ts=9)
    late = updated("o2", "삭제 후 늦은 수정", ts=6)
    async with make_service() as svc:
        await svc.send(u1)  # the update arrives before its create
        await svc.until(lambda: _has(svc, "o1", q="최신"), "update before create indexed")
        await svc.send(c1, stale, c1, u1)  # the create late, a stale update, redeliveries
        await svc.send(d2, c2, late, c2)  # delete first, then the create and a late update

        async def settled() -> bool:
            st = (await svc.http.get("/consumer/status")).json()
            return bool(st["counts"]["stored"] >= 9 and st["lag"] == 0)

        await svc.until(settled, "all 9 events stored")
        msg = (await svc.http.get("/messages/o1")).json()
        assert msg["content"] == "최신 내용"
        assert msg["author_id"] == "alice"
        assert msg["version"] == u1.timestamp
        assert msg["created_at"] is not None
        assert (await svc.http.get("/messages/o2")).status_code == 404
        await asyncio.sleep(0.5)  # refresh interval
        assert await svc.ids(q="수정") == set()
        assert await svc.ids(q="메시지") == set()


async def test_bad_and_refused_events_are_dead_lettered(
    make_service: Callable[..., Any], es: AsyncElasticsearch, alias: str, kafka_bootstrap: str
) -> None:
    # An index whose mapping refuses non-numeric authors: a real per-item failure inside a good batch.
    body = h.index_body(shards=1, replicas=0, refresh_interval="200ms")
    body["mappings"]["properties"]["author"] = {"type": "long"}
    await es.indices.create(
        index=f"{alias}-000001", settings=body["settings"], mappings=body["mappings"], aliases={alias: {}}
    )
    async with make_service() as svc:
        created_topic = svc.topics["c"]
        await produce(kafka_bootstrap, created_topic, [b'{"event_type": "message.created", "event_id": 1'])
        await svc.send(
            created("g1", "좋은 메시지", ts=1, author="100"),
            created("b1", "거부될 메시지", ts=1, author="bob"),
            created("g2", "또 좋은 메시지", ts=1, author="200"),
        )
        dlq = await read_all(kafka_bootstrap, f"{created_topic}.dlq", expect=2, timeout=20)
        stages = sorted(decode_headers(r.headers)["dlq.error.stage"] for r in dlq)
        assert stages == ["decode", "sink"]
        refused = next(r for r in dlq if decode_headers(r.headers)["dlq.error.stage"] == "sink")
        assert b'"b1"' in refused.value
        assert "document_parsing_exception" in decode_headers(refused.headers)["dlq.error.message"]
        await svc.until(lambda: _has(svc, "g2", q="좋은"), "good events of the same batch stored")
        assert await svc.ids(q="메시지") == {"g1", "g2"}


async def test_api_health_validation_and_internal_token(make_service: Callable[..., Any]) -> None:
    async with make_service(internal_token="s3cret") as svc:
        assert (await svc.http.get("/healthz")).json()["status"] == "ok"
        ready = await svc.until(lambda: _ready(svc), "ready")
        assert ready["checks"]["elasticsearch"] == "ok"
        assert (await svc.http.get("/messages/search", params={"limit": 101})).status_code == 422
        assert (
            await svc.http.get("/messages/search", params={"offset": 9995, "limit": 10})
        ).status_code == 422
        assert (await svc.http.get("/messages/search", params={"sort": "random"})).status_code == 422
        assert (await svc.http.post("/admin/rebuild")).status_code == 401
        assert (await svc.http.get("/admin/rebuild")).status_code == 401  # /admin/* is the gateway's only
        secret = {"Authorization": "Bearer s3cret"}
        assert (await svc.http.get("/admin/rebuild", headers=secret)).json() == {"state": "idle"}
        assert "search_indexer_documents_total" in (await svc.http.get("/metrics")).text
        assert "/messages/search" in (await svc.http.get("/openapi.json")).json()["paths"]


async def _ready(svc: Harness) -> dict[str, Any] | None:
    r = await svc.http.get("/readyz")
    return r.json() if r.status_code == 200 else None


def _model(events: Sequence[Any]) -> dict[str, dict[str, Any]]:
    """The documents the events must produce (pure merge), as the public shape; tombstones left out."""
    states: dict[str, h.MessageState] = {}
    for e in events:
        s = h.from_event(e)
        states[s.message_id] = h.merge(states.get(s.message_id), s)
    out = {}
    for mid, s in states.items():
        src = h.to_source(s)
        if h.is_visible(src):
            out[mid] = h.to_message(src)
    return out


async def _dump(es: AsyncElasticsearch, index: str) -> dict[str, dict[str, Any]]:
    await es.indices.refresh(index=index)
    resp = await es.search(
        index=index, query={"bool": {"must_not": [{"term": {"deleted": True}}]}}, size=10_000
    )
    return {hit["_id"]: h.to_message(hit["_source"]) for hit in resp["hits"]["hits"]}


async def test_rebuild_by_replay_while_searching(
    make_service: Callable[..., Any], es: AsyncElasticsearch, alias: str, kafka_bootstrap: str
) -> None:
    n = 300
    events: list[Any] = [
        created(f"r{i}", f"재생 테스트 메시지 {i}", ts=i, channel=f"ch{i % 3}") for i in range(n)
    ]
    events += [
        updated(f"r{i}", f"재생 테스트 수정본 {i}", ts=n + i, channel=f"ch{i % 3}") for i in range(0, n, 4)
    ]
    events += [deleted(f"r{i}", ts=2 * n + i, channel=f"ch{i % 3}") for i in range(0, n, 10)]
    async with make_service(rebuild_batch_size=50, internal_token=INTERNAL_TOKEN) as svc:
        await svc.send(*events)
        expected = _model(events)

        async def live_done() -> bool:
            return (await svc.search(q="재생", limit=1))["total"] == len(expected)

        await svc.until(live_done, "live index complete", timeout=40)
        old_index = (await es.indices.get_alias(name=alias)).body
        before = await _dump(es, alias)
        assert before == expected

        totals: list[int] = []
        errors: list[str] = []
        stop = asyncio.Event()

        async def searcher() -> None:
            while not stop.is_set():
                r = await svc.http.get("/messages/search", params={"q": "재생", "limit": 1})
                if r.status_code != 200:
                    errors.append(r.text)
                else:
                    totals.append(r.json()["total"])
                await asyncio.sleep(0.01)

        task = asyncio.create_task(searcher())
        started = await svc.http.post("/admin/rebuild", headers=INTERNAL)
        assert started.status_code == 202, started.text
        assert (await svc.http.post("/admin/rebuild", headers=INTERNAL)).status_code == 409  # one at a time
        # live traffic during the rebuild
        extra = [created(f"x{i}", f"재생 중 새 메시지 {i}", ts=3 * n + i) for i in range(20)]
        extra.append(updated("r1", "재생 중 수정", ts=4 * n))
        await svc.send(*extra)
        progress: list[tuple[int, int | None]] = []

        async def finished() -> bool:
            st = (await svc.http.get("/admin/rebuild", headers=INTERNAL)).json()
            progress.append((st["replayed"], st["total"]))
            assert st["state"] != "failed", st
            return bool(st["state"] == "done")

        await svc.until(finished, "rebuild done", timeout=90)
        stop.set()
        await task
        status = (await svc.http.get("/admin/rebuild", headers=INTERNAL)).json()

        assert not errors
        assert totals
        assert min(totals) >= len(expected)
        assert status["total"] >= len(events)  # high watermarks, not Tansu's end_offsets()
        assert status["replayed"] == status["total"]
        assert status["progress"] == 1.0
        assert any(0 < done < total for done, total in progress if total) or status["total"] <= 50
        new_aliases = (await es.indices.get_alias(name=alias)).body
        assert list(new_aliases) == [status["new_index"]]
        assert status["old_indices"] == list(old_index)
        assert status["kept_indices"] == list(old_index)  # kept until an admin deletes it (or it expires)
        assert (await es.indices.exists(index=next(iter(old_index)))).body
        assert status["old_documents"] is not None

        everything = _model(events + extra)

        async def complete() -> bool:
            return await _dump(es, alias) == everything

        await svc.until(complete, "rebuilt index has every document")
        assert status["documents"] is not None


async def test_partition_offsets_use_high_watermarks(kafka_bootstrap: str, kafka_names: KafkaNames) -> None:
    """Several produce batches per partition: Tansu's end_offsets() would undercount, highwater does not."""
    settings = Settings(kafka_bootstrap_servers=kafka_bootstrap, kafka_enable_idempotence=False)
    await ensure_topics(settings, [kafka_names.topic])
    for batch in range(3):
        await produce(kafka_bootstrap, kafka_names.topic, [b"x"] * (5 + batch), partition=0)
    await produce(kafka_bootstrap, kafka_names.topic, [b"y"], partition=1)
    offsets = await partition_offsets(settings, [kafka_names.topic])
    by_partition = {tp.partition: hw for tp, hw in offsets.items()}
    assert by_partition[0] == (0, 18)
    assert by_partition[1] == (0, 1)
    assert by_partition[2] == (0, 0)


async def test_message_topics_are_created_to_keep_everything(kafka_bootstrap: str) -> None:
    """Retention rule: a rebuild replays platform.messages.* from the beginning, so they keep everything."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    settings = Settings(kafka_bootstrap_servers=kafka_bootstrap, kafka_enable_idempotence=False)
    suffix = uuid.uuid4().hex[:8]
    names = [f"platform.messages.t{suffix}", f"platform.messages.t{suffix}.dlq", f"other-t{suffix}"]
    assert await ensure_topics(settings, names) == names
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        retention = {}
        for name in names:  # one resource per request: what the local broker answers
            (answer,) = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)])
            (resource,) = answer.to_object()["resources"]
            entries = {e["config_names"]: e["config_value"] for e in resource["config_entries"]}
            retention[name] = entries.get("retention.ms")
    finally:
        await admin.close()
        await delete_topics(kafka_bootstrap, names)
    assert retention[names[0]] == "-1"
    assert retention[names[1]] != "-1"  # dead letters keep the broker default
    assert retention[names[2]] != "-1"


async def test_rebuild_refused_when_a_topic_lost_history(
    make_service: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A partition whose log start offset is above 0 (retention or deleted records; the local broker cannot
    delete records, so its answer is shifted here): 409 naming the partition, unless force=true."""
    import search_indexer.rebuild as rebuild_module

    real = rebuild_module.partition_offsets

    async def truncated(*args: Any, **kwargs: Any) -> Any:
        offsets = await real(*args, **kwargs)
        return {
            tp: ((begin + 3, high + 3) if tp.partition == 1 else (begin, high))
            for tp, (begin, high) in offsets.items()
        }

    monkeypatch.setattr(rebuild_module, "partition_offsets", truncated)
    async with make_service(internal_token=INTERNAL_TOKEN) as svc:
        refused = await svc.http.post("/admin/rebuild", headers=INTERNAL)
        assert refused.status_code == 409, refused.text
        detail = refused.json()
        text = str(detail)
        for topic in svc.topics.values():
            assert f"{topic}[1] (log start 3)" in text
        assert f"{svc.topics['c']}[0]" not in text
        assert (await svc.http.get("/admin/rebuild", headers=INTERNAL)).json() == {
            "state": "idle"
        }  # nothing started
        forced = await svc.http.post("/admin/rebuild", headers=INTERNAL, params={"force": "true"})
        assert forced.status_code == 202, forced.text
        assert forced.json()["force"] is True
        await svc.app.state.rebuild.close()


async def test_rebuild_refuses_to_swap_in_a_smaller_index_unless_forced(
    make_service: Callable[..., Any], es: AsyncElasticsearch, alias: str
) -> None:
    """The current index holds a document the topics no longer have (as after retention): the rebuild
    fails without moving the alias; with force=true it swaps; the old index is kept until an admin deletes
    it, and expires after REBUILD_KEEP_OLD_INDEX_S."""
    async with make_service(internal_token=INTERNAL_TOKEN) as svc:
        await svc.send(*(created(f"g{i}", f"보존 검사 {i}", ts=i) for i in range(5)))
        await svc.until(lambda: _total(svc, "보존", 5), "live index complete")
        (first,) = (await es.indices.get_alias(name=alias)).body
        await es.index(
            index=first, id="only-in-old", document={"content": "보존 검사 옛날", "deleted": False}
        )
        await es.indices.refresh(index=first)

        async def rebuild(**params: Any) -> dict[str, Any]:
            started = await svc.http.post("/admin/rebuild", headers=INTERNAL, params=params)
            assert started.status_code == 202, started.text

            async def over() -> bool:
                return (await svc.http.get("/admin/rebuild", headers=INTERNAL)).json()["state"] in (
                    "done",
                    "failed",
                )

            await svc.until(over, "rebuild over", timeout=60)
            body: dict[str, Any] = (await svc.http.get("/admin/rebuild", headers=INTERNAL)).json()
            return body

        refused = await rebuild()
        assert refused["state"] == "failed"
        assert "holds 5 documents but the current one held 6" in refused["error"]
        assert list((await es.indices.get_alias(name=alias)).body) == [first]  # alias not moved
        assert not (await es.indices.exists(index=refused["new_index"])).body
        assert await svc.ids(q="옛날") == {"only-in-old"}

        forced = await rebuild(force="true")
        assert forced["state"] == "done", forced
        assert list((await es.indices.get_alias(name=alias)).body) == [forced["new_index"]]
        assert forced["kept_indices"] == [first]

        listed = (await svc.http.get("/admin/indices", headers=INTERNAL)).json()
        assert listed["current"] == [forced["new_index"]]
        assert [r["index"] for r in listed["retired"]] == [first]
        current = await svc.http.delete(f"/admin/indices/{forced['new_index']}", headers=INTERNAL)
        assert current.status_code == 409
        assert (await svc.http.delete(f"/admin/indices/{first}")).status_code == 401
        assert (await svc.http.delete(f"/admin/indices/{first}", headers=INTERNAL)).json() == {
            "deleted": first
        }
        assert not (await es.indices.exists(index=first)).body

        # expiry: a retired index is swept once REBUILD_KEEP_OLD_INDEX_S has passed since it was retired
        manager = svc.app.state.rebuild
        store = svc.app.state.store
        await store.create_index(f"{alias}-retired-probe")
        await store.retire_index(f"{alias}-retired-probe")
        assert await manager.sweep_retired() == []  # kept: 7 days by default
        manager.settings = manager.settings.model_copy(update={"rebuild_keep_old_index_s": 0.0})
        assert await manager.sweep_retired() == [f"{alias}-retired-probe"]
        assert list((await es.indices.get_alias(name=alias)).body) == [forced["new_index"]]  # never the alias


async def _total(svc: Harness, q: str, n: int) -> bool:
    return bool((await svc.search(q=q, limit=1))["total"] == n)
