"""The trace of one chat run, exported over OTLP/HTTP to a collector in the test, nested as it ran.

Real parts: the server process with ``AGENTIC_OTEL_ENDPOINT`` set, the real agent graph on the
scripted model (tests/support/scripted_openai.py), the local sandbox running the Code Agent's
program, and the SDK's own OTLP/HTTP exporter. The collector is a small HTTP server on loopback
that decodes ``ExportTraceServiceRequest`` (opentelemetry-proto). The trace must hold the HTTP
request's span, the run's span under it, a span per graph node (the Code Agent's under its node
in the outer graph), the model calls under their nodes and the sandbox run under the node that
ran it, with the tenant, thread and run ids.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_client
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span as SpanPb

from tests.server.agent_protocol.support import ServerProcess
from tests.support.scripted_openai import CODE, ROUTER, TESTS, Reply, ScriptedOpenAI


@dataclass(frozen=True)
class Span:
    """One received span, ids in hex."""

    name: str
    trace_id: str
    span_id: str
    parent_id: str
    kind: int
    attributes: dict[str, Any]
    service: str


def _value(v: Any) -> Any:
    return getattr(v, v.WhichOneof("value")) if v.WhichOneof("value") else None


class Collector:
    """An OTLP/HTTP trace receiver on 127.0.0.1 keeping every span it is sent."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.posts = 0
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                ok = (
                    self.path == "/v1/traces" and self.headers.get("Content-Type") == "application/x-protobuf"
                )
                if ok:
                    collector.receive(body)
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200 if ok else 404)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def receive(self, body: bytes) -> None:
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        self.posts += 1
        for resource_spans in request.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for s in scope_spans.spans:
                    self.spans.append(
                        Span(
                            name=s.name,
                            trace_id=s.trace_id.hex(),
                            span_id=s.span_id.hex(),
                            parent_id=s.parent_span_id.hex(),
                            kind=s.kind,
                            attributes={a.key: _value(a.value) for a in s.attributes},
                            service=str(resource.get("service.name")),
                        )
                    )

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture(scope="module")
def collector() -> Iterator[Collector]:
    c = Collector()
    yield c
    c.close()


@pytest.fixture(scope="module")
def traced_server(
    tmp_path_factory: pytest.TempPathFactory, collector: Collector
) -> Iterator[tuple[ServerProcess, ScriptedOpenAI]]:
    with ScriptedOpenAI() as llm:
        env = {
            "OPENAI_BASE_URL": llm.url,
            "OPENAI_API_KEY": "scripted",
            "AGENTIC_MODEL": "scripted",
            "AGENTIC_OTEL_ENDPOINT": collector.url,
            "AGENTIC_OTEL_SERVICE_NAME": "agentic-under-test",
            "OTEL_BSP_SCHEDULE_DELAY": "100",  # the SDK's batch: export within 0.1 s
        }
        with ServerProcess(tmp_path_factory.mktemp("traced"), env) as server:
            yield server, llm


def _children(spans: list[Span], parent: Span) -> list[Span]:
    return [s for s in spans if s.parent_id == parent.span_id]


def _ancestors(by_id: dict[str, Span], span: Span) -> list[Span]:
    found = []
    while span.parent_id in by_id:
        span = by_id[span.parent_id]
        found.append(span)
    return found


async def test_a_chat_run_is_one_nested_trace(
    traced_server: tuple[ServerProcess, ScriptedOpenAI], collector: Collector, tmp_path: Path
) -> None:
    server, llm = traced_server
    llm.reset()
    llm.add(Reply('{"next": "code", "task": "write a program that prints hello"}', match=ROUTER))
    llm.when(ROUTER, '{"next": "answer", "answer": "Done: the program prints hello."}')
    llm.when(CODE, "Here it is:\n```python\nprint('hello')\n```\n")
    llm.when(TESTS, "```python\nassert True\n```\n")
    ws = httpx.post(
        f"{server.url}/v1/workspaces", json={"name": "traced"}, headers=server.headers, timeout=30
    )
    client = get_client(url=server.url, api_key=server.api_key)
    try:
        thread_id = str((await client.threads.create())["thread_id"])
        run_id = None
        message = {"messages": [{"role": "user", "content": "print hello"}], "workspace_id": ws.json()["id"]}
        async for part in client.runs.stream(thread_id, "agent", input=message, stream_mode="updates"):
            assert part.event != "error", part.data
            if part.event == "metadata":
                run_id = part.data["run_id"]
    finally:
        await client.aclose()
    assert run_id is not None

    deadline = time.monotonic() + 15
    while True:  # the request's span ends last (with the stream); spans come in batches
        runs = [
            s
            for s in collector.spans
            if s.name == "agentic.run" and s.attributes.get("agentic.run_id") == run_id
        ]
        trace = [s for s in collector.spans if runs and s.trace_id == runs[0].trace_id]
        requests = [s for s in trace if s.kind == SpanPb.SPAN_KIND_SERVER]
        if requests:
            break
        assert time.monotonic() < deadline, sorted({s.name for s in collector.spans})
        time.sleep(0.1)
    (run,) = runs
    (request,) = requests  # one request's trace: the run is part of it
    by_id = {s.span_id: s for s in trace}

    assert request.name == "POST /threads/{thread_id}/runs/stream" and request.parent_id == ""
    assert request.attributes["http.response.status_code"] == 200
    assert request.service == "agentic-under-test"
    assert request in _ancestors(by_id, run)  # made by the request, executed under it
    # the API key's check (a dependency of the request) names the caller's tenant
    checked = [s for s in _children(trace, request) if s.attributes.get("agentic.tenant") == "default"]
    assert checked, [(s.name, s.attributes) for s in _children(trace, request)]
    assert run.attributes["agentic.tenant"] == "default"
    assert run.attributes["agentic.thread_id"] == thread_id
    assert run.attributes["agentic.run_id"] == run_id
    assert run.attributes["agentic.assistant_id"]
    assert run.attributes["agentic.run_status"] == "success"

    top = {s.name for s in _children(trace, run)}
    assert {"task_agent", "code_agent", "reply"} <= top, top
    (code_node,) = [s for s in _children(trace, run) if s.name == "code_agent"]
    inner = {s.name for s in _children(trace, code_node)}
    assert {"prepare", "write_code", "save", "run", "report"} <= inner, inner
    for node in [s for s in trace if "langgraph.node" in s.attributes]:
        assert run in _ancestors(by_id, node), node

    models = [s for s in trace if s.name.startswith("chat ")]
    assert models, [s.name for s in trace]  # the routing is deterministic here: the code is the call
    for model in models:
        assert model.attributes["gen_ai.request.model"] == "scripted"
        assert model.kind == SpanPb.SPAN_KIND_CLIENT
        assert "langgraph.node" in by_id[model.parent_id].attributes  # under the node that called it
    (writing,) = [m for m in models if by_id[m.parent_id].name == "write_code"]
    assert writing.attributes["gen_ai.usage.input_tokens"] > 0  # the scripted server's usage
    assert writing.attributes["gen_ai.usage.output_tokens"] > 0

    (sandbox,) = [s for s in trace if s.name == "sandbox.run"]
    assert by_id[sandbox.parent_id].name == "run" and by_id[sandbox.parent_id].parent_id == code_node.span_id
    assert sandbox.attributes["sandbox.exit_code"] == 0
    assert sandbox.attributes["sandbox.language"] == "python"
    assert run in _ancestors(by_id, sandbox) and request in _ancestors(by_id, sandbox)
