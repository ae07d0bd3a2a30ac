"""Tenants: every resource of tenant A is "not found" (404) for tenant B; keys from the env and the DB.

One real server (uvicorn in a thread) serving the sample graph, with two tenants' keys in
``AGENTIC_API_KEYS`` form (``tenant:key``); tenant A creates one of each resource, tenant B asks.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from server.agent_protocol.config import AgentProtocolSettings
from server.app import create_app
from server.cli import app as cli_app
from server.deps import TenantDep
from tests.server.conftest import make_settings
from tests.server.support import LiveServer, assert_error

KEY_A = "key-a-" + uuid.uuid4().hex
KEY_B = "key-b-" + uuid.uuid4().hex
SAMPLE_GRAPH = "tests.server.agent_protocol.sample_graphs:graph"


@dataclass
class TenantServer:
    url: str
    data_dir: Path

    def client(self, key: str | None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)


@pytest.fixture(scope="module")
def tenant_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TenantServer]:
    data = tmp_path_factory.mktemp("tenants")
    settings = make_settings(
        data,
        api_keys=[f"alpha:{KEY_A}", f"beta:{KEY_B}"],
        agent_protocol=AgentProtocolSettings(data_dir=data, graph_ref=SAMPLE_GRAPH),
    )
    with LiveServer(create_app(settings)) as server:
        yield TenantServer(server.url, data)


@dataclass
class Owned:
    """One of each of tenant A's resources."""

    workspace_id: str
    thread_id: str
    run_id: str


@pytest.fixture(scope="module")
def owned(tenant_server: TenantServer) -> Owned:
    with tenant_server.client(KEY_A) as a:
        ws = a.post("/v1/workspaces", json={"name": "alpha-ws"}).json()["id"]
        for content in ("print(1)\n", "print(2)\n"):
            assert a.put(f"/v1/workspaces/{ws}/files/main.py", json={"content": content}).status_code == 200
        thread = a.post("/threads", json={"metadata": {"owner": "alpha"}}).json()["thread_id"]
        waited = a.post(f"/threads/{thread}/runs/wait", json={"assistant_id": "agent", "input": {"ticks": 1}})
        assert waited.status_code == 200, waited.text
        run = a.get(f"/threads/{thread}/runs").json()[0]["run_id"]
    return Owned(ws, thread, run)


def _requests(o: Owned) -> list[tuple[str, str, dict[str, object] | None]]:
    ws, t, r = o.workspace_id, o.thread_id, o.run_id
    run_body = {"assistant_id": "agent", "input": {"ticks": 1}}
    return [
        ("GET", f"/v1/workspaces/{ws}", None),
        ("GET", f"/v1/workspaces/{ws}/files", None),
        ("GET", f"/v1/workspaces/{ws}/files/main.py", None),
        ("PUT", f"/v1/workspaces/{ws}/files/main.py", {"content": "stolen"}),
        ("GET", f"/v1/workspaces/{ws}/history/main.py", None),
        ("GET", f"/v1/workspaces/{ws}/versions/1/main.py", None),
        ("GET", f"/v1/workspaces/{ws}/diff/main.py?from=1&to=2", None),
        ("POST", f"/v1/workspaces/{ws}/rollback/main.py", {"version": 1}),
        ("POST", f"/v1/workspaces/{ws}/runs", {"path": "main.py"}),
        ("GET", f"/threads/{t}", None),
        ("PATCH", f"/threads/{t}", {"metadata": {"x": 1}}),
        ("GET", f"/threads/{t}/state", None),
        ("POST", f"/threads/{t}/state", {"values": {"steps": ["x"]}}),
        ("POST", f"/threads/{t}/history", {"limit": 5}),
        ("GET", f"/threads/{t}/runs", None),
        ("POST", f"/threads/{t}/runs", run_body),
        ("POST", f"/threads/{t}/runs/wait", run_body),
        ("GET", f"/threads/{t}/runs/{r}", None),
        ("GET", f"/threads/{t}/runs/{r}/join", None),
        ("GET", f"/threads/{t}/runs/{r}/stream", None),
        ("POST", f"/threads/{t}/runs/{r}/cancel", None),
        ("DELETE", f"/threads/{t}/runs/{r}", None),
        ("DELETE", f"/threads/{t}", None),
    ]


def test_other_tenant_gets_404_for_everything(tenant_server: TenantServer, owned: Owned) -> None:
    requests = _requests(owned)
    with tenant_server.client(KEY_B) as b:
        for method, url, body in requests:
            response = b.request(method, url, json=body)
            assert response.status_code == 404, f"{method} {url}: {response.status_code} {response.text}"
            assert_error(response, 404)
        assert owned.workspace_id not in [w["id"] for w in b.get("/v1/workspaces").json()]
        found = b.post("/threads/search", json={"metadata": {"owner": "alpha"}}).json()
        assert found == [] and b.post("/threads/count", json={}).json() == 0
    # Nothing above changed tenant A's resources, and A still reaches every one of them.
    with tenant_server.client(KEY_A) as a:
        for method, url, _ in requests:
            if method == "GET" and not url.endswith(("/join", "/stream")):
                assert a.get(url).status_code == 200, url
        assert a.get(f"/v1/workspaces/{owned.workspace_id}/files/main.py").json()["content"] == "print(2)\n"
        assert len(a.get(f"/v1/workspaces/{owned.workspace_id}/history/main.py").json()) == 2
        assert a.get(f"/threads/{owned.thread_id}").json()["metadata"]["owner"] == "alpha"
        assert [r["run_id"] for r in a.get(f"/threads/{owned.thread_id}/runs").json()] == [owned.run_id]
        assert owned.workspace_id in [w["id"] for w in a.get("/v1/workspaces").json()]
        assert a.post("/threads/search", json={"metadata": {"owner": "alpha"}}).json()


def test_thread_id_of_another_tenant_cannot_be_reused(tenant_server: TenantServer, owned: Owned) -> None:
    with tenant_server.client(KEY_B) as b:
        for if_exists in ("raise", "do_nothing"):
            response = b.post("/threads", json={"thread_id": owned.thread_id, "if_exists": if_exists})
            error = assert_error(response, 409)
            assert "alpha" not in response.text and "owner" not in str(error)
        response = b.post(
            f"/threads/{owned.thread_id}/runs",
            json={"assistant_id": "agent", "input": {"ticks": 1}, "if_not_exists": "create"},
        )
        assert_error(response, 409)


def test_missing_or_bad_key_is_401(tenant_server: TenantServer, owned: Owned) -> None:
    urls = [f"/v1/workspaces/{owned.workspace_id}", "/v1/workspaces", f"/threads/{owned.thread_id}", "/info"]
    for key in (None, "not-a-key-" + uuid.uuid4().hex, KEY_A + "x"):
        with tenant_server.client(key) as c:
            for url in urls:
                assert_error(c.get(url), 401, "unauthorized")


def test_keys_from_the_cli_act_for_their_tenant(
    tenant_server: TenantServer, owned: Owned, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTIC_DATA_DIR", str(tenant_server.data_dir))
    monkeypatch.delenv("AGENTIC_DATABASE_URL", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    runner = CliRunner()
    created = runner.invoke(cli_app, ["keys", "create", "alpha"])
    assert created.exit_code == 0, created.output
    key = created.stdout.strip().splitlines()[-1]
    assert key.startswith("agk_")
    listed = runner.invoke(cli_app, ["keys", "list", "alpha"])
    assert listed.exit_code == 0 and "alpha" in listed.stdout and key not in listed.stdout
    assert key not in (tenant_server.data_dir / "agent_protocol.db").read_bytes().decode(errors="replace")

    with tenant_server.client(key) as c:  # the CLI's key sees tenant alpha's workspace
        assert c.get(f"/v1/workspaces/{owned.workspace_id}").status_code == 200
        assert runner.invoke(cli_app, ["keys", "revoke", "alpha"]).exit_code == 0
        assert_error(c.get(f"/v1/workspaces/{owned.workspace_id}"), 401, "unauthorized")
    assert runner.invoke(cli_app, ["keys", "create", "no spaces!"]).exit_code == 2


def test_a_route_without_the_key_guard_still_authenticates_for_its_tenant(tmp_path: Path) -> None:
    """``TenantDep`` reads the router guard's finding; without a guard it checks the key itself."""

    async def whoami(tenant: TenantDep) -> dict[str, str]:
        return {"tenant": tenant}

    settings = make_settings(tmp_path, api_keys=[f"alpha:{KEY_A}", f"beta:{KEY_B}"])
    app = create_app(settings)
    app.add_api_route("/whoami-unguarded", whoami)
    app.router.routes.insert(0, app.router.routes.pop())  # before the UI's catch-all paths
    with LiveServer(app) as server:
        assert_error(httpx.get(f"{server.url}/whoami-unguarded", timeout=30), 401, "unauthorized")
        for key, tenant in ((KEY_A, "alpha"), (KEY_B, "beta")):
            got = httpx.get(f"{server.url}/whoami-unguarded", headers={"X-API-Key": key}, timeout=30)
            assert got.status_code == 200 and got.json() == {"tenant": tenant}
