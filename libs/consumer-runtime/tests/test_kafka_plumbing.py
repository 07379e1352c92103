"""The Kafka plumbing module: DLQ headers round-trip, client factories, the reconnecting helper."""

from __future__ import annotations

import asyncio

import pytest
from consumer_runtime.core import Batch
from consumer_runtime.dlq import DeadLetter, DlqHeaders, decode_headers, replay_headers
from consumer_runtime.fakes import FakeRecord
from consumer_runtime.kafka_clients import Backoff, new_group_consumer, new_reader, retry_until_done
from consumer_runtime.settings import KafkaSettings
from platform_events import TOPICS


def test_dlq_headers_written_are_parsed_back() -> None:
    letter = DeadLetter("t", 2, 41, b"k", b"v", 1234, ValueError("bad ünicode"), "decode", "t.dlq")
    raw = letter.headers("g")
    parsed = DlqHeaders.parse(raw)
    assert (parsed.original_topic, parsed.original_partition, parsed.original_offset) == ("t", 2, 41)
    assert (parsed.original_timestamp_ms, parsed.error_class, parsed.stage) == (1234, "ValueError", "decode")
    assert (parsed.error_message, parsed.group) == ("bad ünicode", "g")
    assert parsed.failed_at_ms is not None
    assert DlqHeaders.parse(decode_headers(raw)) == parsed  # already decoded headers parse the same
    assert parsed.encode() == raw


def test_dlq_headers_missing_or_malformed_are_none() -> None:
    parsed = DlqHeaders.parse([("dlq.original.partition", b"x")])
    assert parsed.original_partition is None
    assert parsed.original_topic is None
    assert DlqHeaders.parse(None).encode() == []
    assert [k for k, _ in replay_headers("t.dlq", 0, 3)] == [
        "dlq.replayed.from",
        "dlq.replayed.at",
        "dlq.replay.count",
    ]


def test_a_replayed_record_that_fails_again_keeps_its_lineage() -> None:
    """Letter t.dlq/0/3 (first failed at t/2/41) replayed; the record fails again (decode): its new letter
    names the letter it was replayed from, the replay count and the first failure; a second replay of that
    letter counts 2 and still names t/2/41."""
    first = DeadLetter("t", 2, 41, b"k", b"{", 1234, ValueError("bad"), "decode", "t.dlq")
    replayed = replay_headers("t.dlq", 0, 3, DlqHeaders.parse(first.headers("g")))
    record = FakeRecord("t", 1, 7, b"k", b"{", 5678, headers=[("trace", b"x"), *replayed])
    batch = Batch.decode([record], {"t": TOPICS["log-events"].renamed("t")})
    assert [f.stage for f in batch.dead] == ["decode"]
    failed = batch.dead[0].record
    letter = DeadLetter(
        "t", 1, 7, b"k", b"{", 5678, batch.dead[0].error, "decode", "t.dlq", lineage=failed.lineage
    )
    again = DlqHeaders.parse(letter.headers("g"))
    assert (again.original_topic, again.original_partition, again.original_offset) == ("t", 1, 7)
    assert (again.replayed_from, again.replay_count, again.origin) == ("t.dlq/0/3", 1, "t/2/41")
    assert "trace" not in decode_headers(letter.headers("g"))  # only the lineage is kept
    second = DlqHeaders.parse(replay_headers("t.dlq", 0, 9, again))
    assert (second.replayed_from, second.replay_count, second.origin) == ("t.dlq/0/9", 2, "t/2/41")


async def test_factories() -> None:
    settings = KafkaSettings(kafka_session_timeout_ms=6000, kafka_heartbeat_interval_ms=1000)
    member = new_group_consumer(settings, "a", group_id="g", max_poll_records=7)
    assert member._group_id == "g"
    assert member._enable_auto_commit is False
    lone = new_reader(settings, fetch_max_wait_ms=50)
    assert lone._group_id is None
    assert lone._enable_auto_commit is False


async def test_retry_until_done_retries_then_returns() -> None:
    calls = []

    async def flaky() -> int:
        calls.append(1)
        if len(calls) < 3:
            raise OSError("down")
        return 7

    assert await retry_until_done(flaky, what="x", backoff=Backoff(0.001, 0.002)) == 7
    assert len(calls) == 3


async def test_retry_until_done_fatal_and_give_up() -> None:
    async def conflict() -> None:
        raise KeyError("no")

    with pytest.raises(KeyError):
        await retry_until_done(conflict, what="x", fatal=(KeyError,))

    async def down() -> None:
        raise OSError("down")

    with pytest.raises(OSError, match="down"):
        await retry_until_done(down, what="x", backoff=Backoff(0.01, 0.01), give_up_after_s=0.03)


async def test_backoff_sleep_is_cut_short_by_stop() -> None:
    stop = asyncio.Event()
    backoff = Backoff(5.0, 5.0, stop=stop)
    delay = backoff.failed()
    assert 2.5 <= delay <= 5.0
    assert backoff.attempt == 1
    stop.set()
    await asyncio.wait_for(backoff.sleep(delay), 1.0)
    backoff.reset()
    assert backoff.attempt == 0
