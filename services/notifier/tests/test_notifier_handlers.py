"""Pure logic of the notifier: recipients, previews, documents, publish decisions, the live hub."""

from __future__ import annotations

import asyncio

import pytest
from notifier.handlers import (
    SeenIds,
    Source,
    already_published,
    checkpoint_advances,
    plan,
    preview,
    public,
    public_from_event,
    recipients,
    split_bulk_errors,
    to_event,
)
from notifier.live import RESYNC, LiveHub, LiveItem
from platform_events import MessageCreatedEvent, notification_id_for

SRC = Source("platform.messages.created", 1, 42)


def created(mentions: list[str], *, author: str = "u_author", channel: str = "ch_dev", content: str = "hi"):
    return MessageCreatedEvent.new(
        {
            "message_id": "msg_1",
            "channel_id": channel,
            "author_id": author,
            "content": content,
            "mentions": mentions,
        },
        event_id="evt_1",
        timestamp=1_697_234_567_890,
    )


def test_recipients_dedupe_in_order_and_exclude_author() -> None:
    event = created(["u2", "u3", "u2", "u_author", "u4", "u3"])
    assert recipients(event) == ["u2", "u3", "u4"]


def test_recipients_empty_when_only_self_or_none() -> None:
    assert recipients(created(["u_author", "u_author"])) == []
    assert recipients(created([])) == []


@pytest.mark.parametrize(
    ("content", "limit", "expected"),
    [
        ("프로젝트 배포 완료", 200, "프로젝트 배포 완료"),
        ("a\n b\t\tc", 200, "a b c"),
        ("abcdefghij", 5, "abcd…"),
        ("abcde", 5, "abcde"),
        ("", 5, ""),
    ],
)
def test_preview(content: str, limit: int, expected: str) -> None:
    assert preview(content, limit) == expected
    assert len(preview(content, limit)) <= limit


def test_plan_builds_one_document_per_recipient_with_deterministic_ids() -> None:
    event = created(["u2", "u3", "u2"], content="x" * 300)
    docs, skipped = plan(event, SRC, muted={}, created_at=1000, title="새 멘션", preview_chars=10)
    assert skipped == []
    assert [d["user_id"] for d in docs] == ["u2", "u3"]
    first = docs[0]
    assert first["_id"] == notification_id_for("evt_1", "u2")
    assert first["event_id"] == "evt_1"
    assert first["message_id"] == "msg_1"
    assert first["channel_id"] == "ch_dev"
    assert first["author_id"] == "u_author"
    assert first["title"] == "새 멘션"
    assert first["body"] == "x" * 9 + "…"
    assert first["created_at"] == 1000
    assert first["message_timestamp"] == 1_697_234_567_890
    assert first["read"] is False
    assert first["source"] == {"topic": SRC.topic, "partition": 1, "offset": 42}
    again, _ = plan(event, SRC, muted={}, created_at=2000, title="새 멘션", preview_chars=10)
    assert [d["_id"] for d in again] == [d["_id"] for d in docs]


def test_plan_skips_users_who_muted_the_channel() -> None:
    event = created(["u2", "u3"], channel="ch_noisy")
    muted = {"u2": frozenset({"ch_noisy"}), "u3": frozenset({"ch_other"})}
    docs, skipped = plan(event, SRC, muted=muted, created_at=1, title="t", preview_chars=10)
    assert [d["user_id"] for d in docs] == ["u3"]
    assert skipped == ["u2"]


def test_event_and_public_shapes_agree() -> None:
    docs, _ = plan(created(["u2"]), SRC, muted={}, created_at=5, title="t", preview_chars=50)
    event = to_event(docs[0])
    assert event.user_id == "u2"
    assert event.notification_id == docs[0]["_id"]
    assert event.created_at == 5
    from_doc = public(docs[0])
    from_event = public_from_event(event)
    assert set(from_doc) == set(from_event)
    assert {k: v for k, v in from_doc.items() if k != "message_timestamp"} == {
        k: v for k, v in from_event.items() if k != "message_timestamp"
    }


def test_already_published_follows_the_checkpoint() -> None:
    doc = {"source": {"topic": "t", "partition": 2, "offset": 10}}
    assert not already_published(doc, {})
    assert not already_published(doc, {("t", 2): 9})
    assert already_published(doc, {("t", 2): 10})
    assert already_published(doc, {("t", 2): 11})
    assert not already_published(doc, {("t", 1): 100})
    assert already_published({}, {})  # no source position: never republished


def test_checkpoint_advances_take_the_highest_offset_per_partition() -> None:
    sources = [Source("t", 0, 5), Source("t", 0, 3), Source("t", 1, 7), Source("u", 0, 1)]
    assert checkpoint_advances(sources) == {("t", 0): 5, ("t", 1): 7, ("u", 0): 1}


def test_split_bulk_errors() -> None:
    errors = [
        {"index": 0, "code": 11000, "errmsg": "dup"},
        {"index": 2, "code": 2, "errmsg": "bad"},
        {"index": 9, "code": 11000},  # out of range: ignored
    ]
    assert split_bulk_errors(3, errors) == ({0}, {2: "bad"})


def test_seen_ids_is_bounded() -> None:
    seen = SeenIds(limit=2)
    assert seen.add("a")
    assert not seen.add("a")
    assert seen.add("b")
    assert seen.add("c")
    assert "a" not in seen
    assert "c" in seen


async def test_hub_fans_out_by_user_and_marks_overflow() -> None:
    hub = LiveHub(queue_size=1)
    a1, a2, b = hub.subscribe("a"), hub.subscribe("a"), hub.subscribe("b")
    assert hub.connections == 3
    assert hub.publish(LiveItem({"user_id": "a", "n": 1}, Source("t", 0, 1))) == 2
    assert hub.publish(LiveItem({"user_id": "c", "n": 0})) == 0
    assert not a1.overflowed
    assert hub.publish(LiveItem({"user_id": "a", "n": 2})) == 0
    assert a1.overflowed
    assert a2.overflowed
    assert not b.overflowed
    got = await asyncio.wait_for(a1.queue.get(), 1)
    assert got is not None
    assert got.item["n"] == 1
    assert got.source == Source("t", 0, 1)
    hub.unsubscribe(a1)
    hub.unsubscribe(a1)
    assert hub.connections == 2
    hub.close()
    assert await asyncio.wait_for(b.queue.get(), 1) is None


async def test_hub_resync_wakes_every_stream_for_a_catch_up() -> None:
    hub = LiveHub(queue_size=1)
    a, b = hub.subscribe("a"), hub.subscribe("b")
    hub.publish(LiveItem({"user_id": "b", "n": 1}))  # b's queue is full: the resync cannot be queued
    assert hub.resync() == 2
    assert a.overflowed
    assert b.overflowed
    assert await asyncio.wait_for(a.queue.get(), 1) is RESYNC
    got = await asyncio.wait_for(b.queue.get(), 1)
    assert got is not None  # the full queue wakes b; the flag makes it catch up
    assert got.item["n"] == 1
