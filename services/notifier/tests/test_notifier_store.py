"""What the notifier relies on from the MongoDB-protocol server, checked against it (see INFRA.md)."""

from __future__ import annotations

import pytest
from notifier.store import NotificationStore

from .conftest import uid

pytestmark = pytest.mark.integration


def doc(_id: str, event_id: str, user: str, created_at: int = 1) -> dict[str, object]:
    return {"_id": _id, "event_id": event_id, "user_id": user, "created_at": created_at, "read": False}


async def test_unique_keys_report_duplicates_by_position(store: NotificationStore) -> None:
    user, evt = uid("u"), uid("evt")
    first = await store.insert_notifications([doc(f"{evt}-a", evt, user), doc(f"{evt}-b", f"{evt}2", user)])
    assert first.inserted == [0, 1]
    assert first.duplicates == []
    assert first.failures == {}
    second = await store.insert_notifications(
        [
            doc(f"{evt}-a", "other", "other"),  # same _id
            doc(f"{evt}-c", evt, user),  # same (event_id, user_id), other _id: the compound unique index
            doc(f"{evt}-d", f"{evt}3", user),
        ]
    )
    assert second.duplicates == [0, 1]
    assert second.inserted == [2]
    assert await store.count(user, unread_only=False) == 3


async def test_checkpoints_only_move_forward(store: NotificationStore) -> None:
    topic = uid("topic")
    await store.advance_checkpoints({(topic, 0): 5, (topic, 2): 7})
    await store.advance_checkpoints({(topic, 0): 3, (topic, 1): 1})
    assert await store.get_checkpoints([topic, "missing"]) == {(topic, 0): 5, (topic, 1): 1, (topic, 2): 7}
    await store.advance_checkpoints({(topic, 0): 9})
    assert (await store.get_checkpoints([topic]))[(topic, 0)] == 9


async def test_sent_positions_are_recorded_per_source_partition(store: NotificationStore) -> None:
    """A read-back for several source partitions starts, per sent partition, at the lowest position recorded
    with their checkpoints; a sent partition one of them has no position for is read from its beginning."""
    topic = uid("topic")
    await store.advance_checkpoints({(topic, 0): 5}, {0: 10, 1: 4})
    await store.advance_checkpoints({(topic, 1): 8}, {0: 12})
    await store.advance_checkpoints({(topic, 0): 6}, {0: 11, 1: 6})
    assert await store.sent_positions([(topic, 0)]) == {0: 11, 1: 6}
    assert await store.sent_positions([(topic, 0), (topic, 1)]) == {0: 11}
    assert await store.sent_positions([(topic, 2)]) == {}
    assert await store.get_checkpoints([topic]) == {(topic, 0): 6, (topic, 1): 8}


async def test_since_pages_by_seq_then_id(store: NotificationStore) -> None:
    user = uid("u")
    docs = [{**doc(f"{user}-{i}", uid("e"), user), "seq": 100 + i // 3} for i in range(7)]
    await store.insert_notifications(docs)
    expected = [d["_id"] for d in sorted(docs, key=lambda d: (d["seq"], d["_id"]))]
    page1 = await store.since(user, seq_from=0, limit=4)
    last = page1[-1]
    page2 = await store.since(user, seq_from=0, after=(last["seq"], last["_id"]), limit=4)
    assert [d["_id"] for d in page1 + page2] == expected
    later = await store.since(user, seq_from=101, limit=10)
    assert [d["_id"] for d in later] == expected[3:]
    newest = await store.page(user, unread_only=False, limit=2, offset=0)
    assert [d["_id"] for d in newest] == expected[::-1][:2]


async def test_after_cursor_pages_by_position(store: NotificationStore) -> None:
    """The stream resume query: strictly after the cursor in each partition, all of a partition it lacks."""
    user, topic = uid("u"), uid("topic")

    def at(partition: int, offset: int, *, t: str = topic, u: str = user) -> dict[str, object]:
        return {
            **doc(f"{u}-{t}-{partition}-{offset}", uid("e"), u),
            "source": {"topic": t, "partition": partition, "offset": offset},
        }

    docs = [at(p, o) for o in (11, 3, 7) for p in (2, 0, 1)]
    docs += [at(0, 50, t=uid("other-topic")), at(0, 50, u=uid("other-user")), doc(uid("n"), uid("e"), user)]
    await store.insert_notifications(docs)

    def positions(found: list[dict[str, object]]) -> list[tuple[object, object]]:
        return [(d["source"]["partition"], d["source"]["offset"]) for d in found]  # type: ignore[index]

    everything = await store.after_cursor(user, topic, {}, limit=100)
    assert positions(everything) == [(p, o) for p in (0, 1, 2) for o in (3, 7, 11)]
    after = await store.after_cursor(user, topic, {0: 7, 1: 2}, limit=100)
    assert positions(after) == [(0, 11), (1, 3), (1, 7), (1, 11), (2, 3), (2, 7), (2, 11)]
    page = await store.after_cursor(user, topic, {0: 7, 1: 2}, limit=2)
    assert positions(page) == [(0, 11), (1, 3)]
    nxt = await store.after_cursor(user, topic, {0: 11, 1: 3}, limit=2)  # the next page: the cursor moved
    assert positions(nxt) == [(1, 7), (1, 11)]
    assert await store.after_cursor(user, topic, {0: 11, 1: 11, 2: 11}, limit=10) == []

    keys = [info["key"] for info in (await store.notifications.index_information()).values()]
    assert [("user_id", 1), ("source.topic", 1), ("source.partition", 1), ("source.offset", 1)] in keys


async def test_muted_channels_lookup(store: NotificationStore) -> None:
    u1, u2 = uid("u"), uid("u")
    assert await store.mute(u1, "ch1") == ["ch1"]
    assert await store.mute(u1, "ch1") == ["ch1"]
    await store.mute(u1, "ch2")
    await store.set_muted(u2, [])
    assert await store.muted_channels([u1, u2, uid("nobody")]) == {u1: frozenset({"ch1", "ch2"})}
    assert await store.unmute(u1, "ch1") == ["ch2"]
