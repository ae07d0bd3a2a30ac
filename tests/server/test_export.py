"""``POST /v1/workspaces/{id}/export`` and ``agentic export``: the real server, real git, a bare repo.

Two tenants; remotes from the server's settings (a ``file://`` bare repository the test creates,
one branch per workspace, and one remote only tenant alpha may use). ``git log`` in the bare
repository is the judge.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from server.app import create_app
from tests.server.conftest import make_settings
from tests.server.support import LiveServer, assert_error
from workspace.git_remotes import GitExportSettings, GitRemote

pytestmark = pytest.mark.skipif(
    shutil.which("git") is None, reason="git is not installed (apt-get install git)"
)

KEY_A = "key-a-" + uuid.uuid4().hex
KEY_B = "key-b-" + uuid.uuid4().hex
# The CLI of this checkout (the console script may belong to another install of the package).
AGENTIC = [sys.executable, "-c", "from server.cli import app; app()"]
ROOT = Path(__file__).resolve().parents[2]
BRANCH = "ws/{tenant}/{workspace_id}"


@dataclass
class ExportServer:
    url: str
    data_dir: Path
    repo: Path
    alpha_repo: Path

    def client(self, key: str | None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=120)


def _bare(path: Path) -> Path:
    subprocess.run(["git", "init", "--quiet", "--bare", str(path)], check=True)
    return path


def _remotes(repo: Path, alpha_repo: Path) -> GitExportSettings:
    return GitExportSettings(
        remotes={
            "local": GitRemote(url=f"file://{repo}", branch=BRANCH),
            "alpha-only": GitRemote(url=f"file://{alpha_repo}", tenants=["alpha"], branch=BRANCH),
        }
    )


@pytest.fixture(scope="module")
def export_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExportServer]:
    data = tmp_path_factory.mktemp("export")
    repo, alpha_repo = _bare(data / "remote.git"), _bare(data / "alpha.git")
    settings = make_settings(
        data, api_keys=[f"alpha:{KEY_A}", f"beta:{KEY_B}"], export=_remotes(repo, alpha_repo)
    )
    with LiveServer(create_app(settings)) as server:
        yield ExportServer(server.url, data, repo, alpha_repo)


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "--git-dir", str(repo), *args], capture_output=True, text=True, check=True)
    return done.stdout


def _log(repo: Path, branch: str) -> list[tuple[str, str]]:
    """(author, subject) of each commit, oldest first."""
    out = _git(repo, "log", "--reverse", "--format=%an%x1f%s", branch)
    return [tuple(line.split("\x1f")) for line in out.splitlines()]  # type: ignore[misc]


def _workspace(client: httpx.Client) -> str:
    response = client.post("/v1/workspaces", json={"name": "export-" + uuid.uuid4().hex[:8]})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _write(client: httpx.Client, ws: str, path: str, content: str, author: str, message: str) -> None:
    body = {"content": content, "author": author, "message": message}
    response = client.put(f"/v1/workspaces/{ws}/files/{path}", json=body)
    assert response.status_code in (200, 201), response.text


def _branches(repo: Path) -> list[str]:
    return _git(repo, "for-each-ref", "--format=%(refname)").split()


def test_export_pushes_every_version_then_only_new_ones(export_server: ExportServer) -> None:
    with export_server.client(KEY_A) as a:
        ws = _workspace(a)
        _write(a, ws, "main.py", "print(1)\n", "alice", "first")
        _write(a, ws, "lib/util.py", "X = 1\n", "agent", "add util")
        _write(a, ws, "main.py", "print(2)\n", "bob", "second")
        rolled = a.post(f"/v1/workspaces/{ws}/rollback/main.py", json={"version": 1, "author": "carol"})
        assert rolled.status_code == 200, rolled.text

        first = a.post(f"/v1/workspaces/{ws}/export", json={"remote": "local"})
        assert first.status_code == 200, first.text
        body = first.json()
        branch = f"ws/alpha/{ws}"
        assert body["branch"] == branch and body["commits"] == 4 and body["previous_head"] is None
        assert _git(export_server.repo, "rev-parse", branch).strip() == body["head"]
        assert _log(export_server.repo, branch) == [
            ("alice", "first"),
            ("agent", "add util"),
            ("bob", "second"),
            ("carol", "rollback to v1"),
        ]
        assert _git(export_server.repo, "show", f"{branch}:main.py") == "print(1)\n"

        _write(a, ws, "lib/util.py", "X = 2\n", "agent", "bump util")
        second = a.post(f"/v1/workspaces/{ws}/export", json={"remote": "local"})
        assert second.status_code == 200, second.text
        assert second.json()["commits"] == 1 and second.json()["previous_head"] == body["head"]
        _git(export_server.repo, "merge-base", "--is-ancestor", body["head"], branch)  # a fast-forward
        assert _log(export_server.repo, branch)[-1] == ("agent", "bump util")


def test_unknown_remote_is_a_400_listing_the_tenants_remotes(export_server: ExportServer) -> None:
    with export_server.client(KEY_B) as b:
        ws = _workspace(b)
        _write(b, ws, "a.txt", "1\n", "bob", "one")
        before = _branches(export_server.repo) + _branches(export_server.alpha_repo)
        for name in ("nope", "alpha-only", "file:///tmp/x.git", "../remote.git"):
            response = b.post(f"/v1/workspaces/{ws}/export", json={"remote": name})
            assert_error(response, 400, "unknown_remote")
            message = response.json()["error"]["message"]
            assert message.endswith("remotes you may export to: 'local'"), message
        assert _branches(export_server.repo) + _branches(export_server.alpha_repo) == before


def test_another_tenants_workspace_is_not_found(export_server: ExportServer) -> None:
    with export_server.client(KEY_A) as a, export_server.client(KEY_B) as b:
        ws = _workspace(a)
        _write(a, ws, "secret.txt", "alpha's\n", "alice", "secret")
        before = _branches(export_server.repo)
        response = b.post(f"/v1/workspaces/{ws}/export", json={"remote": "local"})
        assert_error(response, 404, "workspace_not_found")
        assert _branches(export_server.repo) == before
        # Alpha's own remote works for alpha.
        own = a.post(f"/v1/workspaces/{ws}/export", json={"remote": "alpha-only"})
        assert own.status_code == 200 and own.json()["commits"] == 1, own.text


def test_bad_requests(export_server: ExportServer) -> None:
    with export_server.client(KEY_A) as a, export_server.client(None) as anon:
        ws = _workspace(a)
        assert_error(anon.post(f"/v1/workspaces/{ws}/export", json={"remote": "local"}), 401, "unauthorized")
        assert a.post(f"/v1/workspaces/{ws}/export", json={}).status_code == 422
        assert a.post(f"/v1/workspaces/{ws}/export", json={"remote": "local", "url": "x"}).status_code == 422
        response = a.post(f"/v1/workspaces/{ws}/export", content=b"remote=local")
        assert response.status_code == 415
        empty = a.post(f"/v1/workspaces/{ws}/export", json={"remote": "local"})
        assert empty.status_code == 200 and empty.json()["commits"] == 0 and empty.json()["head"] is None
        missing = a.post(f"/v1/workspaces/{uuid.uuid4().hex}/export", json={"remote": "local"})
        assert_error(missing, 404, "workspace_not_found")


def test_cli_export(export_server: ExportServer, tmp_path: Path) -> None:
    """``agentic export`` against the server's database, with the remotes from the environment."""
    with export_server.client(KEY_A) as a:
        ws = _workspace(a)
        _write(a, ws, "cli.txt", "1\n", "alice", "from the cli test")
    remotes = {"local": {"url": f"file://{export_server.repo}", "branch": BRANCH}}
    env = {
        **os.environ,
        "AGENTIC_DATABASE_URL": f"sqlite+aiosqlite:///{export_server.data_dir / 'workspace.db'}",
        "AGENTIC_EXPORT_REMOTES": json.dumps(remotes),
        "COLUMNS": "200",
    }

    def agentic(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*AGENTIC, *args], capture_output=True, text=True, env=env, timeout=120, cwd=ROOT
        )

    done = agentic("export", ws, "--remote", "local", "--tenant", "alpha")
    assert done.returncode == 0, done.stderr
    branch = f"ws/alpha/{ws}"
    assert done.stdout.strip() == _git(export_server.repo, "rev-parse", branch).strip()
    assert "1 new commit(s)" in done.stderr
    assert _log(export_server.repo, branch) == [("alice", "from the cli test")]

    wrong_tenant = agentic("export", ws, "--remote", "local", "--tenant", "beta")
    assert wrong_tenant.returncode == 2 and "no workspace" in wrong_tenant.stderr.lower(), wrong_tenant.stderr
    unknown = agentic("export", ws, "--remote", "elsewhere")
    assert unknown.returncode == 2 and "unknown remote 'elsewhere'" in unknown.stderr, unknown.stderr
