"""Fixtures: the real app (real sandbox, real SQLite store) under uvicorn, and httpx clients."""

from __future__ import annotations

import uuid
from collections.abc import Generator, Iterator
from pathlib import Path

import httpx
import pytest

from server.agent_protocol.config import AgentProtocolSettings
from server.app import create_app
from server.config import Settings
from tests.server.agent_protocol.support import ServerProcess
from tests.server.support import API_KEY, MAX_FILE_BYTES, MAX_REQUEST_BYTES, LiveServer
from workspace.config import WorkspaceSettings


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failed test against a server process reports that server's log and stacks too."""
    report = yield
    if report.when == "call" and report.failed:
        for value in getattr(item, "funcargs", {}).values():
            if isinstance(value, ServerProcess):
                report.sections.append((f"server {value.url}: log and stacks", value.diagnose()))
    return report


def make_settings(data_dir: Path, **overrides: object) -> Settings:
    """Settings for a test server: auth on, small caps, a fresh SQLite file."""
    workspace = WorkspaceSettings(
        database_url=f"sqlite+aiosqlite:///{data_dir / 'workspace.db'}", max_file_bytes=MAX_FILE_BYTES
    )
    values: dict[str, object] = {
        "api_keys": [API_KEY],
        "max_request_bytes": MAX_REQUEST_BYTES,
        "workspace": workspace,
        "agent_protocol": AgentProtocolSettings(data_dir=data_dir),
        **overrides,
    }
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One server for the session (auth on)."""
    settings = make_settings(tmp_path_factory.mktemp("server"))
    with LiveServer(create_app(settings)) as server:
        yield server


@pytest.fixture
def client(live_server: LiveServer) -> Iterator[httpx.Client]:
    """An authenticated client."""
    headers = {"Authorization": f"Bearer {API_KEY}"}
    with httpx.Client(base_url=live_server.url, headers=headers, timeout=60) as c:
        yield c


@pytest.fixture
def anon(live_server: LiveServer) -> Iterator[httpx.Client]:
    """A client without an API key."""
    with httpx.Client(base_url=live_server.url, timeout=60) as c:
        yield c


@pytest.fixture
def workspace_id(client: httpx.Client) -> str:
    """A fresh workspace for one test."""
    response = client.post("/v1/workspaces", json={"name": "test-" + uuid.uuid4().hex[:8]})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])
