"""The browser as a Kata pod, against the fake API: real Chromium in the fake kubelet, Playwright over CDP.

The fake kubelet runs the browser pod's command (the runner in service mode starting Debian's
Chromium) in bubblewrap with its own network namespace; its pod IP is a loopback address where the
pod's port relays to Chromium's DevTools port, and its only way out is the platform's real egress
proxy (allow-listing 127.0.0.2, where the test serves its page). The session is reached the way
``tools.browser`` reaches any browser: ``BrowserPool.session`` on the guarded sandbox.
"""

from __future__ import annotations

import asyncio
import dataclasses
import http.server
import os
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from langgraph.prebuilt import ToolRuntime

from sandbox.browser import BrowserPool, hosts_browsers
from sandbox.config import BROWSER_LIMITS, SandboxSettings, egress_policy
from sandbox.egress_proxy import EgressProxy
from sandbox.errors import SandboxBusyError, SandboxStartError
from sandbox.guard import GuardedSandbox
from sandbox.kata import KataSandbox
from sandbox.kata.manifests import RELAY_PORT, browser_pod
from sandbox.kata.naming import ROLE_LABEL, TENANT_LABEL, TTL_LABEL, object_labels
from tests.sandbox.kata.conftest import IMAGE, kata_settings
from tests.sandbox.kata.fake_kube import FakeKube
from tests.sandbox.kata.fake_network import Egress
from tools.browser import browse

pytestmark = pytest.mark.skipif(
    not os.access("/usr/bin/chromium", os.X_OK), reason="Chromium not installed (apt-get install chromium)"
)

ALLOWED = "127.0.0.2"
PROXY_PORT = 3128  # the egress proxy as pods see it (the fake wires 127.0.0.1:3128 inside each pod)


class _Page(http.server.BaseHTTPRequestHandler):
    seen: list[str] = []

    def do_GET(self) -> None:
        _Page.seen.append(self.path)
        body = (
            b"<html><head><title>Pod page</title></head><body><p id='t'>Hello from the test</p></body></html>"
        )
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer((ALLOWED, 0), _Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://{ALLOWED}:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _settings(wall_seconds: float = 60.0) -> SandboxSettings:
    limits = dataclasses.replace(BROWSER_LIMITS, wall_seconds=wall_seconds)
    return SandboxSettings(egress_allow=[ALLOWED], browser_limits=limits, browser_max_sessions=1)


@pytest.fixture
async def kata_box(fake_kube: FakeKube, tmp_path: Path, needs_bwrap: None) -> AsyncIterator[KataSandbox]:
    fake_kube.kubelet.network.egress = Egress(EgressProxy(egress_policy(_settings())), PROXY_PORT)
    settings = kata_settings(
        fake_kube.kubeconfig(tmp_path / "kc"),
        browser_image=IMAGE,
        egress_proxy_url=f"http://127.0.0.1:{PROXY_PORT}",
        start_timeout_s=30,
    )
    async with await KataSandbox.open(settings) as box:
        yield box


def _browser_pods(kube: FakeKube) -> list[dict[str, Any]]:
    return [o for _, res, _, kind, o in kube.events if res == "pods" and kind == "ADDED"]


async def _no_chromium_left() -> bool:
    """No Chromium of a browser pod remains (the kernel ends a pod's processes with its pid 1)."""
    for _ in range(50):
        if not _chromiums():
            return True
        await asyncio.sleep(0.1)
    return False


def _chromiums() -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if b"--remote-debugging-port=9222" in Path(f"/proc/{entry}/cmdline").read_bytes():
                    found.append(int(entry))
            except OSError:
                pass
    return found


async def test_a_session_is_a_hardened_pod_reached_over_cdp(
    kata_box: KataSandbox, fake_kube: FakeKube, site: str
) -> None:
    settings = _settings()
    guarded = GuardedSandbox.from_settings(kata_box, settings).for_owner("acme")
    assert hosts_browsers(guarded) and not hosts_browsers(object())
    pool = BrowserPool(settings, wait_s=0.5)
    try:
        async with pool.session(guarded) as browser:
            assert guarded.admission.stats().granted_memory_mb == BROWSER_LIMITS.memory_mb
            # Chromium opened no tab of its own (a hanging first tab held connect_over_cdp before)
            assert [len(context.pages) for context in browser.contexts] == [0]
            page = await browser.new_page()
            await page.goto(f"{site}/hello", timeout=30_000)
            assert await page.inner_text("#t") == "Hello from the test"
            refused = await page.goto("http://10.1.2.3/", timeout=30_000)  # decided by the proxy, not sent
            assert refused is not None and refused.headers.get("x-agentic-egress") == "denied"
            with pytest.raises(SandboxBusyError):  # one session at a time here
                async with pool.session(guarded):
                    pass
            (pod,) = _browser_pods(fake_kube)
            assert fake_kube.stored("pods")  # the pod runs while the session is open
        assert "/hello" in _Page.seen  # it reached the page only through the egress proxy
    finally:
        await pool.close()
    labels, spec = pod["metadata"]["labels"], pod["spec"]
    assert labels[ROLE_LABEL] == "browser" and labels[TENANT_LABEL] == "acme" and TTL_LABEL in labels
    assert spec["activeDeadlineSeconds"] == 60 + kata_box.settings.deadline_grace_s
    assert spec["automountServiceAccountToken"] is False and spec["runtimeClassName"] == "kata-qemu"
    (container,) = spec["containers"]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] and security["capabilities"] == {"drop": ["ALL"]}
    assert security["runAsNonRoot"] and security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["resources"]["requests"] == container["resources"]["limits"]
    assert container["resources"]["limits"]["memory"] == f"{BROWSER_LIMITS.memory_mb}Mi"
    assert container["ports"] == [{"name": "cdp", "containerPort": RELAY_PORT, "protocol": "TCP"}]
    # Afterwards: pod and ConfigMap deleted (the fixture checks the store too), Chromium gone, grant back.
    assert fake_kube.stored("pods") == [] and fake_kube.stored("configmaps") == []
    assert await _no_chromium_left()
    assert guarded.admission.stats().granted_memory_mb == 0


async def test_the_browse_tool_uses_the_backends_browser(
    kata_box: KataSandbox, fake_kube: FakeKube, site: str
) -> None:
    settings = _settings()
    pool = BrowserPool(settings)
    guarded = GuardedSandbox.from_settings(kata_box, settings).for_owner("acme")
    runtime = ToolRuntime(
        state={"files": {}},
        context={"sandbox": guarded, "browsers": pool},
        config={},
        stream_writer=lambda _: None,
        tool_call_id="",
        store=None,
    )
    try:
        answer = await browse.coroutine(url=f"{site}/tool", runtime=runtime)  # type: ignore[attr-defined]
    finally:
        await pool.close()
    assert "Hello from the test" in answer and "Pod page" in answer, answer
    assert len(_browser_pods(fake_kube)) == 1 and fake_kube.stored("pods") == []


async def test_a_session_ends_at_its_wall_limit(
    kata_box: KataSandbox, fake_kube: FakeKube, site: str
) -> None:
    settings = _settings(wall_seconds=6.0)
    pool = BrowserPool(settings)
    guarded = GuardedSandbox.from_settings(kata_box, settings).for_owner("acme")
    try:
        async with pool.session(guarded) as browser:
            page = await browser.new_page()
            await page.goto(f"{site}/", timeout=30_000)
            for _ in range(100):  # the pod is deleted 6 s after it was made; the connection drops
                if not browser.is_connected():
                    break
                await asyncio.sleep(0.1)
            assert not browser.is_connected()
            assert fake_kube.stored("pods") == []
    finally:
        await pool.close()
    assert await _no_chromium_left()


async def test_without_a_browser_image_the_session_is_refused(fake_kube: FakeKube, tmp_path: Path) -> None:
    settings = kata_settings(fake_kube.kubeconfig(tmp_path / "kc"), egress_proxy_url="http://127.0.0.1:3128")
    async with await KataSandbox.open(settings) as box:
        pool = BrowserPool(_settings())
        with pytest.raises(SandboxStartError, match="AGENTIC_SANDBOX_KATA_BROWSER_IMAGE"):
            async with pool.session(GuardedSandbox.from_settings(box, _settings())):
                pass
        await pool.close()
    assert fake_kube.requests == []


async def test_the_reaper_removes_an_orphaned_browser_pod(kata_box: KataSandbox, fake_kube: FakeKube) -> None:
    # What a server that died mid-session leaves: a browser pod past its expiry label.
    labels = object_labels({"tenant": "acme"}, role="browser", ttl_s=-5, network=True, run="orphan")
    body = browser_pod(
        "agentic-browser-orphan",
        "agentic-sandboxes",
        labels,
        kata_box.settings,
        image=IMAGE,
        limits=BROWSER_LIMITS,
    )
    fake_kube.default_scenario.mode = "script"
    fake_kube.default_scenario.hold = True
    await kata_box.api.core.create_namespaced_pod("agentic-sandboxes", body)  # type: ignore[arg-type]
    assert fake_kube.stored("pods")
    assert await kata_box.reap() == 1
    assert fake_kube.stored("pods") == []
