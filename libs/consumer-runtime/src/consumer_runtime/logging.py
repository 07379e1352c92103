"""structlog configured once per process: JSON lines on stdout (readable console lines with LOG_JSON=false,
which `make run` sets on a terminal), context bound per record/batch."""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from typing import Any

import structlog
from opentelemetry.trace import get_current_span

_trace_ids = False


def include_trace_ids(on: bool = True) -> None:
    """Log lines written inside a span carry its ``trace_id``/``span_id`` (set while tracing is on)."""
    global _trace_ids
    _trace_ids = on


def add_trace_ids(_logger: Any, _method: str, event_dict: Any) -> Any:
    """structlog processor: the current span's ids, only while tracing is on (else one flag check)."""
    if _trace_ids:
        context = get_current_span().get_span_context()
        if context.is_valid:
            event_dict.setdefault("trace_id", format(context.trace_id, "032x"))
            event_dict.setdefault("span_id", format(context.span_id, "016x"))
    return event_dict


def configure_logging(service: str, level: str = "INFO", *, json: bool = True) -> None:
    """Route structlog and the standard library (uvicorn, aiokafka) through one JSON renderer."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        add_trace_ids,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
    ]
    renderer: Any = structlog.processors.JSONRenderer(ensure_ascii=False) if json else console_renderer()
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder(allow=("repeated",))],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    handler.addFilter(RepeatFilter(prefixes=("aiokafka", "kafka")))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiokafka/kafka: connection chatter; elastic_transport and httpx log one info line per request, which
    # made every readiness probe (a datastore ping, the gateway's call of each /readyz) a log line
    for noisy in ("aiokafka", "kafka", "elastic_transport", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    structlog.contextvars.bind_contextvars(service=service)


def console_renderer() -> Any:
    """structlog's console renderer for people: one line per event (level, event, key=value), tracebacks
    as plain text. Colours unless NO_COLOR is set: `make run` reaches the terminal through honcho's pipes, so
    the stream's own isatty() says nothing about the person reading it (FORCE_COLOR is not needed)."""
    return structlog.dev.ConsoleRenderer(
        colors="NO_COLOR" not in os.environ,
        exception_formatter=structlog.dev.plain_traceback,
        sort_keys=False,
    )


class RepeatFilter(logging.Filter):
    """Lets one record per (logger, message template, level) through every ``window_s`` seconds.

    While a broker is down aiokafka logs the same "Unable connect to node ..." error every ~100 ms per client;
    this keeps the first, drops the repeats, and adds ``repeated`` (how many were dropped) to the next one
    that passes. Records of loggers outside ``prefixes`` are never touched."""

    def __init__(self, prefixes: tuple[str, ...], window_s: float = 10.0) -> None:
        super().__init__()
        self.prefixes = prefixes
        self.window_s = window_s
        self._seen: dict[tuple[str, str, int], tuple[float, int]] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self.prefixes):
            return True
        key = (record.name, str(record.msg), record.levelno)
        now = time.monotonic()
        with self._lock:
            since, dropped = self._seen.get(key, (float("-inf"), 0))
            if now - since < self.window_s:
                self._seen[key] = (since, dropped + 1)
                return False
            if len(self._seen) > 1000:  # bounded: forget the old templates
                self._seen = {k: v for k, v in self._seen.items() if now - v[0] < self.window_s}
            self._seen[key] = (now, 0)
        if dropped:
            record.repeated = dropped
        return True


def get_logger(name: str | None = None) -> Any:
    return structlog.get_logger(name)
