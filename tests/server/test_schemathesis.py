"""Property-based requests from our own OpenAPI schema (schemathesis): no input may cause a 5xx.

Bounded (a few examples per operation, no shrinking) so the whole module runs in well under a minute.
The server is the real one (sandbox, SQLite store, Agent Protocol with the sample graph).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.generation.case import Case

from server.agent_protocol.config import AgentProtocolSettings
from server.app import create_app
from tests.server.conftest import make_settings
from tests.server.support import LiveServer

KEY = "fuzz-" + uuid.uuid4().hex
SAMPLE_GRAPH = "tests.server.agent_protocol.sample_graphs:graph"


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    data = tmp_path_factory.mktemp("fuzz")
    app_settings = make_settings(
        data,
        api_keys=[KEY],
        rate_limit_per_minute=0,
        agent_protocol=AgentProtocolSettings(data_dir=data, graph_ref=SAMPLE_GRAPH, heartbeat_s=1.0),
    )
    with LiveServer(create_app(app_settings)) as server:
        yield server


def test_no_server_errors(fuzz_server: LiveServer) -> None:
    # Driven by hand rather than through schemathesis' pytest plugin (its lazy fixtures do not work
    # with pytest 9): one bounded Hypothesis search per operation.
    schema = schemathesis.openapi.from_url(f"{fuzz_server.url}/openapi.json")
    failures: list[str] = []
    operations = calls = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @settings(
            max_examples=4,
            deadline=None,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def check(case: Case) -> None:
            nonlocal calls
            calls += 1
            response = case.call(base_url=fuzz_server.url, headers={"X-API-Key": KEY}, timeout=30)
            if response.status_code >= 500:
                failures.append(
                    f"{case.method} {case.formatted_path} {case.body!r:.200} -> "
                    f"{response.status_code}: {response.text[:300]}"
                )

        check()
    assert operations >= 30 and calls >= 2 * operations
    assert not failures, "\n".join(failures)
