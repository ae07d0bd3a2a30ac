"""``start_service`` on every backend: reachable from the host via its socket only, gone after terminate."""

from __future__ import annotations

import asyncio
import dataclasses
import os

import httpx

from sandbox.base import Limits, RunRequest, Sandbox
from sandbox.config import DEFAULT_MAX_LIMITS
from sandbox.guard import Admission, GuardedSandbox
from tests.support.leftovers import descendants

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
    assert not descendants(os.getpid())


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
