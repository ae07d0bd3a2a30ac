"""``start_service`` on every backend: reachable from the host via its socket only, gone after terminate."""

from __future__ import annotations

import asyncio
import dataclasses
import http.server
import threading
from pathlib import Path

import httpx
import pytest

from sandbox.base import Limits, RunRequest, RunResult, Sandbox
from sandbox.config import DEFAULT_MAX_LIMITS
from sandbox.guard import Admission, GuardedSandbox
from sandbox.service import ServiceEndpoint, ServiceHandle
from tests.support.leftovers import without_idle

APP = """
import http.server, os
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ('hello from ' + os.environ['ROOT_PATH'] + self.path).encode()
        self.send_response(200); self.send_header('Content-Length', str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        print('request', self.path, flush=True)
http.server.ThreadingHTTPServer(('127.0.0.1', int(os.environ['PORT'])), H).serve_forever()
"""


async def test_service_is_reachable_and_leaves_nothing(sandbox: Sandbox) -> None:
    request = RunRequest(
        files={"app.py": APP},
        language="python",
        entry="app.py",
        limits=Limits(wall_seconds=1, memory_mb=256),
        env={"PORT": "8080", "ROOT_PATH": "/apps/x"},
        labels={"app": "svc-test"},
    )
    handle = await sandbox.start_service(request, port=8080)
    try:
        assert await handle.wait_ready(30), handle.logs()
        await asyncio.sleep(1.5)  # longer than wall_seconds: a service has no wall-clock cap
        assert handle.socket_path is not None
        transport = httpx.AsyncHTTPTransport(uds=str(handle.socket_path))
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            response = await client.get("/page")
        assert response.text == "hello from /apps/x/page"
        assert handle.running
        assert "request /page" in handle.logs()
    finally:
        await handle.terminate()
        await handle.terminate()  # idempotent
    assert not handle.running
    assert not handle.socket_path.exists()
    assert not await without_idle(sandbox)


async def test_guard_clamps_and_holds_the_grant_while_the_service_lives(sandbox: Sandbox) -> None:
    maximums = dataclasses.replace(DEFAULT_MAX_LIMITS, memory_mb=300)
    guard = GuardedSandbox(
        sandbox, maximums=maximums, admission=Admission(memory_budget_mb=1000, max_running=4)
    )
    request = RunRequest(
        files={"app.py": APP},
        language="python",
        entry="app.py",
        limits=Limits(memory_mb=2048),
        env={"PORT": "8080", "ROOT_PATH": ""},
    )
    handle = await guard.for_owner("tenant-a").start_service(request, port=8080)
    try:
        stats = guard.admission.stats()
        assert (stats.running, stats.granted_memory_mb) == (1, 300)
    finally:
        await handle.terminate()
    await asyncio.sleep(0)
    assert guard.admission.stats().granted_memory_mb == 0


async def test_a_url_endpoint_is_probed_like_a_socket() -> None:
    """A remote backend's service answers at a URL: ``wait_ready`` probes it over HTTP (here on loopback)."""

    class Ok(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self) -> None:
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Ok)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    ended = asyncio.Event()

    async def remote_service() -> RunResult:  # what a remote backend's coroutine does: wait until cancelled
        try:
            await asyncio.sleep(3600)
        finally:
            ended.set()
        raise AssertionError("unreachable")

    handle = ServiceHandle("remote")
    handle.start(remote_service())
    try:
        assert not await handle.wait_ready(0.2)  # no endpoint yet
        handle.endpoint = ServiceEndpoint(url=f"http://127.0.0.1:{server.server_address[1]}/")
        assert await handle.wait_ready(5)
        assert handle.socket_path is None
        handle.endpoint = ServiceEndpoint(url="http://127.0.0.1:9/")  # nothing listens there
        assert not await handle.wait_ready(0.5)
    finally:
        await handle.terminate()
        server.shutdown()
    assert ended.is_set() and not handle.running


def test_an_endpoint_is_a_socket_or_a_url() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        ServiceEndpoint()
    with pytest.raises(ValueError, match="exactly one"):
        ServiceEndpoint(unix_socket=Path("/x"), url="http://127.0.0.1/")
