"""Git export over smart HTTP with a token: the real ``git http-backend`` behind a small HTTP server on
127.0.0.1 that demands HTTP Basic auth, as Gitea does for pushes.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from workspace import SqlVersionStore, Workspace
from workspace.errors import GitRemoteError
from workspace.git_export import GitExporter
from workspace.git_remotes import GitExportSettings, GitRemote

pytestmark = pytest.mark.skipif(
    shutil.which("git") is None, reason="git is not installed (apt-get install git)"
)

TOKEN = "t0ken-for-the-test"


class _GitHttp(BaseHTTPRequestHandler):
    """CGI bridge to ``git http-backend``; 401 unless the request carries agentic:TOKEN."""

    root: Path
    seen_auth: list[str]

    def log_message(self, format: str, *args: object) -> None:  # keep the test output clean
        pass

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _serve(self) -> None:
        auth = self.headers.get("Authorization", "")
        self.seen_auth.append(auth)
        expected = "Basic " + base64.b64encode(f"agentic:{TOKEN}".encode()).decode()
        if auth != expected:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        path, _, query = self.path.partition("?")
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        env = {
            "PATH": "/usr/bin:/bin",
            "GIT_PROJECT_ROOT": str(self.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "REQUEST_METHOD": self.command,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
            "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
            "REMOTE_USER": "agentic",
            "REMOTE_ADDR": "127.0.0.1",
        }
        out = subprocess.run(
            ["git", "http-backend"], input=body, env=env, capture_output=True, check=True
        ).stdout
        head, _, payload = out.partition(b"\r\n\r\n") if b"\r\n\r\n" in out else out.partition(b"\n\n")
        status, headers = 200, []
        for line in head.decode("latin-1").splitlines():
            key, _, value = line.partition(":")
            if key.lower() == "status":
                status = int(value.split()[0])
            else:
                headers.append((key, value.strip()))
        self.send_response(status)
        for key, value in headers:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@pytest.fixture
def git_http(tmp_path: Path) -> Iterator[tuple[str, Path, list[str]]]:
    """(base URL, the bare repository served, the Authorization headers seen)."""
    repo = tmp_path / "served" / "demo.git"
    subprocess.run(["git", "init", "--quiet", "--bare", str(repo)], check=True)
    seen: list[str] = []
    handler = type("Handler", (_GitHttp,), {"root": repo.parent, "seen_auth": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", repo, seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


async def test_export_over_http_with_a_token(
    store: SqlVersionStore, ws: Workspace, git_http: tuple[str, Path, list[str]]
) -> None:
    url, repo, seen = git_http
    await store.write(ws.id, "a.txt", "1\n", author="alice", message="over http")
    await store.write(ws.id, "a.txt", "2\n", author="bob", message="again")

    wrong = GitExportSettings(remotes={"gitea": GitRemote(url=f"{url}/demo.git", token="wrong")})
    with pytest.raises(GitRemoteError, match="failed for remote 'gitea'"):
        await GitExporter(wrong).export(store, ws.id, "gitea")
    assert subprocess.run(["git", "--git-dir", str(repo), "for-each-ref"], capture_output=True).stdout == b""

    right = GitExportSettings(remotes={"gitea": GitRemote(url=f"{url}/demo.git", token=TOKEN)})
    result = await GitExporter(right).export(store, ws.id, "gitea")
    assert result.commits == 2
    log = subprocess.run(
        ["git", "--git-dir", str(repo), "log", "--reverse", "--format=%an %s", "main"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert log == ["alice over http", "bob again"]
    # The token went out as a header on every request, never in the URL.
    assert seen and all(h.startswith("Basic ") for h in seen[-3:])
