"""The same API over the Postgres store (DATABASE_URL set), against a real Postgres server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from server.app import create_app
from server.config import Settings
from tests.server.support import API_KEY, LiveServer, assert_error
from workspace.config import WorkspaceSettings


@pytest.fixture(scope="module")
def pg_client(postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    data_dir: Path = tmp_path_factory.mktemp("pg-server")
    settings = Settings(
        api_keys=[API_KEY],
        workspace=WorkspaceSettings(database_url=postgres_url, data_dir=data_dir),
    )
    with LiveServer(create_app(settings)) as server:
        headers = {"X-API-Key": API_KEY}
        with httpx.Client(base_url=server.url, headers=headers, timeout=60) as client:
            yield client


def test_files_versions_and_runs_on_postgres(pg_client: httpx.Client) -> None:
    assert pg_client.get("/healthz").json()["store"] == "postgresql"
    ws = pg_client.post("/v1/workspaces", json={"name": "pg"}).json()["id"]
    base = f"/v1/workspaces/{ws}"
    assert pg_client.put(f"{base}/files/m.py", json={"content": "print('a')\n"}).status_code == 200
    assert pg_client.put(f"{base}/files/m.py", json={"content": "print('b')\n"}).status_code == 200
    assert [v["number"] for v in pg_client.get(f"{base}/history/m.py").json()] == [1, 2]
    assert pg_client.post(f"{base}/rollback/m.py", json={"version": 1}).json()["number"] == 3
    run = pg_client.post(f"{base}/runs", json={"path": "m.py"}).json()
    assert (run["stdout"], run["version"]) == ("a\n", 3)
    assert_error(pg_client.put(f"{base}/files/n.txt", json={"content": "a\u0000b"}), 415, "binary_content")
    assert_error(pg_client.get(f"{base}/files/..%2Fx"), 400, "invalid_path")
