"""The browser tools in real Chromium, sandboxed by the local backend, with the real egress proxy.

Pages are served by the test on 127.0.0.2, which the egress allow-list admits; refusals (the
platform's port, a private address, a redirect into one) are decided by the proxy before any
connection, so no packet leaves 127.0.0.0/8. The gVisor backend cannot hand host pipes to a
program (``RunRequest.pipe_fds``), so the browser runs on the local backend only.
"""

from __future__ import annotations

import http.server
import os
import tempfile
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from langgraph.prebuilt import ToolRuntime

from sandbox.browser import BrowserPool, chromium_flags
from sandbox.config import LocalSettings, SandboxSettings
from sandbox.guard import GuardedSandbox
from sandbox.registry import create_sandbox
from server.apps.access import LinkSigner
from server.apps.config import AppSettings
from server.apps.manager import AppManager, AppSpec
from server.apps.store import AppStore
from server.tenancy import TenantStore
from tests.support.leftovers import descendants, our_cgroups, our_mounts
from tools.app_probe import AppCheck, AppExpectations, probe_app
from tools.browser import browse, check_app
from workspace.sql import SqlVersionStore

pytestmark = pytest.mark.skipif(
    not os.access("/usr/lib/chromium/chromium", os.X_OK),
    reason="Chromium not installed (apt-get install chromium)",
)

ALLOWED = "127.0.0.2"
PLATFORM_PORT = 18765  # listed as a platform port: refused even on an allow-listed address

COUNTER = """
import http.server, os
PAGE = b'''<html><body><h1>Counter</h1><span id="count">0</span>
<button id="add" onclick="fetch('add', {method: 'POST'}).then(r => r.text())
  .then(t => document.getElementById('count').textContent = t)">add one</button></body></html>'''
count = 0
class H(http.server.BaseHTTPRequestHandler):
    def _send(self, body, kind):
        self.send_response(200); self.send_header('Content-Type', kind)
        self.send_header('Content-Length', str(len(body))); self.end_headers(); self.wfile.write(body)
    def do_GET(self):
        self._send(PAGE, 'text/html')
    def do_POST(self):
        global count
        count += 1
        self._send(str(count).encode(), 'text/plain')
http.server.HTTPServer(('127.0.0.1', int(os.environ['PORT'])), H).serve_forever()
"""


class _Pages(http.server.BaseHTTPRequestHandler):
    seen: list[str] = []

    def do_GET(self) -> None:
        _Pages.seen.append(self.path)
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "http://10.1.2.3/secret")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = b"<html><head><title>Hello page</title></head><body><p>Sandboxed hello</p>"
        body += b'<a href="/next">next page</a></body></html>'
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer((ALLOWED, 0), _Pages)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://{ALLOWED}:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def settings() -> SandboxSettings:
    return SandboxSettings(
        local=LocalSettings(cgroup_pool_size=1),
        egress_allow=[ALLOWED],
        egress_platform_ports=[5432, PLATFORM_PORT],
    )


@pytest.fixture(scope="module")
async def env(settings: SandboxSettings, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Any]:
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('browser') / 'db.sqlite'}"
    async with SqlVersionStore.from_url(url) as files, create_sandbox(settings, "local") as backend:
        await files.setup()
        apps_store = AppStore.from_url(url)
        await apps_store.setup()
        guarded = GuardedSandbox.from_settings(backend, settings)
        manager = AppManager(apps_store, files, guarded, AppSettings(), LinkSigner(b"k" * 32))
        backend.egress.app_route = manager.egress_route  # type: ignore[attr-defined]
        pool = BrowserPool(settings)
        store = TenantStore(files, "acme")
        ws = await store.create_workspace("w")
        try:
            yield {
                "store": store,
                "ws": ws,
                "sandbox": guarded.for_owner("acme"),
                "browsers": pool,
                "manager": manager,
                "files": files,
            }
        finally:
            await pool.close()
            await manager.close()
            await apps_store.close()


def _runtime(env: dict[str, Any]) -> ToolRuntime[Any, Any]:
    return ToolRuntime(
        state={"workspace_id": env["ws"].id, "files": {}},
        context={"store": env["store"], "sandbox": env["sandbox"], "browsers": env["browsers"]},
        config={},
        stream_writer=lambda _: None,
        tool_call_id="",
        store=None,
    )


def _chromiums() -> list[int]:
    """Chromium processes of the sandbox uids that are our descendants."""
    return [p for p in descendants(os.getpid()) if b"chromium" in Path(f"/proc/{p}/cmdline").read_bytes()]


async def test_browse_returns_text_links_and_stores_a_screenshot(env: dict[str, Any], site: str) -> None:
    mounts, cgroups = our_mounts(), sorted(our_cgroups())  # the backend's own (stage, pooled groups)
    answer = await browse.coroutine(url=f"{site}/", runtime=_runtime(env), screenshot=True)  # type: ignore[misc]
    assert "Sandboxed hello" in answer and "Hello page" in answer, answer
    assert f"next page: {site}/next" in answer, answer
    assert "screenshot saved as screenshots/127.0.0.2-" in answer, answer
    (shot,) = [f for f in await env["store"].list_files(env["ws"].id) if f.path.startswith("screenshots/")]
    content = (await env["store"].read(env["ws"].id, shot.path)).content
    assert content.startswith("iVBORw0KGgo")  # base64 of the PNG signature
    # Nothing of the session remains: no Chromium, no mount or cgroup, no session dir or socket.
    assert not _chromiums()
    assert our_mounts() == mounts and sorted(our_cgroups()) == cgroups
    assert not list(Path(tempfile.gettempdir()).glob(f"agentic-browser-{os.getpid()}-*"))


@pytest.mark.parametrize(
    ("path", "why"),
    [
        (f"http://{ALLOWED}:{PLATFORM_PORT}/", "platform"),
        ("http://10.1.2.3/", "private"),
        ("http://169.254.169.254/latest/meta-data/", "metadata"),
        ("/redirect", "redirect refused"),
    ],
)
async def test_browse_refusals_come_from_the_egress_proxy(
    env: dict[str, Any], site: str, path: str, why: str
) -> None:
    url = site + path if path.startswith("/") else path
    _Pages.seen.clear()
    answer = await browse.coroutine(url=url, runtime=_runtime(env))  # type: ignore[misc]
    assert answer.startswith("Error: the platform's egress proxy refused"), answer
    assert why in answer, answer
    if path == "/redirect":
        assert _Pages.seen[0] == "/redirect"  # the proxy fetched the page, then refused where it leads


async def test_check_app_clicks_a_button_and_reads_the_result(env: dict[str, Any]) -> None:
    store, manager = env["store"], env["manager"]
    await store.write(env["ws"].id, "counter.py", COUNTER)
    spec = AppSpec(workspace_id=env["ws"].id, entry="counter.py", language="python")
    app, _ = await manager.create("acme", spec)
    steps = [
        {"action": "open", "target": "/"},
        {"action": "read", "target": "#count", "expect": "0"},
        {"action": "click", "target": "#add"},
        {"action": "read", "target": "#count", "expect": "1"},
        {"action": "screenshot"},
    ]
    answer = await check_app.coroutine(app_id=app.id, steps=steps, runtime=_runtime(env))  # type: ignore[misc]
    assert answer.startswith("CHECK PASSED"), answer
    assert "'1'" in answer and "screenshot saved as screenshots/check-" in answer, answer
    failing = [{"action": "click", "target": "#add"}, {"action": "read", "target": "#count", "expect": "7"}]
    answer = await check_app.coroutine(app_id=app.id, steps=failing, runtime=_runtime(env))  # type: ignore[misc]
    assert answer.startswith("CHECK FAILED at step 3"), answer
    assert "expected '7'" in answer and "add one" in answer, answer


async def test_check_app_of_another_tenant_is_refused(env: dict[str, Any]) -> None:
    manager = env["manager"]
    other = TenantStore(env["files"], "other")
    ws = await other.create_workspace("o")
    await other.write(ws.id, "counter.py", COUNTER)
    app, _ = await manager.create("other", AppSpec(workspace_id=ws.id, entry="counter.py", language="python"))
    answer = await check_app.coroutine(app_id=app.id, steps=[], runtime=_runtime(env))  # type: ignore[misc]
    assert answer.startswith("CHECK FAILED at step 1"), answer
    assert "HTTP 403" in answer, answer


def test_the_flags_ask_for_a_pipe_and_our_proxy() -> None:
    """No debugging port: Chromium's flags ask for the pipe, never a port, and our proxy wins."""
    flags = chromium_flags(["--remote-debugging-port=9222", "--proxy-server=direct://", "--user-data-dir=/x"])
    assert "--remote-debugging-pipe" in flags
    assert not [f for f in flags if f.startswith("--remote-debugging-port")]
    assert "--proxy-server=http://127.0.0.1:3128" in flags and "--proxy-server=direct://" not in flags


async def _probe_page(env: dict[str, Any], html: str, expect: AppExpectations | None = None) -> AppCheck:
    """Host ``html`` as a static app of tenant acme and probe it in the sandboxed browser."""
    store, manager = env["store"], env["manager"]
    await store.write(env["ws"].id, "index.html", html)
    app, _ = await manager.create("acme", AppSpec(workspace_id=env["ws"].id, entry="index.html"))
    try:
        return await probe_app(_runtime(env).context, app.id, expect)
    finally:
        await manager.delete("acme", app.id)


async def test_probe_wants_the_page_changed_not_a_dialog_and_finds_expected_text(env: dict[str, Any]) -> None:
    alerting = "<h1>Hello, probe</h1><button onclick=\"alert('Please enter a task.')\">Add</button>"
    check = await _probe_page(env, alerting)
    assert not check.passed and check.problem == "NoEffect", check.render()
    assert "clicked 'Add': nothing changed on the page (a dialog said 'Please enter a task.')" in check.steps
    html = "<h1>Hello, probe</h1><button onclick=\"this.textContent = 'Hi!'\">Say hi</button>"
    check = await _probe_page(env, html, AppExpectations(texts=("hello, PROBE",)))
    assert check.passed, check.render()
    assert "clicked 'Say hi': the page changed" in check.steps
    missing = await _probe_page(env, html, AppExpectations(texts=("Goodbye",)))
    assert not missing.passed and missing.problem == "ExpectationFailed", missing.render()
    assert "never shows 'Goodbye'" in missing.message


async def test_probe_fails_a_form_that_only_reloads_the_page(env: dict[str, Any]) -> None:
    html = (
        '<form><input id="name"><button type="submit">Greet</button></form><p id="out"></p>'
        "<script>document.forms[0].onsubmit = () => { document.getElementById('out').textContent = 'hi'; };"
        "</script>"
    )
    check = await _probe_page(env, html)
    assert not check.passed and check.problem == "NoEffect", check.render()
    assert "typed 'test' into input 'name'" in check.steps
    fixed = html.replace("= 'hi'; }", "= 'hi ' + document.getElementById('name').value; return false; }")
    good = await _probe_page(env, fixed)
    assert good.passed and "hi test" in good.page_text, good.render()


async def test_probe_reports_a_javascript_error_with_the_console_text(env: dict[str, Any]) -> None:
    check = await _probe_page(env, "<p>x</p><script>undefinedFunction();</script>")
    assert not check.passed and check.problem == "JSError", check.render()
    assert any("undefinedFunction is not defined" in line for line in check.console_errors)
    assert check.render().startswith("CHECK FAILED: JSError")


async def test_probe_wants_text_not_an_empty_element(env: dict[str, Any]) -> None:
    """A broken to-do page the small model wrote: reads .value of a <p>, appends an empty item."""
    html = (
        '<p id="task">Add a task</p><button onclick="add()">Add</button>'
        "<script>function add() { const d = document.createElement('div');"
        " d.textContent = document.getElementById('task').value; document.body.appendChild(d); }</script>"
    )
    check = await _probe_page(env, html)
    assert not check.passed and check.problem == "NoEffect", check.render()
    assert "the page has no text input to type into" in check.steps


async def test_probe_fails_a_blank_page_and_a_page_without_the_button_asked_for(env: dict[str, Any]) -> None:
    blank = await _probe_page(env, "<html><body></body></html>")
    assert not blank.passed and blank.problem == "LoadError" and "blank" in blank.message, blank.render()
    plain = "<h1>Greetings</h1>"
    assert (await _probe_page(env, plain)).passed  # nothing to click, nothing asked for
    wanted = await _probe_page(env, plain, AppExpectations(needs_button=True))
    assert not wanted.passed and wanted.problem == "ExpectationFailed", wanted.render()
    assert "no button to click" in wanted.message
