"""The gateway in front of the four real services (each on its own port, real datastores, real broker):
the seed's curl examples, service status/control, queries, live notifications, offset reset round trip."""

from __future__ import annotations

import asyncio
import json
import shlex
import shutil
import subprocess
import uuid
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from consumer_runtime.testing import read_all, wait_until
from gateway.ops.lag import FRESH_S
from gateway_testlib import AUTH, READER_KEY, USER, USER_KEY, Stack, bearer

pytestmark = pytest.mark.integration

# The curl examples of seed 000, verbatim (only the host:port is replaced by the test gateway's).
SEED_CURLS = [
    'curl -X GET "http://localhost:8000/api/kafka/status"',
    'curl -X GET "http://localhost:8000/api/kafka/issues?limit=10&offset=0"',
    'curl -X GET "http://localhost:8000/api/kafka/issues/PRESS_001_20250806_001"',
    'curl -X GET "http://localhost:8000/health"',
]


def issue(issue_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "issue": issue_id,
        "processType": "장애접수",
        "modeType": "프레스",
        "modeLogId": f"{issue_id}_LOG",
        "description": "100톤 프레스 유압 이상",
        "isSolved": False,
        "timestamp": "2025-08-06T10:30:00",
        **fields,
    }


async def wait_issue(client: httpx.AsyncClient, issue_id: str) -> dict[str, Any]:
    async def found() -> dict[str, Any] | None:
        response = await client.get(f"/api/kafka/issues/{issue_id}")
        return response.json() if response.status_code == 200 else None

    result: dict[str, Any] = await wait_until(found, timeout=30, interval=0.2, what=f"issue {issue_id}")
    return result


async def test_seed_000_curl_examples_work_verbatim(stack: Stack, kafka_bootstrap: str) -> None:
    # The seed's own producer snippet: a plain aiokafka producer with a JSON serializer, no key.
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_bootstrap,
        value_serializer=lambda x: json.dumps(x, ensure_ascii=False).encode("utf-8"),
    )
    await producer.start()
    try:
        seed_event = {
            "issue": "PRESS_001_20250806_001",
            "processType": "장애접수",
            "modeType": "프레스",
            "modeLogId": "PRESS_LOG_20250806_001",
            "timestamp": "2025-08-06T10:30:00",
        }
        await producer.send_and_wait(stack.names.topic("issues"), value=seed_event)
    finally:
        await producer.stop()
    await wait_issue(stack.client, "PRESS_001_20250806_001")
    curl = shutil.which("curl")
    assert curl, "curl is needed for the seed examples"
    outputs = []
    for command in SEED_CURLS:
        argv = shlex.split(command.replace("http://localhost:8000", stack.gateway.url))
        done = await asyncio.to_thread(subprocess.run, argv, capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, (command, done.stderr)
        outputs.append(json.loads(done.stdout))
    status, page, one, health = outputs
    assert status["group"] == stack.names.group("issue-ingestor")
    assert status["state"] == "running"
    assert page["limit"] == 10
    assert page["offset"] == 0
    assert "PRESS_001_20250806_001" in {i["issue"] for i in page["items"]}
    assert one["issue"] == "PRESS_001_20250806_001"
    assert one["processType"] == "장애접수"
    assert health["status"] == "healthy"
    assert set(health["checks"].values()) == {"ok"}


async def test_service_status_and_control_through_the_control_topic(
    stack: Stack, kafka_bootstrap: str
) -> None:
    client = stack.client
    services = {
        s["service"]: s for s in (await client.get("/api/v1/services", headers=AUTH)).json()["services"]
    }
    assert set(services) == {"issue-ingestor", "log-sink", "search-indexer", "notifier"}
    for name, s in services.items():
        assert s["reachable"], name
        assert s["status"]["group"] == stack.names.group(name)
        assert {"state", "assignment", "lag", "last_error", "counts"} <= set(s["status"])

    assert (await client.post("/api/v1/services/log-sink/pause")).status_code == 403  # open: never admin
    paused = await client.post("/api/v1/services/log-sink/pause", headers=AUTH)
    assert paused.status_code == 200, paused.text
    assert paused.json()["applied"] is True
    assert paused.json()["status"]["state"] == "paused"
    control = stack.names.topics["kafka_control_topic"]
    records = await read_all(kafka_bootstrap, control, expect=1)
    last = [json.loads(r.value) for r in records if r.key == b"log-sink"][-1]
    assert last["service"] == "log-sink"
    assert last["action"] == "pause"
    assert {"requested_at", "requested_by"} <= set(last)
    one = (await client.get("/api/v1/services/log-sink", headers=AUTH)).json()
    assert one["status"]["state"] == "paused"
    assert one["desired"]["action"] == "pause"

    resumed = await client.post("/api/v1/services/log-sink/resume", headers=AUTH)
    assert resumed.json()["status"]["state"] == "running"
    assert (await client.post("/api/v1/services/nope/pause", headers=AUTH)).status_code == 422
    assert (await client.post("/api/v1/services/log-sink/explode", headers=AUTH)).status_code == 422


async def test_issue_queries_sessions_and_delete(stack: Stack) -> None:
    client = stack.client
    issue_id = f"WELD_{uuid.uuid4().hex[:8]}"
    sent = await client.post("/api/v1/events/issues", json=issue(issue_id, modeType="용접기"))
    assert sent.status_code == 202, sent.text
    await wait_issue(client, issue_id)
    welders = (await client.get("/api/v1/issues", params={"modeType": "용접기", "limit": 50})).json()
    assert issue_id in {i["issue"] for i in welders["items"]}
    assert all(i["modeType"] == "용접기" for i in welders["items"])
    sessions = (await client.get(f"/api/v1/issues/{issue_id}/sessions")).json()
    assert [s["status"] for s in sessions] == ["open"]
    bad = await client.get("/api/v1/issues", params={"modeType": "로봇"})
    assert bad.status_code == 422

    missing = await client.get("/api/kafka/issues/NO_SUCH_ISSUE")
    assert missing.status_code == 404
    assert missing.json()["service"] == "issue-ingestor"
    assert "NO_SUCH_ISSUE" in missing.json()["message"]
    reader = await client.delete(f"/api/kafka/issues/{issue_id}", headers=bearer(READER_KEY))
    assert reader.status_code == 403  # issues:read only
    deleted = await client.delete(f"/api/kafka/issues/{issue_id}", headers=bearer(USER_KEY))
    assert deleted.status_code == 200
    assert deleted.json()["deleted"] == issue_id
    assert (await client.get(f"/api/v1/issues/{issue_id}")).status_code == 404


async def test_message_search_notifications_and_live_stream(stack: Stack) -> None:
    client = stack.client
    user, mine = USER, bearer(USER_KEY)  # notifications: the token's subject only
    word = f"배포{uuid.uuid4().hex[:6]}"
    created = await client.post(
        "/messages",
        json={
            "channel_id": "ch_dev",
            "author_id": "user_001",
            "content": f"프로젝트 {word} 완료",
            "mentions": [user],
        },
    )
    assert created.status_code == 200, created.text
    message_id = created.json()["message_id"]

    async def searched() -> list[Any]:
        hits = (await client.get("/messages/search", params={"q": word})).json()
        return [h for h in json.dumps(hits, ensure_ascii=False).split('"') if h == message_id]

    await wait_until(searched, timeout=30, interval=0.3, what="message searchable through the gateway")
    assert (await client.get(f"/api/v1/messages/{message_id}")).status_code == 200

    async def listed() -> dict[str, Any] | None:
        page = (await client.get(f"/api/v1/notifications/{user}", headers=mine)).json()
        return page if page["total"] >= 1 else None

    assert (await client.get(f"/api/v1/notifications/{user}")).status_code == 403  # anonymous: not theirs

    page = await wait_until(listed, timeout=30, interval=0.3, what="notification stored")
    assert page["items"][0]["message_id"] == message_id
    assert page["unread"] == 1
    marked = await client.post(f"/api/v1/notifications/{user}/read", json={"all": True}, headers=mine)
    assert marked.status_code == 200
    assert marked.json()["unread"] == 0

    # Live: open the stream through the gateway, then mention the user again.
    received: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    opened = asyncio.Event()

    async def listen() -> None:
        async with (
            httpx.AsyncClient(base_url=stack.gateway.url, timeout=None) as live,
            live.stream("GET", f"/api/v1/notifications/{user}/stream", headers=mine) as response,
        ):
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            opened.set()
            async for line in response.aiter_lines():
                if line.startswith("data:"):
                    await received.put(json.loads(line[5:]))

    task = asyncio.create_task(listen())
    try:
        await asyncio.wait_for(opened.wait(), 10)
        await asyncio.sleep(0.5)
        second = await client.post(
            "/messages",
            json={
                "channel_id": "ch_ops",
                "author_id": "user_003",
                "content": "라이브 알림",
                "mentions": [user],
            },
        )
        event = await asyncio.wait_for(received.get(), 30)
        assert event["message_id"] == second.json()["message_id"]
        assert event["user_id"] == user
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_log_queries(stack: Stack, kafka_bootstrap: str) -> None:
    event_id = f"evt_{uuid.uuid4().hex}"
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        body = {
            "event_id": event_id,
            "timestamp": "2026-11-23T10:00:00Z",
            "service": "checkout",
            "status": 500,
        }
        await producer.send_and_wait(
            stack.names.topic("logs"), json.dumps(body).encode(), key=event_id.encode()
        )
    finally:
        await producer.stop()

    async def stored() -> bool:
        return (await stack.client.get(f"/api/v1/logs/{event_id}")).status_code == 200

    await wait_until(stored, timeout=30, interval=0.3, what="wide event stored")
    page = (
        await stack.client.get("/api/v1/logs", params={"service": "checkout", "field": "status:500"})
    ).json()
    assert event_id in {i["event_id"] for i in page["items"]}
    assert (await stack.client.get("/api/v1/logs", params={"since": "yesterday-ish"})).status_code == 422


async def test_offset_reset_round_trip_reprocesses_idempotently(stack: Stack) -> None:
    """stop → reset to earliest → start: every event is consumed again, and nothing is stored twice."""
    client = stack.client
    ids = [f"RT_{uuid.uuid4().hex[:8]}" for _ in range(5)]
    for i in ids:
        assert (await client.post("/api/v1/events/issues", json=issue(i))).status_code == 202
    for i in ids:
        await wait_issue(client, i)

    async def rows() -> dict[str, Any]:
        # these issues and their sessions, exactly as stored. (Not the table's total: replaying the whole
        # topic also brings back issues another test deleted through the API - the log still holds them.)
        return {
            i: (
                (await client.get(f"/api/kafka/issues/{i}")).json(),
                (await client.get(f"/api/v1/issues/{i}/sessions")).json(),
            )
            for i in ids
        }

    before = await rows()
    group = stack.names.group("issue-ingestor")
    topic = stack.names.topic("issues")

    stopped = await client.post("/api/kafka/stop", headers=AUTH)
    assert stopped.status_code == 200
    assert stopped.json()["status"]["leads_to"] == "stopped"  # answered at once; stops in the background

    async def consumer_stopped() -> bool:
        return (await client.get("/api/kafka/status")).json()["state"] == "stopped"

    await wait_until(consumer_stopped, timeout=30, what="consumer stopped")
    body = {"topic": topic, "to": "earliest"}
    reset = await client.post(f"/api/v1/consumer-groups/{group}/offsets/reset", json=body, headers=AUTH)
    if reset.status_code == 409:  # the local broker may still list the member that just left (docs)
        reset = await client.post(
            f"/api/v1/consumer-groups/{group}/offsets/reset", json={**body, "evict_stale": True}, headers=AUTH
        )
    assert reset.status_code == 200, reset.text
    offsets = (
        await client.get(f"/api/v1/consumer-groups/{group}/offsets", params={"topic": topic}, headers=AUTH)
    ).json()
    assert all(o["committed"] == 0 for o in offsets["offsets"])
    end_total = sum(o["end_offset"] for o in offsets["offsets"])
    assert offsets["total_lag"] == end_total >= len(ids)

    started = await client.post("/api/kafka/start", headers=AUTH)
    assert started.status_code == 200
    consumed_from = started.json()["status"]["counts"]["consumed"]

    async def reprocessed() -> bool:
        status = (await client.get("/api/kafka/status")).json()
        return status["counts"]["consumed"] - consumed_from >= end_total and status["lag"] == 0

    await wait_until(reprocessed, timeout=60, interval=0.3, what="topic consumed again from the beginning")
    assert await rows() == before  # re-processing stored nothing twice and changed nothing


async def test_a_stopped_consumer_has_its_lag_everywhere(stack: Stack) -> None:
    """Stop the issue-ingestor and produce 9 events: /api/v1/services, the console overview and the
    gateway's platform_consumer_group_lag all say 9 more (from the group's commits against the log end);
    the stopped replica leaves no stale platform_consumer_lag of its own."""
    client = stack.client
    group = stack.names.group("issue-ingestor")

    async def lag() -> int:
        services = (await client.get("/api/v1/services", headers=AUTH)).json()["services"]
        one = next(s for s in services if s["service"] == "issue-ingestor")
        assert one["group_lag"]["group"] == group
        return int(one["lag"])

    stopped = await client.post("/api/v1/services/issue-ingestor/stop", headers=AUTH)
    assert stopped.status_code == 200, stopped.text
    try:

        async def is_stopped() -> bool:
            status = (await client.get("/api/v1/services/issue-ingestor", headers=AUTH)).json()["status"]
            return bool(status["state"] == "stopped")

        await wait_until(is_stopped, timeout=30, interval=0.3, what="ingestor stopped")
        await asyncio.sleep(FRESH_S + 0.2)  # a measurement from before the stop has expired
        before = await lag()
        for n in range(9):
            published = await client.post(
                "/api/v1/events/issues", json=issue(f"LAG_{uuid.uuid4().hex[:6]}_{n}")
            )
            assert published.status_code == 202, published.text
        seen: list[int] = []

        async def nine_more() -> bool:
            seen.append(await lag())
            return seen[-1] == before + 9

        try:
            await wait_until(nine_more, timeout=15, interval=0.3, what="lag 9 more")
        except AssertionError:
            raise AssertionError(f"lag {before} + 9 never seen: {seen[-5:]}") from None

        login = await client.post(
            "/console/login",
            data={"token": AUTH["Authorization"].split()[1]},
            headers={"origin": client.base_url.__str__().rstrip("/")},
        )
        assert login.status_code == 303, login.text
        overview = (await client.get("/console/partials/services")).text
        cell = overview.split('data-testid="lag-issue-ingestor"', 1)[1].split("</td>", 1)[0]
        assert cell.rsplit(">", 1)[1].strip() == str(before + 9)

        metrics = (await client.get("/metrics")).text
        series = [
            float(line.rsplit(" ", 1)[1])
            for line in metrics.splitlines()
            if line.startswith(f'platform_consumer_group_lag{{group="{group}"')
        ]
        assert sum(series) == before + 9
        own = (await httpx.AsyncClient().get(f"{stack.services['issue-ingestor'].url}/metrics")).text
        assert f'platform_consumer_lag{{group="{group}"' not in own  # no stale figure from the replica
    finally:
        started = await client.post("/api/v1/services/issue-ingestor/start", headers=AUTH)
        assert started.status_code == 200, started.text
    await wait_until(lambda: _equals(lag(), 0), timeout=60, interval=0.5, what="lag back to 0")


async def _equals(value: Any, expected: int) -> bool:
    return bool(await value == expected)


async def test_a_group_without_commits_and_a_finished_rebuild_group_say_so(stack: Stack) -> None:
    """A service's group the broker does not know yet is "no commits yet" (its topics listed), not 404;
    a rebuild's group with no members is marked finished; an unknown group is still 404."""
    client = stack.client
    lags = stack.gateway.app.state.lags
    fresh = stack.names.group("never-committed")
    topic = stack.names.topic("issues")
    lags.groups["issue-ingestor-2"] = (fresh, [topic])  # a service whose group has not committed yet
    try:
        detail = await client.get(f"/api/v1/consumer-groups/{fresh}", headers=AUTH)
        assert detail.status_code == 200, detail.text
        assert detail.json()["note"] == "no commits yet"
        assert {o["topic"] for o in detail.json()["offsets"]} == {topic}
        assert all(o["committed"] is None for o in detail.json()["offsets"])
        offsets = await client.get(f"/api/v1/consumer-groups/{fresh}/offsets", headers=AUTH)
        assert (offsets.status_code, offsets.json()["note"]) == (200, "no commits yet")
    finally:
        del lags.groups["issue-ingestor-2"]
    assert (
        await client.get(f"/api/v1/consumer-groups/{stack.names.group('nobody')}", headers=AUTH)
    ).status_code == 404

    rebuild = f"{stack.names.group('search-indexer')}-rebuild-0123abcd"
    await stack.gateway.app.state.kafka.commit_as_admin(rebuild, await _latest(stack, topic))
    groups = {
        g["group_id"]: g for g in (await client.get("/api/v1/consumer-groups", headers=AUTH)).json()["groups"]
    }
    assert groups[rebuild]["note"].startswith("finished rebuild")
    assert (
        (await client.get(f"/api/v1/consumer-groups/{rebuild}", headers=AUTH))
        .json()["note"]
        .startswith("finished rebuild")
    )


async def _latest(stack: Stack, topic: str) -> dict[Any, int]:
    from aiokafka import TopicPartition

    kafka = stack.gateway.app.state.kafka
    tps = [TopicPartition(topic, p["partition"]) for p in await kafka.partitions(topic)]
    return dict(await kafka.end_offsets(tps))
