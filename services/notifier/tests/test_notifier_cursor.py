"""The stream cursor (pure): encode/decode, compare, advance, legacy resume ids; the position headers."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from notifier.cursor import (
    MAX_CURSOR_CHARS,
    MAX_OFFSET,
    MAX_PARTITION,
    LegacyResume,
    StreamCursor,
    b36,
    parse_resume,
)
from notifier.handlers import Source, publish_order, source_from_headers, source_headers, source_of

partitions = st.integers(min_value=0, max_value=MAX_PARTITION)
offsets = st.integers(min_value=0, max_value=MAX_OFFSET)
vectors = st.dictionaries(partitions, offsets, max_size=40)
small_vectors = st.dictionaries(st.integers(0, 5), st.integers(0, 50), max_size=6)


def test_examples() -> None:
    assert StreamCursor().encode() == "c1"
    assert StreamCursor({2: 0, 0: 100, 1: 36}).encode() == "c1.0-2s.1-10.2-0"
    assert StreamCursor.decode("c1.0-2s.1-10.2-0") == StreamCursor({0: 100, 1: 36, 2: 0})
    assert StreamCursor.decode("c1") == StreamCursor()
    # three partitions with offsets below 2**31 take 29 characters
    assert len(StreamCursor({p: 2**31 - 1 for p in range(3)}).encode()) == 29


@pytest.mark.parametrize(
    "text",
    [
        "",
        "c",
        "c2.0-1",
        "c1.",
        "c1x",
        "c1.0-1.",
        "c1.0-",
        "c1.-1",
        "c1.0-01",  # leading zero: not canonical
        "c1.00-1",
        "c1.0-A",  # upper case
        "c1.0-1_0",  # int() would take the underscore
        "c1.0-+1",
        "c1.0--1",
        "c1.1-1.0-1",  # partitions not ascending
        "c1.1-1.1-2",  # a partition twice
        "c1.0-1 ",
        "c1.0-zzzzzzzzzzzzzz",  # 14 digits
        f"c1.0-{b36(MAX_OFFSET + 1)}",
        f"c1.{b36(MAX_PARTITION + 1)}-0",
        "ntf_0123abcd",
        "1234",
    ],
)
def test_decode_rejects_anything_but_a_canonical_cursor(text: str) -> None:
    assert StreamCursor.decode(text) is None


@given(vectors)
def test_decode_inverts_encode(positions: dict[int, int]) -> None:
    cursor = StreamCursor(positions)
    text = cursor.encode()
    assert StreamCursor.decode(text) == cursor
    assert StreamCursor.decode(text).as_dict() == positions  # type: ignore[union-attr]
    assert re.fullmatch(r"c1(\.[0-9a-z]+-[0-9a-z]+)*", text)  # header-safe: no spaces, CR, LF
    if len(positions) <= 64:
        assert len(text) <= MAX_CURSOR_CHARS


@given(st.text(alphabet="c1.-0123456789abcdefzA_+ ", max_size=40))
def test_decode_accepts_only_what_encode_produces(text: str) -> None:
    cursor = StreamCursor.decode(text)
    assert cursor is None or cursor.encode() == text


@given(st.integers(0, MAX_OFFSET))
def test_b36_round_trips(value: int) -> None:
    assert int(b36(value), 36) == value


@given(small_vectors, st.integers(0, 5), st.integers(0, 50))
def test_is_after_means_a_greater_offset_in_its_partition(
    positions: dict[int, int], partition: int, offset: int
) -> None:
    cursor = StreamCursor(positions)
    expected = partition not in positions or offset > positions[partition]
    assert cursor.is_after(partition, offset) is expected


@given(small_vectors, st.lists(st.tuples(st.integers(0, 5), st.integers(0, 50)), max_size=30))
def test_advance_is_monotonic_and_moves_only_forward(
    positions: dict[int, int], moves: list[tuple[int, int]]
) -> None:
    cursor = StreamCursor(positions)
    for partition, offset in moves:
        before = cursor.copy()
        was_after = cursor.is_after(partition, offset)
        assert cursor.advance(partition, offset) is was_after
        assert cursor.covers(before)  # never moves back
        assert not cursor.is_after(partition, offset)  # the position is now covered
        assert cursor == before or was_after
    # the result is the per-partition maximum of the start and every move
    expected = dict(positions)
    for partition, offset in moves:
        expected[partition] = max(offset, expected.get(partition, -1))
    assert cursor.as_dict() == expected
    assert StreamCursor.decode(cursor.encode()) == cursor


@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 30)), unique=True, max_size=40), st.randoms())
def test_delivering_in_any_interleaving_of_partition_orders_is_exactly_once(
    positions: list[tuple[int, int]], rnd: object
) -> None:
    """The stream's promise, on the cursor alone: notifications arrive per partition in offset order (in any
    interleaving of the partitions) and the client may resume from any id it got. Every position is then
    sent exactly once, whatever the disconnects."""
    import random

    assert isinstance(rnd, random.Random)
    per_partition: dict[int, list[int]] = {}
    for partition, offset in sorted(positions):
        per_partition.setdefault(partition, []).append(offset)
    stream = []  # one interleaving: per-partition order kept
    queues = {p: list(offs) for p, offs in per_partition.items()}
    while queues:
        p = rnd.choice(sorted(queues))
        stream.append((p, queues[p].pop(0)))
        if not queues[p]:
            del queues[p]

    delivered: list[tuple[int, int]] = []
    last_id = StreamCursor().encode()
    while True:  # connect with last_id; the server sends what is after it; the client drops at random
        cursor = StreamCursor.decode(last_id)
        assert cursor is not None
        pending = [pos for pos in stream if cursor.is_after(*pos)]
        if not pending:
            break
        for pos in pending:
            assert cursor.advance(*pos)
            delivered.append(pos)
            last_id = cursor.encode()
            if rnd.random() < 0.3:
                break
    assert sorted(delivered) == sorted(positions)


def test_parse_resume() -> None:
    assert parse_resume(None) is None
    assert parse_resume("") is None
    assert parse_resume("  ") is None
    assert parse_resume("c1.0-5") == StreamCursor({0: 5})
    assert parse_resume("c1") == StreamCursor()
    assert parse_resume("ntf_0123") == LegacyResume(notification_id="ntf_0123")
    assert parse_resume("1718000000000123") == LegacyResume(seq=1718000000000123)  # a bare seq (µs)
    assert parse_resume("c1.0-05") == LegacyResume(notification_id="c1.0-05")  # not a cursor: looked up


@given(st.text(max_size=60))
def test_parse_resume_never_fails(text: str) -> None:
    parse_resume(text)


def test_cursor_rejects_positions_out_of_range() -> None:
    with pytest.raises(ValueError, match="out of range"):
        StreamCursor({-1: 0})
    with pytest.raises(ValueError, match="out of range"):
        StreamCursor({0: MAX_OFFSET + 1})
    assert StreamCursor([(0, 5), (0, 3)]).as_dict() == {0: 5}  # the highest of repeats


# ---------------------------------------------------------------------------------- position headers
@given(st.text(min_size=1, max_size=50), st.integers(0, MAX_PARTITION), st.integers(0, 10**18 - 1))
def test_source_headers_round_trip(topic: str, partition: int, offset: int) -> None:
    source = Source(topic, partition, offset)
    headers = source_headers(source)
    assert headers is not None
    assert source_from_headers([("other", b"x"), *headers]) == source


def test_source_from_headers_ignores_missing_or_bad_values() -> None:
    assert source_headers(None) is None
    assert source_from_headers(None) is None
    assert source_from_headers([]) is None
    good = source_headers(Source("t", 1, 2))
    assert good is not None
    for bad in (b"-1", b"", b"1.5", b"\xff", "٣".encode()):
        headers = [(k, bad if k == "notifier.source.offset" else v) for k, v in good]
        assert source_from_headers(headers) is None, bad
    assert source_from_headers(good[:2]) is None


def test_source_of_and_publish_order() -> None:
    a = {"_id": "a", "source": {"topic": "t", "partition": 1, "offset": 7}}
    b = {"_id": "b", "source": {"topic": "t", "partition": 0, "offset": 9}}
    c = {"_id": "c", "source": {"topic": "t", "partition": 1, "offset": 3}}
    bad = {"_id": "x", "source": {"topic": "t", "partition": True, "offset": 1}}
    none = {"_id": "n"}
    assert source_of(a) == Source("t", 1, 7)
    assert source_of(bad) is None
    assert source_of(none) is None
    assert [d["_id"] for d in publish_order([none, a, bad, b, c])] == ["b", "c", "a", "n", "x"]
