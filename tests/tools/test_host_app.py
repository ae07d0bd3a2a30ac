"""The ``host_app`` tool with a real app manager, store and local sandbox (no server around it)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from langgraph.prebuilt import ToolRuntime

from sandbox.config import SandboxSettings
from sandbox.guard import GuardedSandbox
from sandbox.registry import create_sandbox
from server.apps.access import LinkSigner
from server.apps.agent_view import TenantApps
from server.apps.config import AppSettings
from server.apps.manager import AppManager
from server.apps.store import AppStore
from server.tenancy import TenantStore
from tools import host_app
from tools.apps import AppHostingError
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
                context={"store": store, "apps": TenantApps(manager, "acme")},
                config={},
                stream_writer=lambda _: None,
                tool_call_id="t1",
                store=None,
            )
            answer = await host_app.coroutine(entry="app.py", runtime=runtime)  # type: ignore[misc]
            (message,) = answer.update["messages"]
            assert "Open it at: /apps/" in message.content and "agentic_link=" in message.content, answer
            (record,) = await apps_store.list("acme")
            assert answer.update["app_ids"] == [record.id]  # the conversation's apps (the UI lists them)
            assert record.spec["files"] == {"app.py": 1}  # the conversation's pinned version
            handle = await manager.ensure_running(record)
            transport = httpx.AsyncHTTPTransport(uds=str(handle.socket_path))
            async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
                assert (await client.get("/")).text == "counter app"
        finally:
            await manager.close()
            await apps_store.close()


async def test_host_app_without_an_app_manager_says_hosting_is_unavailable(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}"
    async with SqlVersionStore.from_url(url) as files:
        await files.setup()
        ws = await files.create_workspace("w")
        runtime = ToolRuntime(
            state={"workspace_id": ws.id, "files": {}},
            context={"store": files},
            config={},
            stream_writer=lambda _: None,
            tool_call_id="t1",
            store=None,
        )
        answer = await host_app.coroutine(entry="index.html", runtime=runtime)  # type: ignore[misc]
        assert answer.startswith("Error:") and "app hosting is unavailable here" in answer, answer


async def test_a_static_page_is_served_and_a_broken_app_reports_its_output(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}"
    async with SqlVersionStore.from_url(url) as files, create_sandbox(SandboxSettings(), "local") as backend:
        await files.setup()
        apps_store = AppStore.from_url(url)
        await apps_store.setup()
        sandbox = GuardedSandbox.from_settings(backend, SandboxSettings())
        manager = AppManager(apps_store, files, sandbox, AppSettings(), LinkSigner(b"k" * 32))
        apps = TenantApps(manager, "acme")
        try:
            store = TenantStore(files, "acme")
            ws = await store.create_workspace("w")
            page = await store.write(ws.id, "index.html", "<h1>static hello</h1>")
            await store.write(ws.id, "style.css", "h1 { color: red }")
            hosted = await apps.host(ws.id, entry="index.html", versions={"index.html": page.id})
            assert hosted.link.startswith(f"/apps/{hosted.id}/?agentic_link=") and hosted.expires_at
            record = await apps_store.get(hosted.id)
            assert record is not None and record.spec["command"] is None  # the platform serves it
            handle = await manager.ensure_running(record)
            transport = httpx.AsyncHTTPTransport(uds=str(handle.socket_path))
            async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
                root = await client.get("/")
                assert root.text == "<h1>static hello</h1>" and root.headers["cache-control"] == "no-store"
                assert (await client.get("/style.css")).text == "h1 { color: red }"
            status = await apps.status(hosted.id)
            assert status.running and status.exits == 0 and '"GET / HTTP/1.1" 200' in status.log_tail
            await apps.remove(hosted.id)
            await apps.remove(hosted.id)  # idempotent
            assert await apps_store.get(hosted.id) is None

            await store.write(ws.id, "app.py", "import os\nprint('booting')\nraise RuntimeError('no port')\n")
            with pytest.raises(AppHostingError) as caught:
                await apps.host(ws.id, entry="app.py", versions={})
            assert "did not answer on port 8080" in str(caught.value)
            assert "booting" in caught.value.log and "RuntimeError: no port" in caught.value.log
            assert "its output" not in str(caught.value)  # the log travels apart from the message
            assert await apps_store.list("acme") == []  # a failed start leaves no app behind
            other = TenantApps(manager, "other")
            with pytest.raises(AppHostingError):  # another tenant's workspace is not found
                await other.host(ws.id, entry="index.html", versions={})
        finally:
            await manager.close()
            await apps_store.close()
