"""Traces: OpenTelemetry spans for a donation's whole path, off by default.

`OTEL_TRACES_EXPORTER` (read into `Settings.traces_exporter`) picks the
exporter: `otlp` (configured by the standard `OTEL_EXPORTER_OTLP_*`
variables), `console` (one JSON object per span on stdout) or `none`. When it
is `none` no SDK tracer provider exists, the SDK is not even imported, and
every helper here returns at once.

Trace context crosses process boundaries as a W3C `traceparent`: from an
incoming request's header, onto the outbox row an event is written to, and
onto the simulated provider's webhooks.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import INVALID_SPAN, Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider

TRACER_NAME = "careforall"

_W3C = TraceContextTextMapPropagator()
_tracer: trace.Tracer | None = None

Attributes = Mapping[str, AttributeValue]


def enabled() -> bool:
    return _tracer is not None


def use_provider(provider: trace.TracerProvider | None) -> None:
    """Send this process's spans to `provider`; None turns tracing off."""
    global _tracer
    _tracer = provider.get_tracer(TRACER_NAME) if provider is not None else None


def _one_line(span: ReadableSpan) -> str:
    # One JSON object per line, so stdout stays a stream of JSON lines.
    return json.dumps(json.loads(span.to_json()), separators=(",", ":")) + "\n"


def build_provider(exporters: str) -> TracerProvider | None:
    """A tracer provider for `exporters` (comma-separated), or None for `none`."""
    names = [name for name in exporters.split(",") if name and name != "none"]
    if not names:
        return None
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SimpleSpanProcessor,
    )

    from careforall import __version__

    resource = Resource.create({"service.version": __version__})
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": "careforall"}))
    provider = TracerProvider(resource=resource)
    for name in names:
        if name == "console":
            console = ConsoleSpanExporter(out=sys.stdout, formatter=_one_line)
            provider.add_span_processor(SimpleSpanProcessor(console))
        elif name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                OTLPSpanExporter,
            )

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        else:
            raise ValueError(f"unknown traces exporter {name!r}")
    return provider


# --- spans ---------------------------------------------------------------------


@contextlib.contextmanager
def span(
    name: str,
    *,
    parent: Context | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Attributes | None = None,
) -> Iterator[Span]:
    """A span made current for the block; an exception marks it as an error."""
    tracer = _tracer
    if tracer is None:
        yield INVALID_SPAN
        return
    with tracer.start_as_current_span(
        name, context=parent, kind=kind, attributes=attributes
    ) as current:
        yield current


def start_span(
    name: str,
    *,
    parent: Context | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Attributes | None = None,
) -> Span:
    """A span the caller ends itself (one that spans several phases of work)."""
    tracer = _tracer
    if tracer is None:
        return INVALID_SPAN
    return tracer.start_span(name, context=parent, kind=kind, attributes=attributes)


@contextlib.contextmanager
def using(current: Span) -> Iterator[None]:
    """Make a span from `start_span` current for the block, without ending it."""
    if not current.get_span_context().is_valid:
        yield
        return
    with trace.use_span(current, end_on_exit=False, record_exception=False):
        yield


def fail(current: Span, error: str) -> None:
    if current.is_recording():
        current.set_status(Status(StatusCode.ERROR, error[:200]))


def context_of(current: Span) -> Context | None:
    """A parent context for work that continues `current` later."""
    if not current.get_span_context().is_valid:
        return None
    return trace.set_span_in_context(current)


# --- propagation ---------------------------------------------------------------


def traceparent() -> str | None:
    """The current span's W3C traceparent, to store with work done later."""
    if _tracer is None:
        return None
    carrier: dict[str, str] = {}
    _W3C.inject(carrier)
    return carrier.get("traceparent")


def traceparent_of(context: Context | None) -> str | None:
    """The W3C traceparent of a saved context, to hand to another process."""
    if _tracer is None or context is None:
        return None
    carrier: dict[str, str] = {}
    _W3C.inject(carrier, context=context)
    return carrier.get("traceparent")


def context_from(value: str | None) -> Context | None:
    """The parent context a stored traceparent names (None if absent or invalid)."""
    if _tracer is None or not value:
        return None
    return context_from_headers({"traceparent": value})


def context_from_headers(headers: Mapping[str, str]) -> Context | None:
    """The parent context of an incoming request's `traceparent` header."""
    if _tracer is None or not headers.get("traceparent"):
        return None
    context = _W3C.extract(headers)
    if not trace.get_current_span(context).get_span_context().is_valid:
        return None
    return context


def current_ids() -> tuple[str, str] | None:
    """(trace id, span id) in hex of the current span, for log lines."""
    if _tracer is None:
        return None
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return trace.format_trace_id(ctx.trace_id), trace.format_span_id(ctx.span_id)


# --- the app's provider ----------------------------------------------------------


def install(exporters: str) -> TracerProvider | None:
    """At app start: the provider `exporters` asks for, now in use (None: off).

    With "none" nothing changes, so a provider set up by a test stays in use.
    """
    provider = build_provider(exporters)
    if provider is not None:
        use_provider(provider)
    return provider


def uninstall(provider: TracerProvider | None) -> None:
    """At app stop: flush and stop what `install` started."""
    if provider is None:
        return
    use_provider(None)
    provider.shutdown()
