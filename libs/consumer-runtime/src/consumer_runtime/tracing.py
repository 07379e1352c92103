"""OpenTelemetry tracing, configured in one place from the standard ``OTEL_*`` variables.

Off unless ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) or
``OTEL_TRACES_EXPORTER`` is set (``OTEL_SDK_DISABLED=true`` turns it off whatever else is set). While off
nothing is set up: no SDK is imported, no library is instrumented, and the runtime's own spans and header
injections are skipped behind one flag (:func:`is_enabled`), so the hot path pays nothing.

When on (:func:`configure_tracing`, called by :func:`consumer_runtime.service.run_service` before the app
and its datastore clients are made):

- a ``TracerProvider`` for the service (``service.name`` = ``OTEL_SERVICE_NAME`` or the service's name,
  plus ``OTEL_RESOURCE_ATTRIBUTES``) exporting through a batch processor: ``otlp`` (OTLP over HTTP/protobuf
  to ``OTEL_EXPORTER_OTLP[_TRACES]_ENDPOINT``), ``console``, or both (``OTEL_TRACES_EXPORTER=otlp,console``);
- the sampler of ``OTEL_TRACES_SAMPLER`` / ``OTEL_TRACES_SAMPLER_ARG`` (``parentbased_always_on`` by
  default), always parent-based, and a trace only *starts* at an incoming request (SERVER) or a consumed
  batch (CONSUMER): datastore calls, pings and polls of background tasks outside either are not traced;
- the installed instrumentations: PyMongo and the aiohttp client (the gateway's upstream calls) for the
  process, FastAPI per app (:func:`instrument_app`; health, readiness and metrics are not traced). The
  Elasticsearch client traces its own API calls through the global provider (elasticsearch-py ≥ 8.13).

Kafka records carry W3C ``traceparent``/``tracestate`` headers: producers add them with
:func:`publish_span` (the span of the send and the headers carrying it), the runner opens one CONSUMER span
per batch with :func:`batch_span` — linked to the context of every record of the batch, and the child of
that context when all of the batch's traced records share one — so the sink's datastore calls are its
children. Dead letters keep the original record's trace headers (``consumer_runtime.dlq``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind, TraceFlags, TraceState
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from consumer_runtime.logging import get_logger, include_trace_ids
from consumer_runtime.settings import ConfigError

if TYPE_CHECKING:
    from fastapi import FastAPI
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
    from opentelemetry.sdk.trace.sampling import Sampler

log = get_logger(__name__)

__all__ = [
    "TRACEPARENT",
    "TRACESTATE",
    "TRACE_HEADERS",
    "batch_span",
    "client_span",
    "configure_tracing",
    "current_ids",
    "has_trace_headers",
    "instrument_app",
    "is_enabled",
    "publish_span",
    "record_context",
    "requested",
    "shutdown_tracing",
    "trace_headers",
]

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
#: The W3C trace context headers of a Kafka record (kept on its dead letter).
TRACE_HEADERS = (TRACEPARENT, TRACESTATE)

#: Not traced by the FastAPI instrumentation (regexes, ``OTEL_PYTHON_FASTAPI_EXCLUDED_URLS`` overrides).
EXCLUDED_URLS = "/healthz,/readyz,/livez,/metrics"
#: Links one span may hold unless ``OTEL_SPAN_LINK_COUNT_LIMIT`` says otherwise (the SDK's default is 128;
#: a batch links every distinct record context, and a bulk batch holds up to ``MQ_MAX_BATCH`` records).
DEFAULT_LINK_LIMIT = 4096

_W3C = TraceContextTextMapPropagator()
_INSTRUMENTORS = (
    ("opentelemetry.instrumentation.pymongo", "PymongoInstrumentor"),
    ("opentelemetry.instrumentation.aiohttp_client", "AioHttpClientInstrumentor"),
)


@dataclass
class _Tracing:
    provider: TracerProvider
    tracer: trace.Tracer
    instrumentors: list[Any] = field(default_factory=list)


_state: _Tracing | None = None
_global_provider_set = False


def is_enabled() -> bool:
    """Whether tracing is on in this process (the one check the hot path makes)."""
    return _state is not None


def requested(env: Mapping[str, str] | None = None) -> bool:
    """Whether the environment asks for tracing: an OTLP endpoint or an exporter is named (not ``none``),
    and ``OTEL_SDK_DISABLED`` is not ``true``."""
    env = os.environ if env is None else env
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporters:
        return exporters != "none"
    return bool(env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def configure_tracing(
    service: str,
    *,
    env: Mapping[str, str] | None = None,
    processors: Sequence[SpanProcessor] = (),
) -> bool:
    """Set tracing up for this process once (later calls change nothing); True when it is on.

    ``processors`` (tests: a ``SimpleSpanProcessor`` of an ``InMemorySpanExporter``) turn it on whatever the
    environment says and replace the exporters it names.
    """
    global _state, _global_provider_set
    if _state is not None:
        return True
    env = os.environ if env is None else env
    if not processors and not requested(env):
        return False
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import SpanLimits, TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    name = env.get("OTEL_SERVICE_NAME") or service
    try:
        limit = int(env.get("OTEL_SPAN_LINK_COUNT_LIMIT") or DEFAULT_LINK_LIMIT)
    except ValueError:
        raise ConfigError("OTEL_SPAN_LINK_COUNT_LIMIT: not an integer") from None
    provider = TracerProvider(
        resource=Resource.create({SERVICE_NAME: name}),
        sampler=sampler_from_env(env),
        span_limits=SpanLimits(max_links=limit),
    )
    if processors:
        for processor in processors:
            provider.add_span_processor(processor)
    else:
        for exporter in _exporters(env):
            provider.add_span_processor(BatchSpanProcessor(exporter))
    if not _global_provider_set:
        # the global provider can be set once per process: Elasticsearch's own spans go to the first one
        trace.set_tracer_provider(provider)
        _global_provider_set = True
    state = _Tracing(provider, provider.get_tracer("consumer_runtime"))
    for module, cls in _INSTRUMENTORS:
        try:
            instrumentor = getattr(__import__(module, fromlist=[cls]), cls)()
        except ImportError:
            continue
        if instrumentor.is_instrumented_by_opentelemetry:
            # instrumented by an earlier configuration of this process (not shut down): bind it to this
            # provider, or its spans keep going to the earlier one
            instrumentor.uninstrument()
        instrumentor.instrument(tracer_provider=provider)
        command_tracer = getattr(instrumentor, "_commandtracer_instance", None)
        if command_tracer is not None:
            # PyMongo's instrumentation registers one command listener per process and keeps the tracer of
            # its first instrument() call: point it at this provider (a process normally configures once;
            # tests configure again with an in-memory exporter)
            command_tracer._tracer = provider.get_tracer("opentelemetry.instrumentation.pymongo")
        state.instrumentors.append(instrumentor)
    _state = state
    include_trace_ids(True)
    log.info(
        "tracing on",
        service_name=name,
        exporters=[type(p).__name__ for p in processors] or env.get("OTEL_TRACES_EXPORTER") or "otlp",
        sampler=provider.sampler.get_description(),
    )
    return True


def shutdown_tracing() -> None:
    """Flush and stop: spans end with the provider, the libraries are uninstrumented (tests; a process
    exits through the provider's own exit hook)."""
    global _state
    state, _state = _state, None
    if state is None:
        return
    include_trace_ids(False)
    for instrumentor in state.instrumentors:
        with contextlib.suppress(Exception):
            instrumentor.uninstrument()
    state.provider.shutdown()


def _exporters(env: Mapping[str, str]) -> list[Any]:
    names = [n.strip().lower() for n in (env.get("OTEL_TRACES_EXPORTER") or "otlp").split(",") if n.strip()]
    exporters: list[Any] = []
    for name in names:
        if name == "none":
            continue
        if name == "otlp":
            protocol = (
                env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
                or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
                or "http/protobuf"
            ).strip()
            if protocol != "http/protobuf":
                raise ConfigError(
                    f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r}: only http/protobuf is installed "
                    "(the collector's OTLP/HTTP port, usually 4318)"
                )
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporters.append(OTLPSpanExporter())  # endpoint, headers, timeout: OTEL_EXPORTER_OTLP_*
        elif name == "console":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            exporters.append(ConsoleSpanExporter())
        else:
            raise ConfigError(f"OTEL_TRACES_EXPORTER: unknown exporter {name!r} (otlp, console or none)")
    return exporters


def sampler_from_env(env: Mapping[str, str]) -> Sampler:
    """``OTEL_TRACES_SAMPLER`` (always_on, always_off, traceidratio, each also ``parentbased_``) with
    ``OTEL_TRACES_SAMPLER_ARG``; always parent-based, and roots only at requests and consumed batches."""
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased, TraceIdRatioBased

    name = (env.get("OTEL_TRACES_SAMPLER") or "parentbased_always_on").strip().lower()
    base = name.removeprefix("parentbased_")
    root: Sampler
    if base == "always_on":
        root = ALWAYS_ON
    elif base == "always_off":
        root = ALWAYS_OFF
    elif base == "traceidratio":
        try:
            ratio = float(env.get("OTEL_TRACES_SAMPLER_ARG") or 1.0)
        except ValueError:
            raise ConfigError("OTEL_TRACES_SAMPLER_ARG: not a number") from None
        root = TraceIdRatioBased(ratio)
    else:
        raise ConfigError(f"OTEL_TRACES_SAMPLER: unknown sampler {name!r}")
    return ParentBased(root=_entry_points_only(root))


def _entry_points_only(root: Sampler) -> Sampler:
    from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult

    class EntryPointsOnly(Sampler):
        """A trace starts at a request (SERVER) or a consumed batch (CONSUMER) only; any other span
        without a parent (a readiness ping, a stream's poll, a background insert) is dropped."""

        def should_sample(
            self,
            parent_context: Context | None,
            trace_id: int,
            name: str,
            kind: SpanKind | None = None,
            attributes: Any = None,
            links: Sequence[Link] | None = None,
            trace_state: Any = None,
        ) -> SamplingResult:
            if kind not in (SpanKind.SERVER, SpanKind.CONSUMER):
                return SamplingResult(Decision.DROP)
            return root.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

        def get_description(self) -> str:
            return f"EntryPointsOnly{{{root.get_description()}}}"

    return EntryPointsOnly()


def instrument_app(app: FastAPI) -> None:
    """Trace the app's requests (a SERVER span each, the W3C context of the caller continued) when
    tracing is on; nothing otherwise."""
    state = _state
    if state is None:
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=state.provider,
        excluded_urls=os.environ.get("OTEL_PYTHON_FASTAPI_EXCLUDED_URLS") or EXCLUDED_URLS,
        exclude_spans=["receive", "send"],
    )


# ------------------------------------------------------------------------------------------ Kafka headers
def trace_headers() -> list[tuple[str, bytes]]:
    """The W3C headers of the current span ([] without one)."""
    carrier: dict[str, str] = {}
    _W3C.inject(carrier)
    return [(k, v.encode("ascii")) for k, v in carrier.items()]


def has_trace_headers(headers: Iterable[tuple[str, bytes | None]] | None) -> bool:
    return any(k == TRACEPARENT for k, _ in headers or ())


_NO_HEADERS: contextlib.nullcontext[tuple[tuple[str, bytes], ...]] = contextlib.nullcontext(())


def publish_span(
    topic: str, *, records: int = 1
) -> contextlib.AbstractContextManager[Sequence[tuple[str, bytes]]]:
    """A PRODUCER span around a send to ``topic`` (``records`` sent together); yields the headers that carry
    its context, to add to every record of the send. Yields () and starts nothing while tracing is off."""
    if _state is None:
        return _NO_HEADERS
    return _publish_span(_state, topic, records)


@contextlib.contextmanager
def _publish_span(state: _Tracing, topic: str, records: int) -> Iterator[list[tuple[str, bytes]]]:
    attributes: dict[str, Any] = {
        "messaging.system": "kafka",
        "messaging.destination.name": topic,
        "messaging.operation.type": "send",
        "messaging.operation.name": "send",
    }
    if records != 1:
        attributes["messaging.batch.message_count"] = records
    with state.tracer.start_as_current_span(f"send {topic}", kind=SpanKind.PRODUCER, attributes=attributes):
        yield trace_headers()


def record_context(headers: Iterable[tuple[str, bytes | None]] | None) -> SpanContext | None:
    """The span context a record's ``traceparent``/``tracestate`` headers carry (None when they carry none
    or a malformed one). Parsed here rather than through the propagator: a batch parses one per record."""
    parent: bytes | None = None
    state: bytes | None = None
    for key, value in headers or ():
        if key == TRACEPARENT:
            parent = value
        elif key == TRACESTATE:
            state = value
    if not parent:
        return None
    # version-traceid-parentid-flags: 2, 32, 16 and 2 lowercase hex digits (a future version may append)
    fields = parent.split(b"-")
    if (
        len(fields) < 4
        or len(fields[0]) != 2
        or fields[0] == b"ff"
        or (fields[0] == b"00" and len(fields) != 4)
        or len(fields[1]) != 32
        or len(fields[2]) != 16
        or len(fields[3]) != 2
    ):
        return None
    try:
        trace_id, span_id, flags = int(fields[1], 16), int(fields[2], 16), int(fields[3], 16)
    except ValueError:
        return None
    if not trace_id or not span_id or parent != parent.lower():
        return None
    trace_state = TraceState.from_header([state.decode("ascii", "replace")]) if state else None
    return SpanContext(
        trace_id, span_id, is_remote=True, trace_flags=TraceFlags(flags), trace_state=trace_state
    )


def _contexts(records: Iterable[Any]) -> list[SpanContext]:
    """The distinct contexts the records carry, in record order (records of one trace share one)."""
    seen: dict[tuple[bytes | None, ...], SpanContext | None] = {}
    for record in records:
        headers = getattr(record, "headers", None)
        if not headers:
            continue
        key = tuple(v for k, v in headers if k in TRACE_HEADERS)
        if key and key not in seen:
            seen[key] = record_context(headers)
    distinct: dict[tuple[int, int], SpanContext] = {}
    for context in seen.values():
        if context is not None:
            distinct.setdefault((context.trace_id, context.span_id), context)
    return list(distinct.values())


@contextlib.contextmanager
def batch_span(records: Sequence[Any], *, consumer: str, group: str) -> Iterator[trace.Span | None]:
    """The CONSUMER span of one batch (current for the block): linked to the context of every record that
    carries one, and the child of that context when the batch's traced records all share one (a lone
    request's record continues its trace). Yields None and starts nothing while tracing is off."""
    state = _state
    if state is None:
        yield None
        return
    contexts = _contexts(records)
    topics = sorted({r.topic for r in records})
    attributes: dict[str, Any] = {
        "messaging.system": "kafka",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.consumer.group.name": group,
        "messaging.batch.message_count": len(records),
        "consumer": consumer,
    }
    if len(topics) == 1:
        attributes["messaging.destination.name"] = topics[0]
    parent = Context()
    if len(contexts) == 1:
        parent = trace.set_span_in_context(NonRecordingSpan(contexts[0]), parent)
    with state.tracer.start_as_current_span(
        f"process {', '.join(topics)}",
        context=parent,
        kind=SpanKind.CONSUMER,
        attributes=attributes,
        links=[Link(c) for c in contexts],
    ) as span:
        yield span


@contextlib.contextmanager
def client_span(name: str, **attributes: Any) -> Iterator[None]:
    """A CLIENT span around a datastore call no instrumentation covers (asyncmy), current for the block;
    nothing while tracing is off. Outside a request or batch it is not recorded (no trace starts there)."""
    state = _state
    if state is None:
        yield
        return
    with state.tracer.start_as_current_span(name, kind=SpanKind.CLIENT, attributes=attributes):
        yield


def current_ids() -> tuple[str, str] | None:
    """``(trace_id, span_id)`` in hex of the current span, None outside one (or while tracing is off)."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")
