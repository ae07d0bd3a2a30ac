"""Runs with ``network=True`` on every backend: their own namespace, and the egress proxy as the only way out.

Every address contacted here is in 127.0.0.0/8 (host listeners the sandbox must *not* reach, and
an allow-listed page it must reach through the proxy).
"""

from __future__ import annotations

import asyncio
import http.server
import logging
import os
import socket
import threading
import uuid
from collections.abc import Iterator

import pytest

from sandbox.base import Limits, RunRequest, Sandbox
from sandbox.egress_policy import EgressPolicy
from tests.sandbox.test_conformance import probe_json

LIMITS = Limits(wall_seconds=30, memory_mb=256)


@pytest.fixture
def set_policy(sandbox: Sandbox) -> Iterator[object]:
    """Swap the backend's egress policy for one test."""
    proxy = sandbox.egress  # type: ignore[attr-defined]
    saved = proxy.policy

    def apply(policy: EgressPolicy) -> None:
        proxy.policy = policy

    yield apply
    proxy.policy = saved


class _Page(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        body = b"<h1>internal wiki</h1>"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def _listener(host: str) -> socket.socket:
    sock = socket.socket()
    sock.bind((host, 0))
    sock.listen(8)
    sock.setblocking(False)
    return sock


PROBE = """
import json, socket, urllib.request
out = {}
def direct(name, addr):
    try:
        socket.create_connection(addr, timeout=3).close(); out[name] = 'connected'
    except OSError as exc:
        out[name] = type(exc).__name__
def abstract(name, path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path); out[name] = 'connected'
    except OSError as exc:
        out[name] = type(exc).__name__
def proxied(name, target):
    s = socket.create_connection(('127.0.0.1', 3128), timeout=10)
    s.sendall(('CONNECT %s HTTP/1.1\\r\\nHost: %s\\r\\n\\r\\n' % (target, target)).encode())
    out[name] = s.recv(200).split(b'\\r\\n')[0].decode()
    s.close()
direct('host_loopback', ('127.0.0.1', LOOP))
direct('server_port', ('127.0.0.3', SERVER))
abstract('abstract', ABSTRACT)
proxied('proxy_host_loopback', '127.0.0.1:%d' % LOOP)
proxied('proxy_server_port', '127.0.0.3:%d' % SERVER)
print(json.dumps(out))
"""


async def test_network_run_cannot_reach_host_services(sandbox: Sandbox, set_policy) -> None:  # type: ignore[no-untyped-def]
    """Host loopback, the server's (platform) port, host abstract sockets: unreachable, even via proxy."""
    loop_listener, server_listener = _listener("127.0.0.1"), _listener("127.0.0.3")
    server_port = server_listener.getsockname()[1]
    # 127.0.0.3 is allow-listed, yet its platform port stays refused.
    set_policy(EgressPolicy.from_entries(["127.0.0.3"], allow_internet=False, platform_ports=[server_port]))
    name = f"agentic-host-{uuid.uuid4().hex}"
    abstract = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    abstract.bind("\0" + name)
    abstract.listen(8)
    abstract.setblocking(False)
    code = (
        PROBE.replace("LOOP", str(loop_listener.getsockname()[1]))
        .replace("SERVER", str(server_port))
        .replace("ABSTRACT", repr("\0" + name))
    )
    try:
        request = RunRequest(
            files={"main.py": code}, language="python", entry="main.py", network=True, limits=LIMITS
        )
        data = probe_json(await sandbox.run(request))
        assert data["host_loopback"] == "ConnectionRefusedError", data
        assert data["server_port"] in ("ConnectionRefusedError", "OSError"), data
        assert data["abstract"] in ("ConnectionRefusedError", "FileNotFoundError"), data
        assert data["proxy_host_loopback"].startswith("HTTP/1.1 403"), data
        assert data["proxy_server_port"].startswith("HTTP/1.1 403"), data
        for sock in (loop_listener, server_listener, abstract):
            with pytest.raises(BlockingIOError):
                sock.accept()
    finally:
        for sock in (loop_listener, server_listener, abstract):
            sock.close()


async def test_allow_listed_page_is_fetched_through_the_proxy(
    sandbox: Sandbox,
    set_policy,
    caplog: pytest.LogCaptureFixture,  # type: ignore[no-untyped-def]
) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.2", 0), _Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    set_policy(EgressPolicy.from_entries(["127.0.0.2/32"], allow_internet=False))
    caplog.set_level(logging.INFO, logger="sandbox.egress_policy")
    code = f"""
import json, os, urllib.request
page = urllib.request.urlopen('http://127.0.0.2:{port}/wiki', timeout=10).read().decode()
try:
    urllib.request.urlopen('http://127.0.0.1:{port}/wiki', timeout=10)
    other = 'fetched'
except Exception as exc:
    other = str(exc)
print(json.dumps({{"page": page, "other": other, "proxy": os.environ["HTTP_PROXY"]}}))
"""
    try:
        request = RunRequest(
            files={"main.py": code},
            language="python",
            entry="main.py",
            network=True,
            limits=LIMITS,
            labels={"run": "run-egress-1"},
        )
        data = probe_json(await sandbox.run(request))
    finally:
        server.shutdown()
        server.server_close()
    assert data["page"] == "<h1>internal wiki</h1>"
    assert "403" in data["other"]
    assert data["proxy"] == "http://127.0.0.1:3128"
    messages = [r.getMessage() for r in caplog.records]
    assert any("ALLOW 127.0.0.2" in m and "run=run-egress-1" in m for m in messages), messages
    assert any("DENY 127.0.0.1" in m and "loopback" in m for m in messages), messages


async def test_network_off_stays_without_any_socket_but_unix(sandbox: Sandbox) -> None:
    code = """
import json, socket
out = {}
try:
    socket.socket(socket.AF_INET, socket.SOCK_STREAM); out['inet'] = 'created'
except OSError as exc:
    out['inet'] = type(exc).__name__
import os
out['proxy_socket'] = os.path.exists('/sandbox/net/egress.sock')
out['env'] = 'HTTP_PROXY' in os.environ
print(json.dumps(out))
"""
    data = probe_json(
        await sandbox.run(RunRequest(files={"main.py": code}, language="python", entry="main.py"))
    )
    assert data["inet"] in ("PermissionError", "OSError") and not data["proxy_socket"] and not data["env"], (
        data
    )


def _egress_sockets() -> set[str]:
    """The egress sockets of this session's local and gVisor sandboxes (the proxy listens in the
    host's namespace, so ``/proc/net/unix`` also lists other processes' ones, e.g. a fake cluster's)."""
    ours = (f"/agentic-bwrap-{os.getpid()}-", "/agentic-gvisor-")
    with open("/proc/net/unix") as table:
        paths = {line.split()[-1] for line in table if line.rstrip().endswith("egress.sock")}
    return {path for path in paths if any(mark in path for mark in ours)}


async def test_network_runs_leave_no_proxy_socket(sandbox: Sandbox) -> None:
    before = _egress_sockets()  # other processes on this host (another test session) may have theirs
    request = RunRequest(command=("/bin/true",), network=True, limits=LIMITS)
    results = await asyncio.gather(*(sandbox.run(request) for _ in range(2)))
    assert all(r.ok for r in results), [r.stderr for r in results]
    assert not (_egress_sockets() - before)
