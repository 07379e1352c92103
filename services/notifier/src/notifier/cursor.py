"""Stream cursors: how far a live stream has got, as positions of the source message events.

A notification's *position* is where its message event was read: (partition, offset) in the consumed
topic (``platform.messages.created``). Unlike a clock reading, the position is the same whatever replica
stored the notification, and within one partition it is also the order in which notifications are stored
and published (one consumer owns a partition; a batch is stored before it is published, and the next batch
is read only after that). A user's notifications come from several partitions, so a stream's cursor is a
*vector*: partition → the offset of the last notification the stream has sent from that partition (or
the starting point it was given). "Strictly after the cursor" means: in its partition, an offset greater
than the cursor's entry; a partition missing from the cursor has had nothing sent yet, so all of it is after.

Every SSE ``id`` is the cursor after that event, encoded as an opaque text::

    c1.<partition>-<offset>.<partition>-<offset>…   (base 36, lower case, partitions ascending)

e.g. ``c1.0-2s.1-a3.2-0``; ``c1`` alone is the empty cursor. The encoding is canonical: a text decodes
only if encoding the result gives the same text back. Three partitions with offsets below 2.1 billion take
at most 29 characters.

Ids of the earlier stream (a notification id ``ntf_…``, or a bare number read as a ``seq``) are still
accepted as a :class:`LegacyResume` (see api.py for the documented fallback).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Final

PREFIX: Final = "c1"
#: Longest Last-Event-ID / ``after`` accepted (the notifier and the gateway): 64 partitions of big offsets.
MAX_CURSOR_CHARS: Final = 1024
MAX_PARTITION: Final = 2**31 - 1
MAX_OFFSET: Final = 2**63 - 1

_DIGITS: Final = "0123456789abcdefghijklmnopqrstuvwxyz"
_NUMBER: Final = r"(?:0|[1-9a-z][0-9a-z]{0,12})"  # canonical base 36, at most 13 digits
_ENTRY: Final = re.compile(rf"({_NUMBER})-({_NUMBER})")
_LEGACY_SEQ: Final = re.compile(r"[0-9]{1,19}")


def b36(value: int) -> str:
    """``value`` (>= 0) in base 36, lower case, no leading zeros."""
    if value < 0:
        raise ValueError(f"negative: {value}")
    if value == 0:
        return "0"
    out: list[str] = []
    while value:
        value, digit = divmod(value, 36)
        out.append(_DIGITS[digit])
    return "".join(reversed(out))


class StreamCursor:
    """A mutable partition → offset vector (one per stream connection)."""

    __slots__ = ("_positions",)

    def __init__(self, positions: Mapping[int, int] | Iterable[tuple[int, int]] = ()) -> None:
        items = positions.items() if isinstance(positions, Mapping) else positions
        self._positions: dict[int, int] = {}
        for partition, offset in items:
            if not 0 <= partition <= MAX_PARTITION or not 0 <= offset <= MAX_OFFSET:
                raise ValueError(f"position out of range: {partition}:{offset}")
            self._positions[partition] = max(offset, self._positions.get(partition, -1))

    # ------------------------------------------------------------------ compare / move
    def is_after(self, partition: int, offset: int) -> bool:
        """Whether the position (partition, offset) is strictly after this cursor (not sent yet)."""
        return offset > self._positions.get(partition, -1)

    def advance(self, partition: int, offset: int) -> bool:
        """Move the partition's entry to ``offset`` if that is after it; returns whether it moved."""
        if not self.is_after(partition, offset):
            return False
        if not 0 <= partition <= MAX_PARTITION or offset > MAX_OFFSET:
            raise ValueError(f"position out of range: {partition}:{offset}")
        self._positions[partition] = offset
        return True

    def covers(self, other: StreamCursor) -> bool:
        """Whether every position ``other`` reached is reached by this cursor too (partial order)."""
        return all(not self.is_after(p, o) for p, o in other.items())

    def items(self) -> Iterator[tuple[int, int]]:
        return iter(sorted(self._positions.items()))

    def as_dict(self) -> dict[int, int]:
        return dict(self._positions)

    def copy(self) -> StreamCursor:
        return StreamCursor(self._positions)

    def __len__(self) -> int:
        return len(self._positions)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StreamCursor) and self._positions == other._positions

    def __hash__(self) -> int:
        return hash(tuple(self.items()))

    def __repr__(self) -> str:
        return f"StreamCursor({dict(self.items())!r})"

    # ------------------------------------------------------------------ text form (the SSE id)
    def encode(self) -> str:
        return PREFIX + "".join(f".{b36(p)}-{b36(o)}" for p, o in self.items())

    @classmethod
    def decode(cls, text: str) -> StreamCursor | None:
        """The cursor ``text`` encodes, or None if it is not a (canonical) cursor."""
        if len(text) > MAX_CURSOR_CHARS or not text.startswith(PREFIX):
            return None
        rest = text[len(PREFIX) :]
        if not rest:
            return cls()
        if not rest.startswith("."):
            return None
        positions: list[tuple[int, int]] = []
        for part in rest[1:].split("."):
            match = _ENTRY.fullmatch(part)
            if match is None:
                return None
            partition, offset = int(match[1], 36), int(match[2], 36)
            if partition > MAX_PARTITION or offset > MAX_OFFSET:
                return None
            if positions and partition <= positions[-1][0]:  # ascending, each partition once
                return None
            positions.append((partition, offset))
        return cls(positions)


@dataclass(frozen=True, slots=True)
class LegacyResume:
    """A resume id of the earlier stream: a notification id, or a bare number read as its ``seq``."""

    notification_id: str | None = None
    seq: int | None = None


def parse_resume(raw: str | None) -> StreamCursor | LegacyResume | None:
    """What a Last-Event-ID (or ``?after=``) asks for: a cursor, a legacy id, or nothing (a fresh stream)."""
    if raw is None:
        return None
    text = raw.strip()
    if not text:
        return None
    cursor = StreamCursor.decode(text)
    if cursor is not None:
        return cursor
    if _LEGACY_SEQ.fullmatch(text):
        return LegacyResume(seq=int(text))
    return LegacyResume(notification_id=text)
