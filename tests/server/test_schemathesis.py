"""API fuzzing from our OpenAPI schema (schemathesis' engine, as ``st run`` drives it): no 5xx for any input.

Two phases against the real server (its own uvicorn process: sandbox, SQLite stores, the Agent
Protocol with the sample graph):

* coverage: deterministic boundary and type-confusion inputs for every parameter and body field
  (huge integers, blank strings, wrong JSON types...), the class of bug plain random examples missed;
* stateful: chains of calls along the links schemathesis infers from the schema (create a workspace
  or thread, then use its id), so operations behind an id are reached with real resources.

Bounded for ``make test`` (a few examples per operation, a wall-clock budget checked between
scenarios); ``make fuzz`` runs the same test deeper. Knobs (environment):

    AGENTIC_FUZZ_EXAMPLES   examples per operation and phase (default 5)
    AGENTIC_FUZZ_BUDGET_S   wall-clock budget in seconds (default 70): coverage gets up to 70 % of
                            it, stateful the rest; each stops between scenarios when its time is up
    AGENTIC_FUZZ_WORKERS    concurrent engine workers (default 1: Hypothesis' lambda
                            descriptions are not thread-safe on Python 3.11)
    AGENTIC_FUZZ_SEED       seed to replay a run (default: random, printed on failure)
"""

from __future__ import annotations

import os
import random
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import schemathesis
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import events

from tests.server.agent_protocol.support import ServerProcess

KEY = "fuzz-" + uuid.uuid4().hex
SAMPLE_GRAPH = "tests.server.agent_protocol.sample_graphs:graph"
EXAMPLES = int(os.environ.get("AGENTIC_FUZZ_EXAMPLES", "5"))
BUDGET_S = float(os.environ.get("AGENTIC_FUZZ_BUDGET_S", "70"))
WORKERS = int(os.environ.get("AGENTIC_FUZZ_WORKERS", "1"))
SEED = int(os.environ.get("AGENTIC_FUZZ_SEED") or random.randrange(2**32))


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server process of its own, so the fuzzer and the server do not share one interpreter."""
    env = {
        "AGENTIC_GRAPH_REF": SAMPLE_GRAPH,
        "AGENTIC_HEARTBEAT_S": "1",
        "AGENTIC_RATE_LIMIT_PER_MINUTE": "0",
        "AGENTIC_MAX_FILE_BYTES": "200000",
    }
    with ServerProcess(tmp_path_factory.mktemp("fuzz"), env, api_key=KEY) as server:
        yield server


@dataclass
class FuzzReport:
    """What one engine run did: scenarios and calls per phase, and every 5xx (or dropped connection)."""

    calls: dict[str, int] = field(default_factory=dict)
    scenarios: dict[str, int] = field(default_factory=dict)
    operations: set[str] = field(default_factory=set)
    server_errors: list[str] = field(default_factory=list)
    stopped_by_budget: bool = False
    seconds: float = 0.0

    def summary(self) -> str:
        return (
            f"seed {SEED}, {EXAMPLES} examples, budget {BUDGET_S:.0f} s: {len(self.operations)} operations, "
            f"calls {self.calls}, scenarios {self.scenarios}, {len(self.server_errors)} server errors, "
            f"{self.seconds:.1f} s{' (stopped by the budget)' if self.stopped_by_budget else ''}"
        )


def _config(url: str, phase: str) -> SchemathesisConfig:
    """The engine's configuration: one phase, the 5xx check only, no example database."""
    return SchemathesisConfig.from_dict(
        {
            "seed": SEED,
            "headers": {"X-API-Key": KEY},
            "base-url": url,
            "request-timeout": 60,
            "workers": WORKERS,
            "generation": {"max-examples": EXAMPLES, "database": "none"},
            "checks": {"enabled": False, "not_a_server_error": {"enabled": True}},
            "phases": {
                name: {"enabled": name == phase} for name in ("examples", "coverage", "fuzzing", "stateful")
            },
        }
    )


def run_fuzzer(url: str, phase: str, deadline: float, report: FuzzReport) -> None:
    """Drive the engine through ``phase`` over the live schema; stop between scenarios after ``deadline``."""
    started = time.monotonic()
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json", config=_config(url, phase))
    stream = schemathesis.engine.from_schema(schema).execute()
    stopping = False
    for event in stream:
        if isinstance(event, events.ScenarioFinished):
            phase = event.phase.value.lower()
            report.scenarios[phase] = report.scenarios.get(phase, 0) + 1
            for case_id, interaction in event.recorder.interactions.items():
                report.calls[phase] = report.calls.get(phase, 0) + 1
                request = interaction.request
                node = event.recorder.cases.get(case_id)
                report.operations.add(node.value.operation.label if node else request.method)
                status = interaction.response.status_code if interaction.response else None
                if status is None or status >= 500:
                    body = (request.body or b"")[:300] if isinstance(request.body, bytes) else request.body
                    text = interaction.response.content[:300] if interaction.response else b"(no response)"
                    report.server_errors.append(
                        f"[{phase}] {request.method} {request.uri} {body!r} -> {status}: {text!r}"
                    )
            if time.monotonic() > deadline and not stopping:
                stopping = report.stopped_by_budget = True
                stream.stop()
        elif isinstance(event, events.NonFatalError):
            report.server_errors.append(f"[{event.phase}] {event.label}: {event.info.format()}"[:1500])
        elif isinstance(event, events.FatalError):
            raise event.exception
    report.seconds += time.monotonic() - started


def _tracebacks(log: Path) -> str:
    text = log.read_text(errors="replace") if log.exists() else ""
    return "\n".join(line for line in text.splitlines() if "Error" in line or "error" in line)[-4000:]


def test_no_server_errors(fuzz_server: ServerProcess) -> None:
    start = time.monotonic()
    report = FuzzReport()
    run_fuzzer(fuzz_server.url, "coverage", start + 0.7 * BUDGET_S, report)
    run_fuzzer(fuzz_server.url, "stateful", start + BUDGET_S, report)
    print(report.summary())
    assert not report.server_errors, (
        report.summary()
        + "\n"
        + "\n".join(report.server_errors[:30])
        + "\nserver log:\n"
        + _tracebacks(fuzz_server.log_path)
    )
    # Each phase got somewhere (a loaded machine may stop coverage before the last operations).
    assert report.scenarios.get("coverage", 0) >= 15, report.summary()
    assert report.calls.get("stateful", 0) > 0, report.summary()
