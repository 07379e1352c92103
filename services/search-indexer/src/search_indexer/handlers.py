"""Pure logic of the indexer: events → document state, the merge rule, bulk outcomes, search bodies.

Nothing here performs I/O, so all of it is unit-tested without servers.

**The document is a merge of events, not the last event.** Each message document is a join-semilattice
value: merging is commutative, associative and idempotent, so the stored document depends only on the *set*
of events applied, never on their order or on how often one was redelivered:

* ``content``, ``author``, ``channel``, ``mentions``, ``attachments`` are last-writer-wins registers ordered
  by ``(timestamp_ms, rank, event_id)`` (rank: created < updated < deleted), so an older (stale) event never
  overwrites a newer one, and ties are broken the same way everywhere;
* ``created_at`` is the earliest ``message.created`` time, ``updated_at`` the latest ``message.updated`` time,
  ``version`` the latest event time applied;
* a ``message.deleted`` turns the document into a **tombstone** (content and author dropped, ``deleted``
  true) and a tombstone absorbs everything merged into it: a late or redelivered update never resurrects it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Final, Generic, Literal, TypeVar

from consumer_runtime import Record
from platform_events import (
    MessageCreatedEvent,
    MessageDeletedEvent,
    MessageUpdatedEvent,
    datetime_to_ms,
    format_timestamp,
    ms_to_datetime,
    parse_timestamp,
)

T = TypeVar("T")

AnyMessageEvent = MessageCreatedEvent | MessageUpdatedEvent | MessageDeletedEvent

#: Order of event types that carry the same timestamp: an update beats the create, a delete beats both.
RANK: Final[Mapping[str, int]] = {"message.created": 0, "message.updated": 1, "message.deleted": 2}

#: ``(timestamp_ms, rank, event_id)``: a total order over events.
ClockKey = tuple[int, int, str]
_UNKNOWN_KEY: Final[ClockKey] = (-1, -1, "")


@dataclass(frozen=True, slots=True)
class Register(Generic[T]):
    """A last-writer-wins value with the clock key of the event that wrote it."""

    value: T
    key: ClockKey


def _lww(a: Register[T] | None, b: Register[T] | None) -> Register[T] | None:
    if a is None:
        return b
    if b is None:
        return a
    return a if a.key >= b.key else b


def _min(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


def _max(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else max(a, b)


@dataclass(frozen=True, slots=True)
class MessageState:
    """What the index knows about one message (``message_id`` = document id)."""

    message_id: str
    channel: Register[str] | None = None
    author: Register[str] | None = None
    content: Register[str] | None = None
    mentions: Register[tuple[str, ...]] | None = None
    attachments: Register[tuple[Any, ...]] | None = None
    created_at: int | None = None
    updated_at: int | None = None
    deleted_at: int | None = None
    version: int = 0

    @property
    def deleted(self) -> bool:
        return self.deleted_at is not None

    @property
    def has_create(self) -> bool:
        return self.created_at is not None


def from_event(event: AnyMessageEvent) -> MessageState:
    """The state a single event describes."""
    ts = event.timestamp
    key: ClockKey = (ts, RANK[event.event_type], event.event_id)
    p = event.payload
    channel = Register(p.channel_id, key)
    if isinstance(event, MessageCreatedEvent):
        return MessageState(
            message_id=p.message_id,
            channel=channel,
            author=Register(event.payload.author_id, key),
            content=Register(event.payload.content, key),
            mentions=Register(tuple(event.payload.mentions), key),
            attachments=Register(tuple(event.payload.attachments), key),
            created_at=ts,
            version=ts,
        )
    if isinstance(event, MessageUpdatedEvent):
        up = event.payload
        return MessageState(
            message_id=p.message_id,
            channel=channel,
            author=None if up.author_id is None else Register(up.author_id, key),
            content=Register(up.content, key),
            mentions=None if up.mentions is None else Register(tuple(up.mentions), key),
            updated_at=ts,
            version=ts,
        )
    return MessageState(message_id=p.message_id, channel=channel, deleted_at=ts, version=ts)


def merge(a: MessageState | None, b: MessageState) -> MessageState:
    """Join two states of the same message (commutative, associative, idempotent)."""
    if a is None:
        return b
    if a.message_id != b.message_id:
        raise ValueError(f"cannot merge {a.message_id!r} with {b.message_id!r}")
    deleted_at = _min(a.deleted_at, b.deleted_at)
    merged = MessageState(
        message_id=a.message_id,
        channel=_lww(a.channel, b.channel),
        author=_lww(a.author, b.author),
        content=_lww(a.content, b.content),
        mentions=_lww(a.mentions, b.mentions),
        attachments=_lww(a.attachments, b.attachments),
        created_at=_min(a.created_at, b.created_at),
        updated_at=_max(a.updated_at, b.updated_at),
        deleted_at=deleted_at,
        version=max(a.version, b.version),
    )
    if deleted_at is not None:  # a tombstone keeps no message text; only later events can still move it
        merged = replace(
            merged,
            author=None,
            content=None,
            mentions=None,
            attachments=None,
            created_at=None,
            updated_at=None,
        )
    return merged


# ------------------------------------------------------------------------------------------ batch folding
@dataclass
class Folded:
    """All events of one batch for one message, merged, with the records they came from."""

    state: MessageState
    records: list[Record[Any]] = field(default_factory=list)


def fold(records: Iterable[Record[Any]]) -> dict[str, Folded]:
    """Merge a batch's events per message id (one write per document per batch)."""
    out: dict[str, Folded] = {}
    for rec in records:
        state = from_event(rec.value)
        got = out.get(state.message_id)
        if got is None:
            out[state.message_id] = Folded(state, [rec])
        else:
            got.state = merge(got.state, state)
            got.records.append(rec)
    return out


# ------------------------------------------------------------------------------ document (de)serialisation
def _iso(ms: int | None) -> str | None:
    return None if ms is None else format_timestamp(ms_to_datetime(ms))


def _ms(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, int):
        return value
    return datetime_to_ms(parse_timestamp(value))


def to_source(state: MessageState) -> dict[str, Any]:
    """The stored ``_source``: searchable fields plus the ``clock`` (register keys, not indexed)."""
    clock = {
        name: list(reg.key)
        for name, reg in (
            ("channel", state.channel),
            ("author", state.author),
            ("content", state.content),
            ("mentions", state.mentions),
            ("attachments", state.attachments),
        )
        if reg is not None
    }
    return {
        "message_id": state.message_id,
        "channel": state.channel.value if state.channel else None,
        "author": state.author.value if state.author else None,
        "content": state.content.value if state.content else None,
        "mentions": list(state.mentions.value) if state.mentions else [],
        "attachments": list(state.attachments.value) if state.attachments else [],
        "created_at": _iso(state.created_at),
        "updated_at": _iso(state.updated_at),
        "deleted": state.deleted,
        "deleted_at": _iso(state.deleted_at),
        "version": state.version,
        "clock": clock,
    }


def _key(clock: Mapping[str, Any], name: str) -> ClockKey:
    raw = clock.get(name)
    if isinstance(raw, list | tuple) and len(raw) == 3:
        return (int(raw[0]), int(raw[1]), str(raw[2]))
    return _UNKNOWN_KEY  # a document written without clocks: any event wins over it


def from_source(message_id: str, source: Mapping[str, Any]) -> MessageState:
    """Read a stored ``_source`` back into a state (tolerates missing fields)."""
    clock = source.get("clock") or {}
    if not isinstance(clock, Mapping):
        clock = {}

    def reg(name: str, value: Any) -> Register[Any] | None:
        return None if value is None else Register(value, _key(clock, name))

    mentions = source.get("mentions")
    attachments = source.get("attachments")
    has_mentions = "mentions" in clock
    has_attachments = "attachments" in clock
    return MessageState(
        message_id=message_id,
        channel=reg("channel", source.get("channel")),
        author=reg("author", source.get("author")),
        content=reg("content", source.get("content")),
        mentions=reg("mentions", tuple(mentions or ())) if has_mentions else None,
        attachments=reg("attachments", tuple(attachments or ())) if has_attachments else None,
        created_at=_ms(source.get("created_at")),
        updated_at=_ms(source.get("updated_at")),
        deleted_at=_ms(source.get("deleted_at")) if source.get("deleted") else None,
        version=int(source.get("version") or 0),
    )


def to_message(source: Mapping[str, Any]) -> dict[str, Any]:
    """The public shape of a message (API responses): the event's field names (docs/contracts.md)."""
    return {
        "message_id": source.get("message_id"),
        "channel_id": source.get("channel"),
        "author_id": source.get("author"),
        "content": source.get("content"),
        "mentions": source.get("mentions") or [],
        "attachments": source.get("attachments") or [],
        "created_at": source.get("created_at"),
        "updated_at": source.get("updated_at"),
        "version": source.get("version"),
    }


def is_visible(source: Mapping[str, Any]) -> bool:
    """A document is a message (not a tombstone, and some content is known)."""
    return not source.get("deleted") and source.get("content") is not None


# ----------------------------------------------------------------------------------------- index mapping
def index_body(*, shards: int, replicas: int, refresh_interval: str) -> dict[str, Any]:
    """Settings + explicit mapping of a ``messages`` index.

    ``content`` is analysed twice: the built-in ``cjk`` analyzer (CJK bigrams on Elasticsearch) and a
    ``content.ngram`` subfield (2–3-grams) so a Korean word is found inside a longer eojeol
    (``배포`` in ``배포했습니다``) regardless of particles. Unknown fields are refused (``dynamic: strict``).
    """
    return {
        "settings": {
            "number_of_shards": shards,
            "number_of_replicas": replicas,
            "refresh_interval": refresh_interval,
            "analysis": {
                "tokenizer": {
                    "message_ngram": {
                        "type": "ngram",
                        "min_gram": 2,
                        "max_gram": 3,
                        "token_chars": ["letter", "digit"],
                    }
                },
                "analyzer": {
                    "message_ngram": {
                        "type": "custom",
                        "tokenizer": "message_ngram",
                        "filter": ["lowercase"],
                    }
                },
            },
        },
        "mappings": {
            "dynamic": "strict",
            "properties": {
                "message_id": {"type": "keyword"},
                "channel": {"type": "keyword"},
                "author": {"type": "keyword"},
                "content": {
                    "type": "text",
                    "analyzer": "cjk",
                    "fields": {"ngram": {"type": "text", "analyzer": "message_ngram"}},
                },
                "mentions": {"type": "keyword"},
                "attachments": {"type": "object", "enabled": False},
                "created_at": {"type": "date"},
                "updated_at": {"type": "date"},
                "deleted": {"type": "boolean"},
                "deleted_at": {"type": "date"},
                "version": {"type": "long"},
                "clock": {"type": "object", "enabled": False},
            },
        },
    }


# ----------------------------------------------------------------------------------------- bulk outcomes
Outcome = Literal["ok", "conflict", "retry", "permanent"]

#: Item statuses worth retrying: overload (429), timeouts and server-side failures.
_RETRY_STATUSES: Final = frozenset({408, 429})
#: Errors that are the cluster's state, not the document's: retried, never dead-lettered.
_RETRY_TYPES: Final = frozenset(
    {"index_not_found_exception", "cluster_block_exception", "es_rejected_execution_exception"}
)


def classify_item(status: int, error: Mapping[str, Any] | None = None) -> Outcome:
    """Outcome of one bulk item.

    * 2xx → ``ok``; 409 → ``conflict`` (someone wrote the document since we read it: re-read and merge);
    * 429, 408, 5xx, a missing index or a write block → ``retry`` (with backoff; never the record's fault);
    * any other 4xx (e.g. ``document_parsing_exception``) → ``permanent``: the record goes to the DLQ.
    """
    if 200 <= status < 300:
        return "ok"
    if status == 409:
        return "conflict"
    kind = (error or {}).get("type")
    if status in _RETRY_STATUSES or status >= 500 or kind in _RETRY_TYPES:
        return "retry"
    return "permanent"


def describe_error(error: Any) -> str:
    """``type: reason`` of a bulk item error (as sent to the DLQ header)."""
    if isinstance(error, Mapping):
        reason = error.get("reason") or ""
        caused = error.get("caused_by")
        if isinstance(caused, Mapping) and caused.get("reason"):
            reason = f"{reason} (caused by {caused.get('type')}: {caused.get('reason')})"
        return f"{error.get('type', 'error')}: {reason}"
    return str(error)


# ----------------------------------------------------------------------------------------------- search
SortOrder = Literal["relevance", "newest", "oldest"]
MAX_RESULT_WINDOW: Final = 10_000


@dataclass(frozen=True, slots=True)
class SearchParams:
    q: str | None = None
    channel: str | None = None
    author: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    sort: SortOrder = "relevance"
    offset: int = 0
    limit: int = 20
    highlight: bool = True


def build_search(p: SearchParams) -> dict[str, Any]:
    """Body of a ``search`` request: match on content, filters, sort, paging, highlights."""
    if p.offset < 0 or p.limit < 0 or p.offset + p.limit > MAX_RESULT_WINDOW:
        raise ValueError(f"offset + limit must be within 0..{MAX_RESULT_WINDOW}")
    must: list[dict[str, Any]] = []
    q = (p.q or "").strip()
    if q:
        must.append(
            {
                "bool": {
                    "should": [
                        {"match": {"content": {"query": q, "operator": "and", "boost": 2.0}}},
                        {"match": {"content.ngram": {"query": q, "operator": "and"}}},
                    ],
                    "minimum_should_match": 1,
                }
            }
        )
    filters: list[dict[str, Any]] = []
    if p.channel:
        filters.append({"term": {"channel": p.channel}})
    if p.author:
        filters.append({"term": {"author": p.author}})
    if p.since or p.until:
        span: dict[str, Any] = {}
        if p.since:
            span["gte"] = format_timestamp(p.since)
        if p.until:
            span["lte"] = format_timestamp(p.until)
        filters.append({"range": {"created_at": span}})
    query = {
        "bool": {
            "must": must or [{"match_all": {}}],
            "filter": filters,
            "must_not": [{"term": {"deleted": True}}],
        }
    }
    by_time = {"newest": "desc", "oldest": "asc"}.get(p.sort)
    tiebreak = {"message_id": {"order": "asc"}}
    if by_time is None:
        sort: list[Any] = [
            {"_score": {"order": "desc"}},
            {"created_at": {"order": "desc", "missing": "_last"}},
        ]
    else:
        sort = [{"created_at": {"order": by_time, "missing": "_last"}}]
    sort.append(tiebreak)
    body: dict[str, Any] = {
        "query": query,
        "sort": sort,
        "from": p.offset,
        "size": p.limit,
        "track_total_hits": True,
    }
    if p.highlight and q:
        body["highlight"] = {
            "pre_tags": ["<em>"],
            "post_tags": ["</em>"],
            "fields": {
                "content": {"number_of_fragments": 3, "fragment_size": 150},
                "content.ngram": {"number_of_fragments": 3, "fragment_size": 150},
            },
        }
    return body


def search_hits(response: Mapping[str, Any]) -> tuple[int, list[dict[str, Any]]]:
    """(total, messages with ``score`` and ``highlights``) from a search response."""
    hits = response.get("hits") or {}
    total_raw = hits.get("total")
    total = int(total_raw.get("value", 0)) if isinstance(total_raw, Mapping) else int(total_raw or 0)
    out: list[dict[str, Any]] = []
    for hit in hits.get("hits") or []:
        message = to_message(hit.get("_source") or {})
        message["message_id"] = message["message_id"] or hit.get("_id")
        hl = hit.get("highlight") or {}
        fragments: Sequence[str] = hl.get("content") or hl.get("content.ngram") or []
        message["score"] = hit.get("_score")
        message["highlights"] = list(fragments)
        out.append(message)
    return total, out
