"""``/metrics``: the Prometheus counters move when agent runs and sandbox runs happen."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from server.agent_protocol.config import AgentProtocolSettings
from server.app import create_app
from tests.server.conftest import make_settings
from tests.server.support import LiveServer

KEY = "metrics-" + uuid.uuid4().hex
SAMPLE_GRAPH = "tests.server.agent_protocol.sample_graphs:graph"


@pytest.fixture(scope="module")
def metrics_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    data = tmp_path_factory.mktemp("metrics")
    settings = make_settings(
        data, api_keys=[KEY], agent_protocol=AgentProtocolSettings(data_dir=data, graph_ref=SAMPLE_GRAPH)
    )
    with (
        LiveServer(create_app(settings)) as server,
        httpx.Client(base_url=server.url, headers={"X-API-Key": KEY}, timeout=60) as client,
    ):
        yield client


def _sample(client: httpx.Client, name: str, **labels: str) -> float:
    """The value of one sample (0 when absent); ``/metrics`` needs no key."""
    response = httpx.get(str(client.base_url.join("/metrics")), timeout=30)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def test_agent_run_moves_run_counters(metrics_server: httpx.Client) -> None:
    c = metrics_server
    before = _sample(c, "agentic_runs_total", status="success")
    hist_before = _sample(c, "agentic_run_duration_seconds_count", status="success")
    thread = c.post("/threads", json={}).json()["thread_id"]
    response = c.post(f"/threads/{thread}/runs/wait", json={"assistant_id": "agent", "input": {"ticks": 1}})
    assert response.status_code == 200, response.text
    assert _sample(c, "agentic_runs_total", status="success") == before + 1
    assert _sample(c, "agentic_run_duration_seconds_count", status="success") == hist_before + 1
    assert _sample(c, "agentic_run_queue_depth") == 0


def test_sandbox_run_moves_sandbox_counters(metrics_server: httpx.Client) -> None:
    c = metrics_server
    ws = c.post("/v1/workspaces", json={"name": "metrics"}).json()["id"]
    response = c.post(f"/v1/workspaces/{ws}/runs", json={"code": "print('hi')"})
    assert response.status_code == 200, response.text
    backend = response.json()["backend"]
    before = _sample(c, "agentic_sandbox_runs_total", backend=backend, reason="exit")
    count_before = _sample(c, "agentic_sandbox_run_duration_seconds_count", backend=backend)
    streamed = c.post(f"/v1/workspaces/{ws}/runs/stream", json={"code": "print('again')"})
    assert streamed.status_code == 200 and "event: result" in streamed.text
    assert c.post(f"/v1/workspaces/{ws}/runs", json={"code": "print(1)"}).status_code == 200
    assert _sample(c, "agentic_sandbox_runs_total", backend=backend, reason="exit") == before + 2
    assert _sample(c, "agentic_sandbox_run_duration_seconds_count", backend=backend) == count_before + 2
    assert _sample(c, "agentic_active_sandboxes", backend=backend) == 0
