"""Run output retention through the real server: the run route cuts output, the lifespan sweeps it."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from typer.testing import CliRunner

from server.app import create_app
from server.cli import app as cli_app
from tests.server.conftest import make_settings
from tests.server.support import API_KEY, LiveServer
from workspace import SqlVersionStore
from workspace.config import WorkspaceSettings
from workspace.schema import search_documents

PROGRAM = "for i in range(5000):\n    print('line', i, 'progress')\nraise SystemExit('tailword failure')\n"


async def _stored(url: str, workspace_id: str) -> list[str]:
    """The run output bodies stored for a workspace (read by a second store, as another process)."""
    async with SqlVersionStore.from_url(url) as store:
        hits = await store.search(workspace_id, "tailword")
        return [h.snippet for h in hits]


async def _age_all(url: str) -> None:
    async with SqlVersionStore.from_url(url) as store, store._engine.begin() as conn:
        await conn.execute(search_documents.update().values(created_at=datetime.now(UTC) - timedelta(days=1)))


def test_server_cuts_run_output_and_sweeps_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'workspace.db'}"
    workspace = WorkspaceSettings(
        database_url=url,
        run_output_max_bytes=4000,
        run_output_retention_s=3600,
        run_output_prune_interval_s=0.2,
    )
    server = LiveServer(create_app(make_settings(tmp_path, workspace=workspace)))
    with server, httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {API_KEY}"}) as client:
        ws = client.post("/v1/workspaces", json={"name": "retention"}).json()["id"]
        run = client.post(f"/v1/workspaces/{ws}/runs", json={"code": PROGRAM}, timeout=60)
        assert run.status_code == 200, run.text
        assert len(run.json()["stdout"]) > 4000  # the client still gets the whole output
        snippets = asyncio.run(_stored(url, ws))
        assert len(snippets) == 1 and "**tailword**" in snippets[0]  # the tail survived the cut
        asyncio.run(_age_all(url))
        deadline = time.monotonic() + 10
        while asyncio.run(_stored(url, ws)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert asyncio.run(_stored(url, ws)) == []
    assert not server._thread.is_alive()  # shutdown completed with the sweep task running


async def _index_old_output(url: str) -> str:
    async with SqlVersionStore.from_url(url) as store:
        await store.setup()
        ws = await store.create_workspace("cli")
        await store.index_run_output(ws.id, "r1", "stdout", "tailword\n")
    await _age_all(url)
    return ws.id


def test_cli_prune(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    ws = asyncio.run(_index_old_output(url))
    env = {
        "AGENTIC_DATABASE_URL": url,
        "AGENTIC_RUN_OUTPUT_RETENTION_S": "60",
        "AGENTIC_DATA_DIR": str(tmp_path),
    }
    result = CliRunner().invoke(cli_app, ["prune"], env=env)
    assert result.exit_code == 0, result.output
    assert "deleted 1 run output(s)" in result.output
    assert asyncio.run(_stored(url, ws)) == []
