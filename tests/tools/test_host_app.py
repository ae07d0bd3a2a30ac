"""The ``host_app`` tool with a real app manager, store and local sandbox (no server around it)."""

from __future__ import annotations

from pathlib import Path

import httpx
from langgraph.prebuilt import ToolRuntime

from sandbox.config import SandboxSettings
from sandbox.guard import GuardedSandbox
from sandbox.registry import create_sandbox
from server.apps.access import LinkSigner
from server.apps.config import AppSettings
from server.apps.manager import AppManager
from server.apps.store import AppStore
from server.tenancy import TenantStore
from tools import host_app
from workspace.sql import SqlVersionStore

APP = """
import http.server, os
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b'counter app'
        self.send_response(200); self.send_header('Content-Length', str(len(body))); self.end_headers()
        self.wfile.write(body)
http.server.HTTPServer(('127.0.0.1', int(os.environ['PORT'])), H).serve_forever()
"""


async def test_host_app_tool_hosts_the_pinned_version(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}"
    async with SqlVersionStore.from_url(url) as files, create_sandbox(SandboxSettings(), "local") as backend:
        await files.setup()
        apps_store = AppStore.from_url(url)
        await apps_store.setup()
        sandbox = GuardedSandbox.from_settings(backend, SandboxSettings())
        manager = AppManager(apps_store, files, sandbox, AppSettings(), LinkSigner(b"k" * 32))
        try:
            store = TenantStore(files, "acme")
            ws = await store.create_workspace("w")
            first = await store.write(ws.id, "app.py", APP)
            await store.write(ws.id, "app.py", "raise SystemExit('a later, broken version')")
            runtime = ToolRuntime(
                state={"workspace_id": ws.id, "files": {"app.py": first.id}},
                context={"store": store, "apps": manager},
                config={},
                stream_writer=lambda _: None,
                tool_call_id="t1",
                store=None,
            )
            answer = await host_app.coroutine(entry="app.py", runtime=runtime)  # type: ignore[misc]
            assert "Open it at: /apps/" in answer and "agentic_link=" in answer, answer
            (record,) = await apps_store.list("acme")
            assert record.spec["files"] == {"app.py": 1}  # the conversation's pinned version
            handle = await manager.ensure_running(record)
            transport = httpx.AsyncHTTPTransport(uds=str(handle.socket_path))
            async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
                assert (await client.get("/")).text == "counter app"
        finally:
            await manager.close()
            await apps_store.close()
