"""Prometheus metrics (``/metrics``): runs by status and duration, sandbox runs, queue depth, warm pool.

The metrics are process-wide (prometheus-client's default registry), like any exporter. They hold
no tenant data, so ``/metrics`` needs no key. Sandbox figures come from :class:`InstrumentedSandbox`,
the wrapper the server puts around its backend, so REST runs and the agents' runs count alike; when
that backend is the warm pool (:class:`~sandbox.warm.pool.WarmPool`), its figures are read from the
pool when ``/metrics`` is scraped (``agentic_sandbox_warm_*``: hits (and those that waited for a
start), misses by reason, runs only a cold start can serve, start (refill) time, failed starts,
expired and over-budget sandboxes, idle sandboxes and their memory per key, the idle memory budget).
"""

from __future__ import annotations

import time
import weakref
from collections.abc import AsyncIterator, Iterator
from types import TracebackType
from typing import Any, Self

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric, SummaryMetricFamily
from prometheus_client.registry import Collector

from sandbox.base import OutputChunk, RunRequest, RunResult, Sandbox
from sandbox.guard import Admission
from sandbox.warm import WarmPool

__all__ = [
    "ACTIVE_SANDBOXES",
    "CRON_FIRES",
    "RATE_LIMITED",
    "RECOVERED_RUNS",
    "RUNS",
    "RUN_DURATION",
    "RUN_QUEUE_DEPTH",
    "SANDBOX_DURATION",
    "SANDBOX_RUNS",
    "STREAM_FIRST_BYTE",
    "InstrumentedSandbox",
    "router",
    "watch_admission",
    "watch_pool",
]

_DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)

RUNS = Counter("agentic_runs", "Agent runs finished, by status", ["status"])
RUN_DURATION = Histogram(
    "agentic_run_duration_seconds", "Agent run wall time, by status", ["status"], buckets=_DURATION_BUCKETS
)
STREAM_FIRST_BYTE = Histogram(
    "agentic_stream_first_byte_seconds",
    "Run streams (SSE): time from the request reaching the server to the first body byte",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
RUN_QUEUE_DEPTH = Gauge(
    "agentic_run_queue_depth",
    "Agent runs pending in the database queue (all processes), refreshed by the worker",
)
CRON_FIRES = Counter(
    "agentic_cron_fires",
    "Due crons this process tried to fire, by outcome (fired: it queued the run; taken: another process "
    "fired it first; busy, gone, skipped: no run, see the log)",
    ["outcome"],
)
RECOVERED_RUNS = Counter(
    "agentic_recovered_runs", "Runs found orphaned after a restart, by what was done", ["action"]
)
SANDBOX_RUNS = Counter(
    "agentic_sandbox_runs", "Sandbox runs, by backend and end reason", ["backend", "reason"]
)
SANDBOX_DURATION = Histogram(
    "agentic_sandbox_run_duration_seconds",
    "Sandbox run wall time, by backend",
    ["backend"],
    buckets=_DURATION_BUCKETS,
)
ACTIVE_SANDBOXES = Gauge("agentic_active_sandboxes", "Sandbox runs in progress, by backend", ["backend"])
RATE_LIMITED = Counter("agentic_rate_limited_requests", "Requests refused with 429 by the rate limit")
SANDBOX_GRANTED_MB = Gauge(
    "agentic_sandbox_granted_memory_mb", "Memory granted to running sandboxes now (admission control)"
)
SANDBOX_GRANTED_PEAK_MB = Gauge(
    "agentic_sandbox_granted_memory_peak_mb", "Most memory granted to running sandboxes at once so far"
)
SANDBOX_MEMORY_BUDGET_MB = Gauge(
    "agentic_sandbox_memory_budget_mb",
    "Memory budget of running sandboxes (AGENTIC_SANDBOX_MEMORY_BUDGET_MB)",
)
SANDBOX_REFUSED = Gauge(
    "agentic_sandbox_admission_refused", "Sandbox runs refused for lack of capacity (HTTP 429) so far"
)

router = APIRouter(tags=["health"])


@router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
async def get_metrics() -> Response:
    """Prometheus text exposition of this process's metrics."""
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def watch_admission(admission: Admission) -> None:
    """Export the admission controller's grants (read when ``/metrics`` is scraped)."""
    SANDBOX_GRANTED_MB.set_function(lambda: admission.stats().granted_memory_mb)
    SANDBOX_GRANTED_PEAK_MB.set_function(lambda: admission.stats().peak_granted_memory_mb)
    SANDBOX_MEMORY_BUDGET_MB.set_function(lambda: admission.memory_budget_mb)
    SANDBOX_REFUSED.set_function(lambda: admission.stats().refused)


class _WarmPoolCollector(Collector):
    """The warm pool's figures, read from the pool watched last (one server, one pool)."""

    def __init__(self) -> None:
        self.pool: weakref.ref[WarmPool] | None = None

    def collect(self) -> Iterator[Metric]:
        pool = self.pool() if self.pool is not None else None
        if pool is None:
            return
        stats = pool.stats()
        backend = [stats.backend]
        hits = CounterMetricFamily(
            "agentic_sandbox_warm_hits", "Runs served by a warm sandbox", labels=["backend"]
        )
        hits.add_metric(backend, stats.hits)
        waited = CounterMetricFamily(
            "agentic_sandbox_warm_waited",
            "Runs served by a warm sandbox that was still starting when they came (none was idle)",
            labels=["backend"],
        )
        waited.add_metric(backend, stats.waited)
        misses = CounterMetricFamily(
            "agentic_sandbox_warm_misses",
            "Runs a warm sandbox could have served that started cold: none idle (empty), it could not "
            "take the run (unusable), a file would shadow a preloaded module (shadowed)",
            labels=["backend", "reason"],
        )
        for reason in ("empty", "unusable", "shadowed"):
            misses.add_metric([stats.backend, reason], stats.misses.get(reason, 0))
        cold = CounterMetricFamily(
            "agentic_sandbox_warm_cold_only",
            "Runs no warm sandbox can serve (a command, network, their own start-up environment)",
            labels=["backend"],
        )
        cold.add_metric(backend, stats.cold)
        starts = SummaryMetricFamily(
            "agentic_sandbox_warm_start_seconds",
            "Refill time: from starting a warm sandbox to its interpreter being ready",
            labels=["backend"],
        )
        starts.add_metric(backend, count_value=stats.starts, sum_value=stats.start_seconds_total)
        failures = CounterMetricFamily(
            "agentic_sandbox_warm_start_failures", "Warm sandboxes that failed to start", labels=["backend"]
        )
        failures.add_metric(backend, stats.start_failures)
        expired = CounterMetricFamily(
            "agentic_sandbox_warm_expired",
            "Warm sandboxes destroyed unused after idle_ttl_s",
            labels=["backend"],
        )
        expired.add_metric(backend, stats.expired)
        over_budget = CounterMetricFamily(
            "agentic_sandbox_warm_over_budget",
            "Warm sandboxes destroyed once ready because the idle memory budget had no room for them",
            labels=["backend"],
        )
        over_budget.add_metric(backend, stats.over_budget)
        idle = GaugeMetricFamily(
            "agentic_sandbox_warm_idle", "Idle warm sandboxes, by key", labels=["backend", "key"]
        )
        memory = GaugeMetricFamily(
            "agentic_sandbox_warm_idle_memory_bytes",
            "Memory (PSS) of the idle warm sandboxes, by key",
            labels=["backend", "key"],
        )
        for key in stats.keys:
            idle.add_metric([stats.backend, key.label], key.idle)
            memory.add_metric([stats.backend, key.label], key.idle_memory_bytes)
        budget = GaugeMetricFamily(
            "agentic_sandbox_warm_memory_budget_bytes",
            "Budget of the idle warm sandboxes' memory (AGENTIC_SANDBOX_WARM_MEMORY_BUDGET_MB)",
            labels=["backend"],
        )
        budget.add_metric(backend, pool.warm.memory_budget_mb * 1024 * 1024)
        yield from (hits, waited, misses, cold, starts, failures, expired, over_budget, idle, memory, budget)


_WARM_POOL = _WarmPoolCollector()
REGISTRY.register(_WARM_POOL)


def watch_pool(pool: WarmPool) -> None:
    """Export ``pool``'s figures (read when ``/metrics`` is scraped); replaces the pool watched before."""
    _WARM_POOL.pool = weakref.ref(pool)


class InstrumentedSandbox:
    """A :class:`~sandbox.base.Sandbox` that counts and times the runs of the one it wraps.

    When the wrapped one is the warm pool, its figures are exported too (:func:`watch_pool`).
    """

    def __init__(self, inner: Sandbox) -> None:
        self.inner = inner
        self.name = getattr(inner, "name", "unknown")
        if isinstance(inner, WarmPool):
            watch_pool(inner)

    def _record(self, result: RunResult | None, elapsed: float) -> None:
        backend = result.backend if result is not None and result.backend else self.name
        reason = result.reason.value if result is not None else "error"
        SANDBOX_RUNS.labels(backend=backend, reason=reason).inc()
        SANDBOX_DURATION.labels(backend=backend).observe(elapsed)

    async def run(self, request: RunRequest) -> RunResult:
        """Run and record the outcome."""
        gauge = ACTIVE_SANDBOXES.labels(backend=self.name)
        gauge.inc()
        start, result = time.monotonic(), None
        try:
            result = await self.inner.run(request)
            return result
        finally:
            gauge.dec()
            self._record(result, time.monotonic() - start)

    async def stream(self, request: RunRequest) -> AsyncIterator[OutputChunk]:
        """Stream and record the outcome (also when the consumer stops early)."""
        gauge = ACTIVE_SANDBOXES.labels(backend=self.name)
        gauge.inc()
        start, result = time.monotonic(), None
        inner = self.inner.stream(request)
        try:
            async for chunk in inner:
                if chunk.result is not None:
                    result = chunk.result
                yield chunk
        finally:
            aclose = getattr(inner, "aclose", None)
            if aclose is not None:
                await aclose()
            gauge.dec()
            self._record(result, time.monotonic() - start)

    def __getattr__(self, name: str) -> Any:
        # start_service and anything a backend adds later pass straight through.
        return getattr(self.inner, name)

    async def close(self) -> None:
        """Close the wrapped backend."""
        await self.inner.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
