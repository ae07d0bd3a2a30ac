"""A server that allows network: runs get out through the egress proxy, never to the server itself.

Every address contacted is on loopback: the server's own port (refused: a platform port, although
the test allow-lists 127.0.0.0/8) and a page served by the test on 127.0.0.2 (fetched).
"""

from __future__ import annotations

import http.server
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sandbox.config import LocalSettings, SandboxSettings
from server.app import create_app
from tests.server.conftest import make_settings
from tests.server.support import API_KEY, LiveServer


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def net_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, int]]:
    port = _free_port()
    sandbox = SandboxSettings(local=LocalSettings(cgroup_pool_size=1), egress_allow=["127.0.0.0/8"])
    data_dir = tmp_path_factory.mktemp("egress")
    settings = make_settings(data_dir, allow_network=True, port=port, sandbox=sandbox)
    with LiveServer(create_app(settings), port=port) as server:
        yield server, port


class _Page(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        body = b"operator-opened page"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_network_run_cannot_reach_the_server_but_reaches_an_allow_listed_page(
    net_server: tuple[LiveServer, int], tmp_path: Path
) -> None:
    server, port = net_server
    page = http.server.ThreadingHTTPServer(("127.0.0.2", 0), _Page)
    threading.Thread(target=page.serve_forever, daemon=True).start()
    code = f"""
import json, socket, urllib.request
out = {{}}
try:
    socket.create_connection(('127.0.0.1', {port}), timeout=3); out['direct'] = 'connected'
except OSError as exc:
    out['direct'] = type(exc).__name__
for name, target in (('api', '127.0.0.1:{port}'), ('postgres', '127.0.0.1:5432')):
    s = socket.create_connection(('127.0.0.1', 3128), timeout=10)
    s.sendall(('CONNECT %s HTTP/1.1\\r\\n\\r\\n' % target).encode())
    out[name] = s.recv(100).split(b'\\r\\n')[0].decode()
try:
    urllib.request.urlopen('http://127.0.0.1:{port}/health', timeout=10); out['api_http'] = 'fetched'
except Exception as exc:
    out['api_http'] = str(exc)
out['page'] = urllib.request.urlopen('http://127.0.0.2:{page.server_address[1]}/', timeout=10).read().decode()
print(json.dumps(out))
"""
    headers = {"Authorization": f"Bearer {API_KEY}"}
    try:
        with httpx.Client(base_url=server.url, headers=headers, timeout=60) as client:
            ws = client.post("/v1/workspaces", json={"name": "egress"}).json()["id"]
            response = client.post(f"/v1/workspaces/{ws}/runs", json={"code": code, "network": True})
    finally:
        page.shutdown()
        page.server_close()
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["ok"], result["stderr"]
    data = json.loads(result["stdout"])
    assert data["direct"] == "ConnectionRefusedError"
    assert data["api"].startswith("HTTP/1.1 403") and data["postgres"].startswith("HTTP/1.1 403")
    assert "403" in data["api_http"]
    assert data["page"] == "operator-opened page"
