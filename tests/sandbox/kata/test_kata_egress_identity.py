"""Run identities on the Kata backend, through the fake API with real pods: each pod with network gets
a proxy URL carrying its signed identity only when the secret is set, and the cluster's TCP egress
proxy (the real listener on 127.0.0.1, reached from the fake pod as a Service would be) logs its
decisions with the tenant and run it names. Browser pods, whose Chromium cannot carry credentials,
go through the runner's egress relay (real Chromium).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import http.server
import io
import json
import logging
import os
import socket
import sys
import tarfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pydantic
import pytest

import sandbox.kata.runner
from sandbox.base import Limits, RunRequest
from sandbox.browser import BrowserPool
from sandbox.config import BROWSER_LIMITS, SandboxSettings
from sandbox.egress_identity import (
    RunIdentity,
    proxy_url_with_identity,
    sign_identity,
    token_from_proxy_authorization,
    verify_identity,
)
from sandbox.egress_policy import EgressPolicy
from sandbox.egress_proxy import EgressChannel, EgressProxy
from sandbox.guard import GuardedSandbox
from sandbox.kata import KataSandbox, KataSettings
from sandbox.kata.job import EGRESS_RELAY_PORT, egress_relay
from tests.sandbox.kata.conftest import IMAGE, kata_settings
from tests.sandbox.kata.fake_kube import FakeKube
from tests.sandbox.kata.fake_network import Egress

SECRET = "q" * 40
ALLOWED = "127.0.0.2"
PROXY_PORT = 3128  # the proxy as pods see it (the fake wires 127.0.0.1:3128 inside each pod)
FETCH = """
import os, urllib.error, urllib.request
try:
    with urllib.request.urlopen(os.environ['TARGET'], timeout=20) as r:
        print(r.status, r.read().decode())
except urllib.error.HTTPError as e:
    print(e.code, e.read().decode().strip())
"""


class _Page(http.server.BaseHTTPRequestHandler):
    seen: list[dict[str, str]] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        _Page.seen.append({k.lower(): v for k, v in self.headers.items()})
        body = b"<html><head><title>Pod page</title></head><body><p id='t'>reached</p></body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def site() -> Iterator[str]:
    _Page.seen = []
    server = http.server.ThreadingHTTPServer((ALLOWED, 0), _Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://{ALLOWED}:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
async def listener(fake_kube: FakeKube) -> AsyncIterator[EgressChannel]:
    """The cluster's proxy requiring identities; the fake's pods reach it over TCP, unlabelled."""
    proxy = EgressProxy(EgressPolicy.from_entries([ALLOWED], allow_internet=False, platform_ports=[8000]))
    channel = await proxy.listen_tcp("127.0.0.1", 0, identity_secret=SECRET)
    fake_kube.kubelet.network.egress = Egress(proxy, PROXY_PORT, tcp=channel)
    yield channel
    await channel.close()


def _settings(fake_kube: FakeKube, tmp_path: Path, **overrides: object) -> KataSettings:
    return kata_settings(
        fake_kube.kubeconfig(tmp_path / "kc"), egress_proxy_url=f"http://127.0.0.1:{PROXY_PORT}", **overrides
    )


def _job(fake_kube: FakeKube) -> dict[str, Any]:
    """The job.json of the (one) ConfigMap the backend created."""
    (configmap,) = [o for _, r, _, k, o in fake_kube.events if r == "configmaps" and k == "ADDED"]
    data = configmap["binaryData"]
    assert SECRET not in json.dumps(data) and base64.b64encode(SECRET.encode()).decode() not in json.dumps(
        data
    )
    return json.loads(base64.b64decode(data["job.json"]))  # type: ignore[no-any-return]


def _identity(url: str) -> RunIdentity:
    password = urlsplit(url).password
    assert password is not None, url
    return verify_identity(SECRET, password)


def _decisions(caplog: pytest.LogCaptureFixture, what: str) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.name == "sandbox.egress_policy" and what in r.getMessage()
    ]


async def test_a_run_reaches_the_proxy_with_its_signed_identity(
    fake_kube: FakeKube,
    tmp_path: Path,
    listener: EgressChannel,
    site: str,
    caplog: pytest.LogCaptureFixture,
    needs_bwrap: None,
) -> None:
    caplog.set_level(logging.INFO, logger="sandbox.egress_policy")
    request = RunRequest(
        files={"main.py": FETCH},
        language="python",
        entry="main.py",
        network=True,
        env={"TARGET": f"{site}/run"},
        labels={"tenant": "acme", "run": "run-77"},
        limits=Limits(wall_seconds=20),
    )
    before = time.time()
    async with await KataSandbox.open(_settings(fake_kube, tmp_path, egress_identity_secret=SECRET)) as box:
        result = await box.run(request)
    assert result.stdout.startswith("200 "), (result.stdout, result.stderr)
    env = _job(fake_kube)["env"]
    identity = _identity(env["HTTP_PROXY"])
    assert (identity.tenant, identity.run) == ("acme", "run-77")
    # Valid while the pod can live: start timeout + wall + deadline grace (10 + 20 + 30 s), no longer.
    assert before + 60 <= identity.expires_at <= time.time() + 61
    assert {env[name] for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")} == {
        env["HTTP_PROXY"]
    }
    (line,) = _decisions(caplog, f"ALLOW {ALLOWED}")
    assert "tenant=acme run=run-77 client=127.0.0.1" in line
    assert "proxy-authorization" not in _Page.seen[0]


async def test_without_the_secret_the_pod_has_no_identity_and_the_proxy_refuses_it(
    fake_kube: FakeKube,
    tmp_path: Path,
    listener: EgressChannel,
    site: str,
    caplog: pytest.LogCaptureFixture,
    needs_bwrap: None,
) -> None:
    """What a server without the proxy's secret gets (a mismatch the README warns about): 407s."""
    caplog.set_level(logging.INFO, logger="sandbox.egress_policy")
    request = RunRequest(
        files={"main.py": FETCH},
        language="python",
        entry="main.py",
        network=True,
        env={"TARGET": f"{site}/x"},
    )
    async with await KataSandbox.open(_settings(fake_kube, tmp_path)) as box:
        result = await box.run(request)
    assert result.stdout.startswith("407 egress refused: run identity refused"), result.stdout
    assert _job(fake_kube)["env"]["HTTP_PROXY"] == f"http://127.0.0.1:{PROXY_PORT}"
    assert _Page.seen == [] and _decisions(caplog, "Proxy-Authorization missing")


async def test_a_hosted_app_gets_an_identity_for_its_lifetime(
    fake_kube: FakeKube, tmp_path: Path, listener: EgressChannel
) -> None:
    settings = _settings(fake_kube, tmp_path, egress_identity_secret=SECRET, app_ttl_s=600)
    fake_kube.default_scenario.mode = "script"
    fake_kube.default_scenario.hold = True
    request = RunRequest(
        files={"main.py": "pass"}, language="python", entry="main.py", labels={"tenant": "t2"}
    )
    async with await KataSandbox.open(settings) as box:
        handle = await box.start_service(request, port=8000)
        try:
            identity = _identity(_job(fake_kube)["env"]["HTTPS_PROXY"])
        finally:
            await handle.terminate()
    assert identity.tenant == "t2" and identity.run.startswith("agentic-app-")
    assert identity.expires_at <= time.time() + 600 + 10 + 30 + 1


def test_the_backend_settings_take_one_secret() -> None:
    assert KataSettings(egress_identity_secret="").egress_identity_secret is None  # type: ignore[arg-type]
    with pytest.raises(pydantic.ValidationError, match="at least 32"):
        KataSettings(egress_identity_secret="short")  # type: ignore[arg-type]
    assert SECRET not in repr(KataSettings(egress_identity_secret=SECRET))  # type: ignore[arg-type]


@pytest.mark.skipif(not os.access("/usr/bin/chromium", os.X_OK), reason="Chromium not installed")
async def test_a_browser_pod_reaches_the_proxy_through_the_runners_relay(
    fake_kube: FakeKube,
    tmp_path: Path,
    listener: EgressChannel,
    site: str,
    caplog: pytest.LogCaptureFixture,
    needs_bwrap: None,
) -> None:
    """Chromium's --proxy-server is the runner's relay, which adds the session's identity; callers
    keep an ordinary Playwright Browser and every decision names the tenant and the session."""
    caplog.set_level(logging.INFO, logger="sandbox.egress_policy")
    sandbox_settings = SandboxSettings(
        egress_allow=[ALLOWED],
        browser_limits=dataclasses.replace(BROWSER_LIMITS, wall_seconds=60),
        browser_max_sessions=1,
    )
    settings = _settings(
        fake_kube, tmp_path, egress_identity_secret=SECRET, browser_image=IMAGE, start_timeout_s=30
    )
    pool = BrowserPool(sandbox_settings)
    async with await KataSandbox.open(settings) as box:
        guarded = GuardedSandbox.from_settings(box, sandbox_settings).for_owner("acme")
        try:
            async with pool.session(guarded) as browser:
                page = await browser.new_page()
                await page.goto(f"{site}/browsed", timeout=30_000)
                assert await page.inner_text("#t") == "reached"
        finally:
            await pool.close()
    job = _job(fake_kube)
    assert f"--proxy-server=http://127.0.0.1:{EGRESS_RELAY_PORT}" in job["argv"]
    relay = job["egress_relay"]
    assert relay["port"] == EGRESS_RELAY_PORT and relay["proxy"] == ["127.0.0.1", PROXY_PORT]
    identity = verify_identity(SECRET, token_from_proxy_authorization(relay["authorization"]))
    assert identity.tenant == "acme" and identity.run.startswith("browser-")
    lines = _decisions(caplog, f"ALLOW {ALLOWED}")
    assert lines and all(f"tenant=acme run={identity.run} client=127.0.0.1" in line for line in lines)
    assert not _decisions(caplog, "run identity refused")  # nothing of the pod went out unsigned
    assert all("proxy-authorization" not in seen for seen in _Page.seen)


RELAYED = """
import socket, sys
port, head = int(sys.argv[1]), sys.argv[2]
with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
    s.sendall(head.encode())
    data = b""
    while chunk := s.recv(65536):
        data += chunk
print(data.decode().splitlines()[0], data.decode().splitlines()[-1])  # status line, body
"""


async def test_the_runners_relay_replaces_a_credential_the_program_sent(
    tmp_path: Path, site: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The in-pod runner for real (a local process): its relay drops the program's own
    Proxy-Authorization (a forged one, here) and sends the run's; the proxy sees only that one."""
    caplog.set_level(logging.INFO, logger="sandbox.egress_policy")
    proxy = EgressProxy(EgressPolicy.from_entries([ALLOWED], allow_internet=False, platform_ports=[8000]))
    channel = await proxy.listen_tcp("127.0.0.1", 0, identity_secret=SECRET)
    assert channel.address is not None
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        relay_port = probe.getsockname()[1]
    token = sign_identity(SECRET, tenant="acme", run="run-relay", expires_at=int(time.time()) + 60)
    relay = egress_relay(proxy_url_with_identity(f"http://127.0.0.1:{channel.address[1]}", token))
    assert relay is not None
    forged = sign_identity("f" * 40, tenant="globex", run="other", expires_at=int(time.time()) + 60)
    head = f"GET {site}/relayed HTTP/1.1\r\nHost: x\r\nProxy-Authorization: Basic {forged}\r\n\r\n"
    job = {
        "argv": [sys.executable, "-S", "main.py", str(relay_port), head],
        "env": {"PATH": "/usr/bin:/bin"},
        "wall_seconds": 20,
        "cpu_seconds": 20,
        "pids": 64,
        "file_bytes": 1 << 20,
        "output_bytes": 100_000,
        "egress_relay": {**relay, "port": relay_port},
    }
    files = io.BytesIO()
    with tarfile.open(fileobj=files, mode="w:gz") as tar:
        info = tarfile.TarInfo("main.py")
        info.size = len(RELAYED.encode())
        tar.addfile(info, io.BytesIO(RELAYED.encode()))
    runner = Path(sandbox.kata.runner.__file__)
    payload = sandbox.kata.runner.write_blobs(json.dumps(job).encode(), files.getvalue(), b"")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-I",
        "-S",
        str(runner),
        "--stdin",
        "--scratch",
        str(tmp_path),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(payload), 60)
    await channel.close()
    assert err == b"", err
    printed = b"".join(base64.b64decode(line[3:]) for line in out.splitlines() if line.startswith(b"@o "))
    assert printed.startswith(b"HTTP/1.0 200 OK ") and b"reached" in printed, out
    (line,) = _decisions(caplog, f"ALLOW {ALLOWED}")
    assert "tenant=acme run=run-relay " in line and "globex" not in line
    assert "proxy-authorization" not in _Page.seen[0]
