"""Wide events of any shape and size never break logging (issue 18, item 5). No servers: the logger is not
started, ``MQ_ENABLED=false``, so ``finalize`` encodes into the MongoDB fallback queue right away, and what
it queued is checked here; the publish path uses the same encoder (the Kafka test is in
test_wide_logging_adapter.py)."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from platform_events import LOG_EVENTS, decode
from wide_logging import WideLogger, WideLoggingConfig


class Unprintable:
    def __repr__(self) -> str:
        raise RuntimeError("no repr for you")

    __str__ = __repr__


def nested(depth: int, kind: str) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = [value] if kind == "list" else {"d": value}
    return value


def circular() -> dict[str, Any]:
    loop: dict[str, Any] = {}
    loop["self"] = loop
    return loop


ODD_VALUES = [
    object(),
    Unprintable(),
    b"\xff\xfe invalid utf-8",
    "lone surrogate \ud800",
    {1, 2, 3},
    float("nan"),
    float("inf"),
    complex(1, 2),
    Decimal("1.5"),
    datetime(2025, 8, 8, tzinfo=UTC),
    2**80,
    circular(),
    None,
    "정상 값",
]
GOOD = {"event_id": "evt_fixed", "timestamp": "2025-08-08T00:00:00Z", "service": "svc"}
ODD_KEYS: list[Any] = ["k", "키", 7, (1, 2), None, "\ud800", ""]


@st.composite
def any_event(draw: st.DrawFn) -> dict[Any, Any]:
    event: dict[Any, Any] = {}
    fields = draw(st.sampled_from([0, 3, 300, 10_000]))
    width = draw(st.sampled_from([1, 100, 1_000, 5_000]))
    for i in range(fields):
        event[f"f{i}"] = "x" * width if i % 2 else i
    for _ in range(draw(st.integers(0, 4))):
        event[draw(st.sampled_from(ODD_KEYS))] = draw(st.sampled_from(ODD_VALUES))
    if draw(st.booleans()):
        event["deep"] = nested(
            draw(st.sampled_from([10, 1_000, 5_000])), draw(st.sampled_from(["list", "dict"]))
        )
    for core in ("event_id", "timestamp", "service"):
        choice = draw(st.sampled_from(["absent", "good", "odd"]))
        if choice == "good":
            event[core] = {"event_id": "evt_fixed", "timestamp": "2025-08-08T00:00:00Z", "service": "svc"}[
                core
            ]
        elif choice == "odd":
            event[core] = draw(st.sampled_from([*ODD_VALUES, "", " ", "x" * 500, -5, True]))
    return event


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(any_event(), min_size=1, max_size=3), st.sampled_from([1024, 64 * 1024, 256 * 1024]))
def test_any_event_is_finalized_and_accounted_for(events: list[dict[Any, Any]], limit: int) -> None:
    logger = WideLogger(WideLoggingConfig(service="robust", mq_enabled=False, max_event_bytes=limit))
    for event in events:
        logger.finalize(event)  # never raises
    c = logger.counters
    assert c.finalized == len(events)
    assert c.internal_errors == 0
    assert c.dropped == 0
    queued = [logger._fallback.get_nowait() for _ in range(logger._fallback.qsize())]
    assert len(queued) == len(events)  # nothing lost uncounted: every event is on its way to MongoDB
    for event, raw in zip(events, queued, strict=True):
        assert len(raw) <= limit
        stored = decode(LOG_EVENTS, raw).model_dump(mode="json")
        if event.get("event_id") == "evt_fixed":
            assert stored["event_id"] == "evt_fixed"  # its identity survives any repair
        if stored.get("wide_logging_reduced"):
            assert stored["wide_logging_error"]


def test_a_few_hundred_long_fields_are_cut_to_the_core_and_marked() -> None:
    """The case of the issue: 400 fields of 1,000 characters (400 KB) raised ValidationError in the
    adapter (the reduced copy was still too big)."""
    logger = WideLogger(WideLoggingConfig(service="robust", mq_enabled=False))
    logger.finalize({"event_id": "evt_wide", **{f"field_{i}": "y" * 1000 for i in range(400)}})
    assert (logger.counters.dropped, logger.counters.truncated, logger.counters.internal_errors) == (0, 1, 0)
    stored = decode(LOG_EVENTS, logger._fallback.get_nowait()).model_dump(mode="json")
    assert stored["event_id"] == "evt_wide"
    assert stored["truncated"] is True
    assert stored["service"] == "robust"
    assert "limit" in stored["wide_logging_error"]


def test_finalize_of_something_that_is_not_a_mapping_never_raises() -> None:
    logger = WideLogger(WideLoggingConfig(service="robust", mq_enabled=False))
    for thing in (None, 5, "text", [("a", 1)], Unprintable(), math.pi):
        logger.finalize(thing)  # type: ignore[arg-type]
    assert logger.counters.finalized == 6
    assert logger._fallback.qsize() + logger.counters.dropped == 6
