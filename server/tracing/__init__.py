"""OpenTelemetry traces of the server: HTTP requests, runs, graph nodes, model calls, sandbox runs.

Off by default, and then nothing is installed: no SDK tracer provider (the API's no-op tracer
answers the few spans the tools open), no callback handler in runs. With an OTLP endpoint
configured (:class:`TracingSettings`), :func:`install_tracing` sets up the SDK with a batching
OTLP/HTTP exporter, and:

- FastAPI's own telemetry (built into FastAPI since 0.13x, active once a tracer provider is
  installed) opens a server span per HTTP request (a W3C ``traceparent`` header from the client
  is its parent) with spans for dependencies, the endpoint and serialization under it;
  ``require_api_key`` adds the caller's tenant;
- a run's creation stores the request span's ``traceparent`` with the run (:func:`current_traceparent`),
  so the span of the run's execution (:func:`run_span`), on whichever process claims it from the
  queue, is that request's child;
- ``callbacks.SpanCallbackHandler`` (given to the graph with the run's config) opens a span per
  graph node (nested as subgraphs nest) and per model call (model name, token counts when known),
  and makes each node's span current while it runs, so the tools' ``sandbox.run`` spans (opened
  through ``opentelemetry-api`` only, in ``tools/``) sit under the node that ran them.

``provider`` (settings, install, the on/off switch, ``traceparent``, the run's span), ``callbacks``.
"""

from server.tracing.provider import (
    TracingSettings,
    current_traceparent,
    end_run_span,
    install_tracing,
    run_callbacks,
    run_span,
    tracing_enabled,
)

__all__ = [
    "TracingSettings",
    "current_traceparent",
    "end_run_span",
    "install_tracing",
    "run_callbacks",
    "run_span",
    "tracing_enabled",
]
