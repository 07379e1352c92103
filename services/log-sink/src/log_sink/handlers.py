"""Pure functions of the log-sink: events → documents, HTTP query parameters → a MongoDB query, cursors.

No I/O here; the store executes what these build.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from platform_events import format_timestamp, parse_timestamp, to_utc
from wide_logging import to_document

__all__ = [
    "InvalidQuery",
    "LogQuery",
    "build_filter",
    "decode_cursor",
    "encode_cursor",
    "parse_field_filters",
    "to_document",
    "to_public",
]

#: Field paths accepted in ``field=`` filters: dotted names, no operators (``$``), no empty parts.
_FIELD_RE: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*(\.[A-Za-z0-9_\-]+)*$")
_RESERVED: Final = frozenset({"_id", "timestamp"})
SORT: Final = [("timestamp", -1), ("_id", -1)]


class InvalidQuery(ValueError):
    """A query parameter that cannot be used; the message names it."""


@dataclass(frozen=True)
class LogQuery:
    since: datetime | None = None
    until: datetime | None = None
    service: str | None = None
    level: str | None = None
    trace_id: str | None = None
    fields: Mapping[str, list[Any]] = field(default_factory=dict)
    limit: int = 100
    cursor: tuple[datetime, str] | None = None


def parse_time(name: str, value: str | None) -> datetime | None:
    """ISO-8601 (naive = UTC) or epoch milliseconds."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        return parse_timestamp(int(text) if text.isdigit() else text)
    except ValueError as exc:
        raise InvalidQuery(f"{name}: {str(exc).splitlines()[-1].strip()}") from None


def parse_field_filters(raw: Sequence[str]) -> dict[str, list[Any]]:
    """``field=path:value`` → {path: candidates}. The value matches as written *and*, when it is JSON
    (``500``, ``true``, ``null``, ``"x"``), as that JSON scalar: ``status:500`` finds 500 and ``"500"``."""
    out: dict[str, list[Any]] = {}
    for item in raw:
        path, sep, value = item.partition(":")
        path = path.strip()
        if not sep or not path:
            raise InvalidQuery(f"field: expected path:value, got {item!r}")
        if not _FIELD_RE.fullmatch(path) or path in _RESERVED:
            raise InvalidQuery(f"field: {path!r} is not a filterable field path (letters, digits, _ - .)")
        candidates: list[Any] = [value]
        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = value
        scalar = parsed is None or isinstance(parsed, bool | int | float | str)
        if scalar and parsed != value:
            candidates.append(parsed)
        out.setdefault(path, []).extend(candidates)
    return out


def encode_cursor(doc: Mapping[str, Any]) -> str:
    """Opaque cursor after ``doc`` in (timestamp desc, _id desc) order."""
    ts = doc["timestamp"]
    body = json.dumps([format_timestamp(ts) if isinstance(ts, datetime) else str(ts), str(doc["_id"])])
    return base64.urlsafe_b64encode(body.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        ts, event_id = json.loads(base64.urlsafe_b64decode(padded.encode()))
        return parse_timestamp(ts), str(event_id)
    except (ValueError, TypeError, binascii.Error):
        raise InvalidQuery("cursor: not a cursor returned by this API") from None


def build_filter(query: LogQuery) -> dict[str, Any]:
    """The MongoDB filter of ``query`` (sort is always :data:`SORT`)."""
    clauses: list[dict[str, Any]] = []
    span: dict[str, Any] = {}
    if query.since is not None:
        span["$gte"] = to_utc(query.since)
    if query.until is not None:
        span["$lt"] = to_utc(query.until)
    if span:
        clauses.append({"timestamp": span})
    if query.service is not None:
        clauses.append({"service": query.service})
    if query.level is not None:
        clauses.append({"level": query.level})
    if query.trace_id is not None:
        clauses.append({"trace_id": query.trace_id})
    for path, values in query.fields.items():
        unique = list(dict.fromkeys(json.dumps(v) for v in values))
        options = [json.loads(v) for v in unique]
        clauses.append({path: options[0] if len(options) == 1 else {"$in": options}})
    if query.cursor is not None:
        ts, event_id = query.cursor
        clauses.append({"$or": [{"timestamp": {"$lt": ts}}, {"timestamp": ts, "_id": {"$lt": event_id}}]})
    if not clauses:
        return {}
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


def to_public(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A stored document as the API returns it: the event as sent (``timestamp`` ISO-8601 UTC, no ``_id``)."""
    out = {k: v for k, v in doc.items() if k != "_id"}
    ts = out.get("timestamp")
    if isinstance(ts, datetime):
        out["timestamp"] = format_timestamp(ts)
    return out
