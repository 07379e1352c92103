"""The service end to end: real local broker → consumer runtime → MySQL, read back through the HTTP API."""

from __future__ import annotations

import json
from typing import Any

import pytest
from consumer_runtime import decode_headers
from consumer_runtime.testing import KafkaNames, produce, read_all, wait_until
from consumer_runtime.topics import ensure_topics
from ingestor_testlib import MysqlDb, RunningService, fetch, issue_json, wipe

pytestmark = pytest.mark.integration

KOREAN = "100톤 프레스 유압 이상 — 작업자 김민수 확인 중 ✅"


@pytest.fixture
async def service(issue_db: MysqlDb, kafka_names: KafkaNames) -> Any:
    settings = issue_db.settings(kafka_names, kafka_bootstrap_servers=_bootstrap(issue_db))
    await ensure_topics(settings, [kafka_names.topic, kafka_names.dlq])
    async with RunningService(settings) as svc:
        await wipe(svc.store)
        yield svc


def _bootstrap(_: MysqlDb) -> str:
    from devservers import ensure

    return ensure(["kafka"]).kafka_bootstrap


async def test_round_trip_through_kafka_and_api(
    service: RunningService, kafka_bootstrap: str, kafka_names: KafkaNames
) -> None:
    events = [
        issue_json("PRESS_001_20250808_001", description=KOREAN, timestamp="2025-08-08T17:05:37.123Z"),
        issue_json("WELD_002_20250808_001", processType="정기점검", modeType="용접기", timestamp=...),
        issue_json(
            "PRESS_001_20250808_001", isSolved=True, description=None, timestamp="2025-08-08T18:00:00Z"
        ),
    ]
    keys = [b"PRESS_001_20250808_001", b"WELD_002_20250808_001", b"PRESS_001_20250808_001"]
    sent = await produce(kafka_bootstrap, kafka_names.topic, events, keys=keys)
    await wait_until(lambda: service.runner.counts.stored == 3, what="3 events stored")

    r = await service.http.get("/issues/PRESS_001_20250808_001")
    assert r.status_code == 200
    body = r.json()
    assert body["description"] == KOREAN
    assert body["processType"] == "장애접수"
    assert body["modeType"] == "프레스"
    assert body["modeLogId"] == "PRESS_001_20250808_001_LOG"
    assert body["isSolved"] is True
    assert body["timestamp"] == "2025-08-08T18:00:00Z"
    assert (body["kafka_partition"], body["kafka_offset"]) == sent[2]

    weld = (await service.http.get("/api/kafka/issues/WELD_002_20250808_001")).json()  # seed path
    assert weld["processType"] == "정기점검"
    assert weld["modeType"] == "용접기"
    assert weld["timestamp"].endswith("Z")  # filled from the Kafka record time

    page = (await service.http.get("/issues", params={"limit": 1, "offset": 0})).json()
    assert page["total"] == 2
    assert len(page["items"]) == 1
    filtered = (await service.http.get("/issues", params={"modeType": "용접기", "isSolved": "false"})).json()
    assert [i["issue"] for i in filtered["items"]] == ["WELD_002_20250808_001"]
    assert (await service.http.get("/issues", params={"modeType": "로봇"})).status_code == 422

    sessions = (await service.http.get("/issues/PRESS_001_20250808_001/sessions")).json()
    assert [(s["seq"], s["status"], s["closed_at"]) for s in sessions] == [
        (1, "closed", "2025-08-08T18:00:00Z")
    ]

    assert (await service.http.delete("/issues/PRESS_001_20250808_001")).json() == {
        "deleted": "PRESS_001_20250808_001",
        "sessions_deleted": 1,
    }
    assert (await service.http.get("/issues/PRESS_001_20250808_001")).status_code == 404
    assert (await service.http.get("/issues/PRESS_001_20250808_001/sessions")).status_code == 404
    assert (await service.http.delete("/issues/PRESS_001_20250808_001")).status_code == 404


async def test_out_of_order_and_duplicates_through_kafka(
    service: RunningService, kafka_bootstrap: str, kafka_names: KafkaNames
) -> None:
    newer = issue_json("OOO", isSolved=True, description="해결됨", timestamp="2025-08-08T12:00:00Z")
    older = issue_json("OOO", isSolved=False, description="접수", timestamp="2025-08-08T09:00:00Z")
    await produce(kafka_bootstrap, kafka_names.topic, [newer, older, newer, older], partition=0)
    await wait_until(lambda: service.runner.counts.stored == 4, what="4 events processed")
    got = (await service.http.get("/issues/OOO")).json()
    assert got["description"] == "해결됨"
    assert got["isSolved"] is True
    rows = await fetch(service.store, "SELECT seq, status FROM ChatbotSession WHERE issue = 'OOO'")
    assert rows == [(1, "closed")]


async def test_invalid_events_go_to_dlq_and_valid_ones_are_stored(
    service: RunningService, kafka_bootstrap: str, kafka_names: KafkaNames
) -> None:
    bad = {
        "not_json": b'{"issue": "X1", "processType": ',
        "not_object": b'["PRESS_001", "\xec\x9e\xa5\xec\x95\xa0\xec\xa0\x91\xec\x88\x98"]',
        "unknown_process": issue_json("X3", processType="수리"),
        "unknown_mode": issue_json("X4", modeType="로봇"),
        "missing_field": issue_json("X5", modeLogId=...),
        "wrong_type": issue_json("X6", isSolved="yes"),
        "number_id": issue_json("X7", issue=12345),
        "bad_timestamp": issue_json("X8", timestamp="어제"),
        "future_timestamp": issue_json("X9", timestamp="2099-01-01T00:00:00Z"),
        "empty": b"",
    }
    values = [issue_json("OK_1"), *bad.values(), issue_json("OK_2", modeType="차량조립설비")]
    await produce(kafka_bootstrap, kafka_names.topic, values, partition=1)
    await wait_until(
        lambda: service.runner.counts.dead_lettered == len(bad) and service.runner.counts.stored == 2,
        what="bad ones dead-lettered, good ones stored",
    )
    assert {i["issue"] for i in (await service.http.get("/issues")).json()["items"]} == {"OK_1", "OK_2"}

    letters = await read_all(kafka_bootstrap, kafka_names.dlq, expect=len(bad))
    letters.sort(key=lambda m: int(decode_headers(m.headers)["dlq.original.offset"]))
    assert [m.value or b"" for m in letters] == list(bad.values())
    reasons = dict(zip(bad, (decode_headers(m.headers)["dlq.error.message"] for m in letters), strict=True))
    assert "JSON" in reasons["not_json"]
    assert "object" in reasons["not_object"]
    assert "processType" in reasons["unknown_process"]
    assert "modeType" in reasons["unknown_mode"]
    assert "modeLogId" in reasons["missing_field"]
    assert "isSolved" in reasons["wrong_type"]
    assert "issue" in reasons["number_id"]
    assert "timestamp" in reasons["bad_timestamp"]
    assert reasons["future_timestamp"].startswith("timestamp: future_timestamp: 2099-01-01T00:00:00Z")

    metrics = (await service.http.get("/metrics")).text
    line = next(
        ln
        for ln in metrics.splitlines()
        if ln.startswith("platform_consumer_dlq_total{")
        and f'group="{kafka_names.group}"' in ln
        and f'topic="{kafka_names.topic}"' in ln
    )
    assert float(line.rsplit(" ", 1)[1]) == len(bad)
    await wait_until(lambda: service.runner.status().lag == 0, what="everything committed")


async def test_ops_endpoints_and_consumer_control(
    service: RunningService, kafka_bootstrap: str, kafka_names: KafkaNames
) -> None:
    assert (await service.http.get("/healthz")).json()["status"] == "ok"
    assert (await service.http.get("/health")).status_code == 200

    async def ready() -> bool:
        return (await service.http.get("/readyz")).status_code == 200

    await wait_until(ready, what="ready")
    body = (await service.http.get("/readyz")).json()
    assert body["checks"]["mysql"] == "ok"

    status = (await service.http.get("/api/kafka/status")).json()
    assert status["group"] == kafka_names.group
    assert status["topics"] == [kafka_names.topic]

    stopped = (await service.http.post("/api/kafka/stop")).json()  # answers at once, stops in background
    assert (stopped["action"], stopped["leads_to"], stopped["desired"]) == ("stop", "stopped", "stopped")

    async def consumer_stopped() -> bool:
        return (await service.http.get("/api/kafka/status")).json()["state"] == "stopped"

    await wait_until(consumer_stopped, what="stopped")
    await produce(kafka_bootstrap, kafka_names.topic, [issue_json("CTRL_1")])
    assert await service.count() == 0  # stopped: nothing consumed
    started = (await service.http.post("/api/kafka/start")).json()
    assert started["leads_to"] == "running"
    await wait_until(service.count, what="consumed after start")
    restarted = (await service.http.post("/api/kafka/restart")).json()
    assert (restarted["action"], restarted["leads_to"]) == ("restart", "running")
    assert (await service.http.post("/api/kafka/explode")).status_code == 422
    assert (await service.http.get("/consumer/status")).json()["group"] == kafka_names.group
    assert "/issues/{issue_id}/sessions" in (await service.http.get("/openapi.json")).json()["paths"]


async def test_kafka_disabled_still_serves_the_api(issue_db: MysqlDb, kafka_names: KafkaNames) -> None:
    async with RunningService(issue_db.settings(kafka_names, kafka_enabled=False)) as svc:
        assert svc.runner.status().state == "disabled"
        assert (await svc.http.get("/issues")).status_code == 200
        assert (await svc.http.get("/readyz")).status_code == 200
        assert (await svc.http.post("/api/kafka/start")).status_code == 409


def _unused(_: Any) -> str:
    return json.dumps(_)
