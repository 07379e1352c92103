"""Pure logic: the merge rule (order- and redelivery-independent), document round trip, bulk outcomes,
search bodies, replay progress. No servers."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka import TopicPartition
from consumer_runtime import Record
from hypothesis import given, settings
from hypothesis import strategies as st
from search_indexer import handlers as h
from search_indexer.rebuild import replay_progress
from search_indexer_testlib import created, deleted, updated


def state_of(*events: Any) -> h.MessageState:
    state: h.MessageState | None = None
    for e in events:
        state = h.merge(state, h.from_event(e))
    assert state is not None
    return state


def rec(event: Any, offset: int = 0) -> Record[Any]:
    return Record("t", 0, offset, None, event, 0, b"")


def test_update_wins_over_older_create_in_any_order() -> None:
    c = created("m1", "old text", ts=1, author="alice", mentions=["bob"])
    u = updated("m1", "new text", ts=2)
    for order in ((c, u), (u, c)):
        s = state_of(*order)
        assert s.content
        assert s.content.value == "new text"
        assert s.author
        assert s.author.value == "alice"
        assert s.mentions
        assert s.mentions.value == ("bob",)
        assert (s.created_at, s.updated_at, s.version) == (c.timestamp, u.timestamp, u.timestamp)


def test_stale_update_does_not_overwrite() -> None:
    s = state_of(created("m1", "a", ts=1), updated("m1", "newest", ts=5), updated("m1", "stale", ts=3))
    assert s.content
    assert s.content.value == "newest"
    assert s.version == created("x", "", ts=5).timestamp


def test_same_millisecond_update_beats_create() -> None:
    s = state_of(updated("m1", "edited", ts=1), created("m1", "original", ts=1))
    assert s.content
    assert s.content.value == "edited"


def test_delete_wins_over_later_arriving_older_update_and_strips_text() -> None:
    s = state_of(created("m1", "secret", ts=1), deleted("m1", ts=10), updated("m1", "late edit", ts=5))
    assert s.deleted
    assert s.content is None
    assert s.author is None
    # even an update *newer* than the delete does not resurrect it: delete is final
    s2 = h.merge(s, h.from_event(updated("m1", "zombie", ts=20)))
    assert s2.deleted
    assert s2.content is None


def test_redelivery_changes_nothing() -> None:
    events = [created("m1", "a", ts=1), updated("m1", "b", ts=2)]
    once = state_of(*events)
    assert state_of(*events, *events, events[0]) == once
    assert h.merge(once, h.from_event(events[0])) == once


_kinds = st.lists(
    st.tuples(st.sampled_from(["c", "u", "d"]), st.integers(0, 5), st.sampled_from(["x", "y", "z"])),
    min_size=1,
    max_size=8,
)


def _event(kind: str, ts: int, text: str, i: int) -> Any:
    if kind == "c":
        return created("m", f"c-{text}", ts=ts, author=f"a-{text}", event_id=f"e{i}")
    if kind == "u":
        return updated("m", f"u-{text}", ts=ts, author=text if i % 2 else None, event_id=f"e{i}")
    return deleted("m", ts=ts, event_id=f"e{i}")


@settings(max_examples=200, deadline=None)
@given(_kinds, st.randoms(use_true_random=False))
def test_merge_is_order_and_duplicate_independent(
    spec: list[tuple[str, int, str]], rnd: random.Random
) -> None:
    events = [_event(k, ts, text, i) for i, (k, ts, text) in enumerate(spec)]
    expected = state_of(*events)
    shuffled = events + rnd.sample(events, k=min(2, len(events)))
    rnd.shuffle(shuffled)
    assert state_of(*shuffled) == expected
    # stored and read back, then merged with the rest: the same document
    half = len(shuffled) // 2
    stored = h.from_source("m", h.to_source(state_of(*shuffled[:half]))) if half else None
    rest = shuffled[half:]
    got = stored
    for e in rest:
        got = h.merge(got, h.from_event(e))
    assert got == expected


def test_source_round_trip_and_public_shape() -> None:
    s = state_of(created("m1", "프로젝트 배포 완료", ts=1, mentions=["u2"]), updated("m1", "수정됨", ts=2))
    src = h.to_source(s)
    assert h.from_source("m1", src) == s
    assert src["created_at"] == "2023-11-14T22:13:20.001Z"
    assert src["version"] == s.version
    msg = h.to_message(src)
    assert msg["content"] == "수정됨"
    assert msg["channel_id"] == "ch_dev"
    assert msg["author_id"] == "user_001"
    assert h.is_visible(src)
    tomb = h.to_source(state_of(deleted("m1", ts=3)))
    assert tomb["deleted"] is True
    assert tomb["content"] is None
    assert not h.is_visible(tomb)


def test_source_without_clock_loses_to_any_event() -> None:
    legacy = h.from_source("m1", {"content": "legacy", "channel": "c", "version": 0})
    merged = h.merge(legacy, h.from_event(updated("m1", "fresh", ts=1, channel="c")))
    assert merged.content
    assert merged.content.value == "fresh"


def test_fold_groups_per_message_and_keeps_records() -> None:
    recs = [rec(created("a", "x", ts=1), 0), rec(created("b", "y", ts=1), 1), rec(updated("a", "z", ts=2), 2)]
    folded = h.fold(recs)
    assert set(folded) == {"a", "b"}
    assert [r.offset for r in folded["a"].records] == [0, 2]
    assert folded["a"].state.content
    assert folded["a"].state.content.value == "z"


@pytest.mark.parametrize(
    ("status", "error", "outcome"),
    [
        (201, None, "ok"),
        (200, None, "ok"),
        (409, {"type": "version_conflict_engine_exception"}, "conflict"),
        (429, {"type": "es_rejected_execution_exception"}, "retry"),
        (503, {"type": "unavailable_shards_exception"}, "retry"),
        (500, {"type": "internal"}, "retry"),
        (404, {"type": "index_not_found_exception"}, "retry"),
        (403, {"type": "cluster_block_exception"}, "retry"),
        (400, {"type": "document_parsing_exception"}, "permanent"),
        (400, {"type": "strict_dynamic_mapping_exception"}, "permanent"),
        (413, None, "permanent"),
    ],
)
def test_classify_item(status: int, error: dict[str, Any] | None, outcome: str) -> None:
    assert h.classify_item(status, error) == outcome


def test_describe_error_includes_cause() -> None:
    text = h.describe_error(
        {
            "type": "document_parsing_exception",
            "reason": "bad",
            "caused_by": {"type": "illegal_argument_exception", "reason": "For input"},
        }
    )
    assert text == "document_parsing_exception: bad (caused by illegal_argument_exception: For input)"


def test_build_search_query_filters_sort_paging_highlight() -> None:
    p = h.SearchParams(
        q=" 배포 ",
        channel="ch",
        author="u",
        since=datetime(2025, 1, 1, tzinfo=UTC),
        sort="newest",
        offset=20,
        limit=10,
    )
    body = h.build_search(p)
    q = body["query"]["bool"]
    should = q["must"][0]["bool"]["should"]
    assert should[0]["match"]["content"]["query"] == "배포"
    assert "content.ngram" in should[1]["match"]
    assert {"term": {"channel": "ch"}} in q["filter"]
    assert {"term": {"author": "u"}} in q["filter"]
    assert {"range": {"created_at": {"gte": "2025-01-01T00:00:00Z"}}} in q["filter"]
    assert q["must_not"] == [{"term": {"deleted": True}}]
    assert body["sort"][0] == {"created_at": {"order": "desc", "missing": "_last"}}
    assert (body["from"], body["size"]) == (20, 10)
    assert "highlight" in body


def test_build_search_without_query_browses_and_rejects_deep_paging() -> None:
    body = h.build_search(h.SearchParams())
    assert body["query"]["bool"]["must"] == [{"match_all": {}}]
    assert "highlight" not in body
    assert body["sort"][0] == {"_score": {"order": "desc"}}
    with pytest.raises(ValueError, match="offset \\+ limit"):
        h.build_search(h.SearchParams(offset=9_995, limit=10))


def test_search_hits_prefers_content_highlight() -> None:
    resp = {
        "hits": {
            "total": {"value": 2},
            "hits": [
                {
                    "_id": "a",
                    "_score": 1.5,
                    "_source": {"message_id": "a", "content": "x"},
                    "highlight": {"content.ngram": ["<em>x</em>"]},
                },
                {
                    "_id": "b",
                    "_score": 1.0,
                    "_source": {"message_id": "b", "content": "y"},
                    "highlight": {"content": ["<em>y</em>"], "content.ngram": ["other"]},
                },
            ],
        }
    }
    total, hits = h.search_hits(resp)
    assert total == 2
    assert hits[0]["highlights"] == ["<em>x</em>"]
    assert hits[1]["highlights"] == ["<em>y</em>"]


def test_replay_progress() -> None:
    a, b, c = TopicPartition("t", 0), TopicPartition("t", 1), TopicPartition("u", 0)
    target = {a: (0, 10), b: (0, 0), c: (5, 8)}
    assert replay_progress(target, {}) == (0, 13, False)
    assert replay_progress(target, {a: 4, c: 8}) == (7, 13, False)
    assert replay_progress(target, {a: 12, c: 8}) == (13, 13, True)


def test_a_bad_elasticsearch_url_ends_the_start_naming_the_variable() -> None:
    """``python -m search_indexer`` with ELASTICSEARCH_URL=foo: exit 1, one line naming it, no traceback."""
    env = {**os.environ, "ELASTICSEARCH_URL": "foo", "KAFKA_ENABLED": "false", "HTTP_PORT": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "search_indexer"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "ELASTICSEARCH_URL: Value error, 'foo' is not a URL" in done.stderr
