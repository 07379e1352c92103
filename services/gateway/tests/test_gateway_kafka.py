"""The Kafka side of the gateway against the real local broker: publish, topics, groups, lag, offset
reset, message browser, produce, DLQ list + replay, errors."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from consumer_runtime.dlq import DeadLetter, DeadLetterPublisher, lineage
from consumer_runtime.testing import fast_settings, read_all, wait_until
from gateway_testlib import AUTH, Names
from platform_events import FactoryIssueEvent, decode

pytestmark = pytest.mark.integration

ISSUE = {
    "issue": "PRESS_001_20250808_001",
    "processType": "장애접수",
    "modeType": "프레스",
    "modeLogId": "PRESS_LOG_001",
    "description": "100톤 프레스 유압 이상",
    "isSolved": False,
    "timestamp": "2025-08-08T17:05:37.123Z",
}


async def make_topic(gw: httpx.AsyncClient, names: Names, partitions: int = 3, **config: str) -> str:
    name = names.topic(f"t-{uuid.uuid4().hex[:6]}")
    body = {"name": name, "partitions": partitions, "config": config}
    response = await gw.post("/api/v1/topics", json=body, headers=AUTH)
    assert response.status_code == 201, response.text
    return name


async def test_post_messages_publishes_message_created_keyed_by_channel(
    gw: httpx.AsyncClient, names: Names, kafka_bootstrap: str
) -> None:
    body = {
        "channel_id": "ch_dev",
        "author_id": "user_001",
        "content": "프로젝트 배포 완료",
        "mentions": ["user_002"],
    }
    response = await gw.post("/messages", json=body)
    assert response.status_code == 200, response.text
    out = response.json()
    assert out["message_id"].startswith("msg_")
    assert out["event_id"].startswith("evt_")
    assert out["content"] == "프로젝트 배포 완료"
    assert out["mentions"] == ["user_002"]
    records = await read_all(kafka_bootstrap, names.topic("msg-created"), expect=1)
    record = next(r for r in records if r.offset == out["offset"] and r.partition == out["partition"])
    assert record.key == b"ch_dev"
    event = json.loads(record.value)
    assert event["event_type"] == "message.created"
    assert event["event_id"] == out["event_id"]
    assert event["payload"]["message_id"] == out["message_id"]


async def test_publish_issue_event_validated_and_keyed(
    gw: httpx.AsyncClient, names: Names, kafka_bootstrap: str
) -> None:
    response = await gw.post("/api/v1/events/issues", json=ISSUE)
    assert response.status_code == 202, response.text
    out = response.json()
    assert out["key"] == ISSUE["issue"]
    assert out["topic"] == names.topic("issues")
    records = await read_all(kafka_bootstrap, out["topic"], expect=1)
    record = next(r for r in records if (r.partition, r.offset) == (out["partition"], out["offset"]))
    event = decode(FactoryIssueEvent, record.value)
    assert event.description == "100톤 프레스 유압 이상"
    assert "장애접수".encode() in record.value  # Korean kept readable, not \u-escaped

    bad = await gw.post("/api/v1/events/issues", json={**ISSUE, "processType": "수리"})
    assert bad.status_code == 422
    assert bad.json()["field"] == "processType"
    assert "processType" in bad.json()["message"]
    missing = await gw.post("/api/v1/events/issues", json={"issue": "X"})
    assert missing.status_code == 422
    assert missing.json()["error"] == "validation_error"


async def test_publish_message_events_and_activity(gw: httpx.AsyncClient, names: Names) -> None:
    upd = await gw.put("/api/v1/messages/msg_1", json={"channel_id": "ch_dev", "content": "수정됨"})
    assert upd.status_code == 202
    assert upd.json()["topic"] == names.topic("msg-updated")
    dele = await gw.delete("/api/v1/messages/msg_1", params={"channel_id": "ch_dev"})
    assert dele.status_code == 202
    assert dele.json()["topic"] == names.topic("msg-deleted")
    raw = {
        "event_type": "message.deleted",
        "event_id": "evt_x",
        "timestamp": 1697234567890,
        "payload": {"message_id": "m", "channel_id": "c"},
    }
    routed = await gw.post("/api/v1/events/messages", json=raw)
    assert routed.status_code == 202
    assert routed.json()["topic"] == names.topic("msg-deleted")
    unknown = await gw.post("/api/v1/events/messages", json={**raw, "event_type": "message.exploded"})
    assert unknown.status_code == 422
    assert unknown.json()["field"]
    act = await gw.post("/api/v1/events/user-activity", json={"user_id": "u1", "activity": "login"})
    assert act.status_code == 202
    assert act.json()["key"] == "u1"
    assert act.json()["event_id"].startswith("evt_")


async def test_bad_input_is_json_naming_the_field(gw: httpx.AsyncClient) -> None:
    not_json = await gw.post("/messages", content=b"{nope", headers={"content-type": "application/json"})
    assert not_json.status_code == 422
    assert not_json.json()["error"] == "invalid_json"
    empty = await gw.post("/messages", json={"channel_id": "", "author_id": "a", "content": "x"})
    assert empty.status_code == 422
    assert empty.json()["field"] == "channel_id"
    huge = await gw.post(
        "/messages", content=b"x" * (3 * 1024 * 1024), headers={"content-type": "application/json"}
    )
    assert huge.status_code == 413
    assert huge.json()["error"] == "payload_too_large"
    nowhere = await gw.get("/api/v1/nowhere")
    assert nowhere.status_code == 404
    assert nowhere.json()["message"].startswith("no route")


async def test_topics_list_describe_create(gw: httpx.AsyncClient, names: Names) -> None:
    name = await make_topic(gw, names, partitions=2, **{"cleanup.policy": "compact"})
    listed = {t["name"]: t for t in (await gw.get("/api/v1/topics")).json()["topics"]}
    assert listed[name]["partitions"] == 2
    assert listed[names.topic("issues")]["platform_topic"] == "chatbot-issue-events"
    assert listed[names.topic("issues") + ".dlq"]["is_dlq"] is True
    detail = (await gw.get(f"/api/v1/topics/{name}")).json()
    assert [p["partition"] for p in detail["partitions"]] == [0, 1]
    assert all(p["leader"] is not None and p["end_offset"] == 0 for p in detail["partitions"])
    assert detail["config"].get("cleanup.policy") == "compact"

    again = await gw.post("/api/v1/topics", json={"name": name}, headers=AUTH)
    assert again.status_code == 409
    assert again.json()["field"] == "name"
    for bad in (
        {"name": "bad name"},
        {"name": "ok", "partitions": 0},
        {"name": "ok", "config": {"x.y": "1"}},
    ):
        response = await gw.post("/api/v1/topics", json=bad, headers=AUTH)
        assert response.status_code == 422, bad
        assert response.json()["field"]
    unknown = names.topic("never-created")
    assert (await gw.get(f"/api/v1/topics/{unknown}")).status_code == 404
    assert unknown not in {
        t["name"] for t in (await gw.get("/api/v1/topics")).json()["topics"]
    }  # not auto-created


async def test_end_offsets_are_high_watermarks_with_batched_writes(
    gw: httpx.AsyncClient, names: Names, kafka_bootstrap: str
) -> None:
    """Records sent in multi-record batches: the reported end offset is the true end (Tansu's
    ``end_offsets()`` would answer the start of the last batch + 1)."""
    name = await make_topic(gw, names, partitions=1)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", linger_ms=50)
    await producer.start()
    try:
        for _ in range(2):
            futures = [await producer.send(name, f"v{i}".encode(), partition=0) for i in range(40)]
            await asyncio.gather(*futures)
    finally:
        await producer.stop()
    detail = (await gw.get(f"/api/v1/topics/{name}")).json()
    assert detail["partitions"][0]["end_offset"] == 80
    page = (
        await gw.get(f"/api/v1/topics/{name}/messages", params={"from_end": True, "limit": 3}, headers=AUTH)
    ).json()
    assert [m["offset"] for m in page["messages"]] == [79, 78, 77]  # newest first
    assert [m["value"] for m in page["messages"]] == ["v39", "v38", "v37"]


async def test_newest_first_merges_every_partition_by_timestamp(
    gw: httpx.AsyncClient, names: Names, kafka_bootstrap: str
) -> None:
    """from_end: the newest records of the whole topic (every partition's tail merged by timestamp), the
    same page on every call; a partition filter narrows it to that partition's newest."""
    name = await make_topic(gw, names, partitions=3)
    t0 = 1_700_000_000_000
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:  # record i goes to partition i % 3 at t0 + i s: the newest are the highest i, on every partition
        for i in range(30):
            await producer.send_and_wait(name, f"r{i}".encode(), partition=i % 3, timestamp_ms=t0 + i * 1000)
        await producer.send_and_wait(name, b"tie", partition=0, timestamp_ms=t0 + 29_000)  # r29's time
    finally:
        await producer.stop()

    async def newest(**params: Any) -> dict[str, Any]:
        response = await gw.get(
            f"/api/v1/topics/{name}/messages", params={"from_end": True, **params}, headers=AUTH
        )
        assert response.status_code == 200, response.text
        return dict(response.json())

    page = await newest(limit=5)
    assert [m["value"] for m in page["messages"]] == ["tie", "r29", "r28", "r27", "r26"]
    assert [(m["partition"], m["timestamp_ms"]) for m in page["messages"][:2]] == [
        (0, t0 + 29_000),
        (2, t0 + 29_000),
    ]  # a tie in time: the lower partition first
    for _ in range(3):  # deterministic: the same data gives the same page
        assert (await newest(limit=5))["messages"] == page["messages"]
    cursor = {c["partition"]: (c["from_offset"], c["next_offset"]) for c in page["partitions"]}
    assert cursor == {0: (9, 11), 1: (9, 10), 2: (8, 10)}
    only = await newest(limit=3, partition=1)
    assert [m["value"] for m in only["messages"]] == ["r28", "r25", "r22"]
    assert {m["partition"] for m in only["messages"]} == {1}


async def test_browse_from_offset_timestamp_and_produce(
    gw: httpx.AsyncClient, names: Names, kafka_bootstrap: str
) -> None:
    name = await make_topic(gw, names, partitions=2)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for i in range(10):
            value = json.dumps({"n": i, "text": "한글"}, ensure_ascii=False).encode()
            await producer.send_and_wait(
                name, value, key=b"k", partition=0, timestamp_ms=1_700_000_000_000 + i * 1000
            )
        await producer.send_and_wait(name, b"\xff\xfe binary", partition=1, timestamp_ms=1_700_000_000_000)
    finally:
        await producer.stop()
    page = (
        await gw.get(
            f"/api/v1/topics/{name}/messages", params={"partition": 0, "offset": 4, "limit": 3}, headers=AUTH
        )
    ).json()
    assert [m["offset"] for m in page["messages"]] == [4, 5, 6]
    assert page["messages"][0]["value"] == {"n": 4, "text": "한글"}
    assert page["messages"][0]["value_encoding"] == "json"
    assert page["partitions"][0]["next_offset"] == 7
    by_time = await gw.get(
        f"/api/v1/topics/{name}/messages",
        params={"partition": 0, "timestamp_ms": 1_700_000_000_000 + 6500, "limit": 10},
        headers=AUTH,
    )
    assert [m["offset"] for m in by_time.json()["messages"]] == [7, 8, 9]
    everything = (await gw.get(f"/api/v1/topics/{name}/messages", params={"limit": 100}, headers=AUTH)).json()
    assert len(everything["messages"]) == 11
    binary = next(m for m in everything["messages"] if m["partition"] == 1)
    assert binary["value_encoding"] == "base64"
    limited = (await gw.get(f"/api/v1/topics/{name}/messages", params={"limit": 2}, headers=AUTH)).json()
    assert len(limited["messages"]) == 2

    produced = await gw.post(
        f"/api/v1/topics/{name}/messages",
        json={"key": "user_9", "value": {"hello": "세계"}, "headers": {"trace": "t1"}, "partition": 1},
        headers=AUTH,
    )
    assert produced.status_code == 201, produced.text
    assert produced.json()["partition"] == 1
    assert produced.json()["offset"] == 1
    tail = (
        await gw.get(f"/api/v1/topics/{name}/messages", params={"partition": 1, "offset": 1}, headers=AUTH)
    ).json()
    assert tail["messages"][0]["value"] == {"hello": "세계"}
    assert tail["messages"][0]["headers"] == {"trace": "t1"}

    assert (
        await gw.get(f"/api/v1/topics/{name}/messages", params={"partition": 7}, headers=AUTH)
    ).status_code == 404
    assert (await gw.get(f"/api/v1/topics/{names.topic('nope')}/messages", headers=AUTH)).status_code == 404
    assert (
        await gw.post(f"/api/v1/topics/{names.topic('nope')}/messages", json={"value": 1}, headers=AUTH)
    ).status_code == 404


async def test_produce_to_platform_topic_is_validated_unless_forced(
    gw: httpx.AsyncClient, names: Names
) -> None:
    topic = names.topic("issues")
    invalid = await gw.post(f"/api/v1/topics/{topic}/messages", json={"value": {"issue": "x"}}, headers=AUTH)
    assert invalid.status_code == 422
    assert invalid.json()["field"].startswith("value.")
    valid = await gw.post(
        f"/api/v1/topics/{topic}/messages",
        json={"key": "P9", "value": {**ISSUE, "issue": "P9"}},
        headers=AUTH,
    )
    assert valid.status_code == 201
    forced = await gw.post(
        f"/api/v1/topics/{topic}/messages", json={"value": "not json", "validate": False}, headers=AUTH
    )
    assert forced.status_code == 201


async def _member(bootstrap: str, group: str, topic: str) -> AIOKafkaConsumer:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
    )
    await consumer.start()
    await wait_until(lambda: _poll_assigned(consumer), timeout=30, what="member assigned")
    return consumer


async def _poll_assigned(consumer: AIOKafkaConsumer) -> bool:
    await consumer.getmany(timeout_ms=100)
    return bool(consumer.assignment())


async def test_groups_lag_and_offset_reset(gw: httpx.AsyncClient, names: Names, kafka_bootstrap: str) -> None:
    topic = await make_topic(gw, names, partitions=2)
    group = names.topic(f"g-{uuid.uuid4().hex[:6]}")
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", linger_ms=20)
    await producer.start()
    try:
        futures = [
            await producer.send(topic, b"x", partition=i % 2, timestamp_ms=1_700_000_000_000 + i)
            for i in range(20)
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()

    member = await _member(kafka_bootstrap, group, topic)
    try:
        await member.commit({TopicPartition(topic, 0): 4, TopicPartition(topic, 1): 10})
        groups = {g["group_id"]: g for g in (await gw.get("/api/v1/consumer-groups")).json()["groups"]}
        assert groups[group]["members"] == 1
        detail = (await gw.get(f"/api/v1/consumer-groups/{group}")).json()
        assert detail["state"] == "Stable"
        assert len(detail["members"]) == 1
        lag = {o["partition"]: o for o in detail["offsets"] if o["topic"] == topic}
        assert lag[0] == {"topic": topic, "partition": 0, "committed": 4, "end_offset": 10, "lag": 6}
        assert lag[1]["lag"] == 0
        assert detail["total_lag"] == 6

        body = {"topic": topic, "to": "earliest"}
        busy = await gw.post(f"/api/v1/consumer-groups/{group}/offsets/reset", json=body, headers=AUTH)
        assert busy.status_code == 409
        assert busy.json()["error"] == "group_active"
        # evict_stale never overrides a live member: it keeps its partitions, so the reset is refused.
        evict = await gw.post(
            f"/api/v1/consumer-groups/{group}/offsets/reset", json={**body, "evict_stale": True}, headers=AUTH
        )
        assert evict.status_code == 409, evict.text
    finally:
        await member.stop()

    async def reset(**body: Any) -> httpx.Response:
        payload = {
            "topic": topic,
            "evict_stale": True,
            **body,
        }  # a left member may linger on the local broker
        return await gw.post(f"/api/v1/consumer-groups/{group}/offsets/reset", json=payload, headers=AUTH)

    dry = await reset(to="earliest", dry_run=True)
    assert dry.status_code == 200, dry.text
    assert {p["partition"]: (p["previous"], p["new"]) for p in dry.json()["partitions"]} == {
        0: (4, 0),
        1: (10, 0),
    }
    offsets = (await gw.get(f"/api/v1/consumer-groups/{group}/offsets", params={"topic": topic})).json()
    assert [o["committed"] for o in offsets["offsets"]] == [4, 10]  # dry run changed nothing

    assert (await reset(to="earliest")).status_code == 200
    offsets = (await gw.get(f"/api/v1/consumer-groups/{group}/offsets", params={"topic": topic})).json()
    assert [o["committed"] for o in offsets["offsets"]] == [0, 0]
    assert offsets["total_lag"] == 20

    assert (await reset(to="offset", offset=7, partitions=[1])).status_code == 200
    assert (await reset(to="latest", partitions=[0])).status_code == 200
    # partition 1 holds the odd i (timestamps base+1, base+3, ...): first at/after base+12 is i=13, offset 6
    assert (await reset(to="timestamp", timestamp_ms=1_700_000_000_012, partitions=[1])).status_code == 200
    offsets = (await gw.get(f"/api/v1/consumer-groups/{group}/offsets", params={"topic": topic})).json()
    assert [o["committed"] for o in offsets["offsets"]] == [10, 6]

    out_of_range = await reset(to="offset", offset=999)
    assert out_of_range.status_code == 422
    assert out_of_range.json()["field"] == "offset"
    needs_ts = await reset(to="timestamp")
    assert needs_ts.status_code == 422
    assert (await gw.get(f"/api/v1/consumer-groups/{names.topic('no-group')}")).status_code == 404


async def test_dlq_list_and_replay(gw: httpx.AsyncClient, names: Names, kafka_bootstrap: str) -> None:
    topic = await make_topic(gw, names, partitions=1)
    dlq = await make_topic(gw, names, partitions=1)  # any name works; a real DLQ is "<topic>.dlq"
    dlq_name = f"{topic}.dlq"
    await gw.post("/api/v1/topics", json={"name": dlq_name, "partitions": 1}, headers=AUTH)
    del dlq
    publisher = DeadLetterPublisher(fast_settings(kafka_bootstrap))
    try:
        letters = [
            DeadLetter(
                topic=topic,
                partition=0,
                offset=i,
                key=f"k{i}".encode(),
                value=json.dumps({"n": i}).encode(),
                timestamp_ms=1_700_000_000_000,
                error=ValueError(f"broken record {i}"),
                stage="decode",
                dlq_topic=dlq_name,
            )
            for i in range(3)
        ]
        await publisher.publish(letters, group="some-group")
    finally:
        await publisher.close()

    listed = {d["topic"]: d for d in (await gw.get("/api/v1/dlq")).json()["dlq_topics"]}
    assert listed[dlq_name]["messages"] == 3
    assert listed[dlq_name]["original_topic"] == topic
    page = (await gw.get(f"/api/v1/dlq/{topic}/messages", headers=AUTH)).json()
    assert page["dlq_topic"] == dlq_name
    first = page["dead_letters"][0]
    assert first["error"] == {"class": "ValueError", "message": "broken record 0", "stage": "decode"}
    assert first["original"]["topic"] == topic
    assert first["original"]["offset"] == 0
    assert first["consumer_group"] == "some-group"
    assert first["key"] == "k0"

    one = await gw.post(
        f"/api/v1/dlq/{dlq_name}/replay", json={"messages": [{"partition": 0, "offset": 1}]}, headers=AUTH
    )
    assert one.status_code == 200, one.text
    assert one.json()["replayed"] == 1
    assert one.json()["targets"] == {topic: 1}
    records = await read_all(kafka_bootstrap, topic, expect=1)
    assert [(r.key, json.loads(r.value)) for r in records] == [(b"k1", {"n": 1})]
    assert dict(records[0].headers)["dlq.replayed.from"] == f"{dlq_name}/0/1".encode()

    # replay-all is idempotent: letter 1 was replayed already; a second replay-all sends nothing
    everything = await gw.post(f"/api/v1/dlq/{topic}/replay", json={"all": True}, headers=AUTH)
    assert (everything.json()["replayed"], everything.json()["skipped"]) == (2, 1)
    again = await gw.post(f"/api/v1/dlq/{topic}/replay", json={"all": True}, headers=AUTH)
    assert (again.json()["replayed"], again.json()["skipped"]) == (0, 3)
    records = await read_all(kafka_bootstrap, topic, expect=3)
    assert sorted(r.key for r in records) == [b"k0", b"k1", b"k2"]
    assert {dict(r.headers)["dlq.replay.count"] for r in records} == {b"1"}
    assert {dict(r.headers)["dlq.lineage.origin"] for r in records} == {
        f"{topic}/0/{i}".encode() for i in range(3)
    }

    # the record replayed from letter 1 fails again: its new letter keeps the lineage
    replayed_k1 = next(r for r in records if r.key == b"k1")
    publisher = DeadLetterPublisher(fast_settings(kafka_bootstrap))
    try:
        failed_again = DeadLetter(
            topic=topic,
            partition=replayed_k1.partition,
            offset=replayed_k1.offset,
            key=b"k1",
            value=replayed_k1.value,
            timestamp_ms=replayed_k1.timestamp,
            error=ValueError("still broken"),
            stage="sink",
            dlq_topic=dlq_name,
            lineage=lineage(replayed_k1.headers),
        )
        await publisher.publish([failed_again], group="some-group")
    finally:
        await publisher.close()
    letters = {
        (d["partition"], d["offset"]): d
        for d in (await gw.get(f"/api/v1/dlq/{topic}/messages", headers=AUTH)).json()["dead_letters"]
    }
    new = letters[(0, 3)]
    assert new["lineage"] == {
        "replayed_from": f"{dlq_name}/0/1",
        "replay_count": 1,
        "first_failure": f"{topic}/0/1",
    }
    assert letters[(0, 1)]["replayed"]["outcome"] == "failed_again"
    assert letters[(0, 1)]["replayed"]["letter"] == {"partition": 0, "offset": 3}
    # the same outcome when the later letter is not on the page (a page of one letter, the runbook's paging)
    alone = await gw.get(
        f"/api/v1/dlq/{topic}/messages", params={"partition": 0, "offset": 1, "limit": 1}, headers=AUTH
    )
    assert [d["offset"] for d in alone.json()["dead_letters"]] == [1]
    assert alone.json()["dead_letters"][0]["replayed"]["outcome"] == "failed_again"
    assert alone.json()["dead_letters"][0]["replayed"]["letter"] == {"partition": 0, "offset": 3}
    assert letters[(0, 0)]["replayed"]["outcome"] == "not_dead_lettered"
    assert letters[(0, 0)]["replayed"]["count"] == 1
    assert new["replayed"] is None
    # replay-all now sends only the new letter; asked again explicitly, every letter goes
    assert (await gw.post(f"/api/v1/dlq/{topic}/replay", json={"all": True}, headers=AUTH)).json()[
        "replayed"
    ] == 1
    forced = await gw.post(f"/api/v1/dlq/{topic}/replay", json={"all": True, "again": True}, headers=AUTH)
    assert forced.json()["replayed"] == 4

    missing = await gw.post(
        f"/api/v1/dlq/{topic}/replay", json={"messages": [{"partition": 0, "offset": 99}]}, headers=AUTH
    )
    assert missing.status_code == 404
    assert missing.json()["details"] == [{"partition": 0, "offset": 99}]
    neither = await gw.post(f"/api/v1/dlq/{topic}/replay", json={}, headers=AUTH)
    assert neither.status_code == 422


async def test_upstream_down_is_503_naming_it(gw: httpx.AsyncClient) -> None:
    """This gateway's upstream URLs point at a port nothing listens on."""
    response = await gw.get("/api/kafka/issues", params={"limit": 10, "offset": 0})
    assert response.status_code == 503
    assert response.json()["service"] == "issue-ingestor"
    assert "issue-ingestor" in response.json()["message"]
    status = (await gw.get("/api/v1/services")).json()["services"]
    assert {s["service"]: s["reachable"] for s in status} == dict.fromkeys(
        ["issue-ingestor", "log-sink", "search-indexer", "notifier"], False
    )
    ready = await gw.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["status"] == "degraded"
    assert ready.json()["checks"]["kafka"] == "ok"
    control = await gw.post("/api/v1/services/notifier/pause", headers=AUTH)
    assert control.status_code == 202
    assert control.json()["applied"] is False
    desired = {s["service"]: s["desired"] for s in (await gw.get("/api/v1/services")).json()["services"]}
    assert desired["notifier"]["action"] == "pause"
    metrics = (await gw.get("/metrics")).text
    assert "gateway_http_requests_total" in metrics
    assert "gateway_upstream_errors_total" in metrics
