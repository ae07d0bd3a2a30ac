"""Tracing settings, the SDK's installation when an endpoint is set, and the helpers runs use.

The switch is process-wide, as OpenTelemetry's tracer provider is: :func:`install_tracing` turns
it on for the life of the server (and flushes the spans left on the way out); until then
:func:`tracing_enabled` is False and every helper here returns at once with nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from langchain_core.callbacks import BaseCallbackHandler
from opentelemetry import context, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = [
    "TRACER_NAME",
    "TracingSettings",
    "current_traceparent",
    "end_run_span",
    "install_tracing",
    "run_callbacks",
    "run_span",
    "tracing_enabled",
]

logger = logging.getLogger(__name__)

TRACER_NAME = "agentic.server"
_TRACES_PATH = "/v1/traces"
_propagator = TraceContextTextMapPropagator()
_enabled = False


class TracingSettings(BaseSettings):
    """Where spans go (OTLP over HTTP) and under which service name; no endpoint, no tracing."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    endpoint: str | None = Field(
        default=None,
        validation_alias=AliasChoices("AGENTIC_OTEL_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT", "endpoint"),
        description="OTLP/HTTP collector, e.g. http://127.0.0.1:4318 (spans go to its /v1/traces); "
        "unset: tracing is off.",
    )
    service_name: str = Field(
        default="agentic-platform",
        validation_alias=AliasChoices("AGENTIC_OTEL_SERVICE_NAME", "OTEL_SERVICE_NAME", "service_name"),
        description="The service.name of every span.",
    )

    @property
    def traces_url(self) -> str | None:
        """The URL spans are posted to (the endpoint's ``/v1/traces`` unless it names it already)."""
        if not self.endpoint:
            return None
        base = self.endpoint.rstrip("/")
        return base if base.endswith(_TRACES_PATH) else base + _TRACES_PATH


def tracing_enabled() -> bool:
    """True while :func:`install_tracing` is in effect in this process."""
    return _enabled


@contextmanager
def install_tracing(settings: TracingSettings) -> Iterator[bool]:
    """Install the SDK's tracer provider with an OTLP/HTTP exporter when an endpoint is set.

    Yields whether tracing is on. On exit the batched spans still waiting are exported.
    """
    global _enabled
    url = settings.traces_url
    if url is None:
        yield False
        return
    # Imported here: with tracing off the SDK and the exporter are never loaded.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": settings.service_name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=url)))
    trace.set_tracer_provider(provider)
    _enabled = True
    logger.info("tracing on: spans go to %s as service %s", url, settings.service_name)
    try:
        yield True
    finally:
        _enabled = False
        provider.shutdown()  # exports what is batched


def current_traceparent() -> str | None:
    """The W3C ``traceparent`` of the current span (a request's), to store with a run it creates."""
    if not _enabled:
        return None
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier.get("traceparent")


def _parent_context(traceparent: str | None) -> context.Context:
    """The stored request's context, or an empty one (the run is a trace of its own)."""
    if not traceparent:
        return context.Context()
    return _propagator.extract({"traceparent": traceparent}, context=context.Context())


@contextmanager
def _run_span(attributes: dict[str, Any], traceparent: str | None) -> Iterator[Span]:
    tracer = trace.get_tracer(TRACER_NAME)
    with tracer.start_as_current_span(
        "agentic.run",
        context=_parent_context(traceparent),
        kind=SpanKind.CONSUMER,
        attributes=attributes,
        record_exception=True,
    ) as span:
        yield span


def run_span(
    *, tenant: str, thread_id: str, run_id: str, assistant_id: str, traceparent: str | None
) -> AbstractContextManager[Span | None]:
    """The span of one run's execution (current while it runs), child of the request that made it.

    A ``nullcontext`` yielding None when tracing is off.
    """
    if not _enabled:
        return nullcontext()
    attributes = {
        "agentic.tenant": tenant,
        "agentic.thread_id": thread_id,
        "agentic.run_id": run_id,
        "agentic.assistant_id": assistant_id,
    }
    return _run_span(attributes, traceparent)


def end_run_span(span: Span | None, status: str, error: str | None) -> None:
    """Record how the run ended on its span (nothing when tracing is off)."""
    if span is None:
        return
    span.set_attribute("agentic.run_status", status)
    if error:
        span.set_status(Status(StatusCode.ERROR, error[:500]))


def run_callbacks() -> list[BaseCallbackHandler]:
    """The callback handlers a run's graph gets: the span handler when tracing is on, else none."""
    if not _enabled:
        return []
    from server.tracing.callbacks import SpanCallbackHandler

    return [SpanCallbackHandler(trace.get_tracer(TRACER_NAME), context.get_current())]
