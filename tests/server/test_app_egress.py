"""A sandbox on the cluster reaches its own tenant's hosted app as ``http://<app_id>.apps.internal/``.

The real server runs the ``kata`` backend against the fake cluster (``kata_cluster.kata_server``)
with a run-identity secret, and hosts tenant A's demo app there (a pod behind a loopback ClusterIP).
The cluster's egress proxy is the real TCP listener on 127.0.0.1 with the same secret and the
server as its apps upstream: a request through it is forwarded to the server on the app's internal
host with the verified identity, and the server serves the app only to that tenant. Sent straight
to the server, the identity header counts only when its signature holds, only on that host, and
never for the API. The last test is the whole path: Chromium in a fake Kata browser pod, its egress
through the runner's relay and the listener, opening the app.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sandbox.browser import BrowserPool
from sandbox.config import BROWSER_LIMITS, SandboxSettings
from sandbox.egress_apps import AppsUpstream
from sandbox.egress_identity import proxy_url_with_identity, sign_identity
from sandbox.egress_policy import EgressPolicy
from sandbox.egress_proxy import EgressChannel, EgressProxy
from sandbox.guard import GuardedSandbox
from sandbox.kata import KataSandbox
from tests.sandbox.kata.conftest import IMAGE, kata_settings
from tests.sandbox.kata.fake_kube_thread import FakeKubeThread
from tests.sandbox.kata.fake_network import Egress
from tests.server.kata_cluster import kata_server
from tests.server.support import LiveServer
from tests.support.app_hosts import LoopbackAppHosts

SECRET = "e" * 40
KEY_A = "tenant-a:key-a-" + uuid.uuid4().hex
KEY_B = "tenant-b:key-b-" + uuid.uuid4().hex
APP_SOURCE = (Path(__file__).parent / "apps" / "demo_app.py").read_text()
PROXY_PORT = 3128  # the proxy as the fake's pods see it
WEBSOCKET = """() => new Promise((done) => {
    const ws = new WebSocket(`ws://${location.host}/ws`);
    ws.onopen = () => done("open");
    ws.onerror = () => done("error");
    setTimeout(() => done("timeout"), 15000);
})"""


@dataclasses.dataclass
class Cluster:
    fake: FakeKubeThread
    server: LiveServer
    proxy: EgressChannel  # the cluster's TCP egress proxy, on the fake's loop
    app_id: str
    token: str  # the app's own access token

    def proxy_url(self, token: str | None) -> str:
        assert self.proxy.address is not None
        url = f"http://127.0.0.1:{self.proxy.address[1]}"
        return proxy_url_with_identity(url, token) if token else url


def identity(tenant: str, run: str = "run-1", *, secret: str = SECRET, ttl: int = 300) -> str:
    return sign_identity(secret, tenant=tenant, run=run, expires_at=int(time.time()) + ttl)


def _listen(fake: FakeKubeThread, upstream: str) -> EgressChannel:
    """The listener on the fake's loop, wired as the egress proxy the fake's pods reach."""

    async def start() -> EgressChannel:
        proxy = EgressProxy(EgressPolicy.from_entries([], allow_internet=False, platform_ports=[8000]))
        channel = await proxy.listen_tcp(
            "127.0.0.1", 0, identity_secret=SECRET, apps_upstream=AppsUpstream.from_url(upstream)
        )
        fake.kube.kubelet.network.egress = Egress(proxy, PROXY_PORT, tcp=channel)
        return channel

    return asyncio.run_coroutine_threadsafe(start(), fake.loop).result(30)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    data_dir = tmp_path_factory.mktemp("kata-app-egress")
    with kata_server(data_dir, [KEY_A, KEY_B], EGRESS_IDENTITY_SECRET=SECRET, BROWSER_IMAGE=IMAGE) as (
        fake,
        server,
    ):
        channel = _listen(fake, server.url)
        auth = {"Authorization": f"Bearer {KEY_A.split(':', 1)[1]}"}
        with httpx.Client(base_url=server.url, headers=auth, timeout=60) as owner:
            ws = owner.post("/v1/workspaces", json={"name": "egress-site"}).json()["id"]
            owner.put(f"/v1/workspaces/{ws}/files/app.py", json={"content": APP_SOURCE})
            created = owner.post("/v1/apps", json={"workspace_id": ws, "entry": "app.py"})
            assert created.status_code == 201, created.text
            app = created.json()
            try:
                yield Cluster(fake, server, channel, str(app["id"]), str(app["token"]))
            finally:
                owner.delete(f"/v1/apps/{app['id']}")
                asyncio.run_coroutine_threadsafe(channel.close(), fake.loop).result(30)


def _via_proxy(cluster: Cluster, token: str | None) -> httpx.Client:
    """A real client whose proxy URL carries ``token`` as userinfo, as a Kata pod's HTTP_PROXY does."""
    return httpx.Client(proxy=cluster.proxy_url(token), trust_env=False, timeout=60)


def _decisions(caplog: pytest.LogCaptureFixture, what: str) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.name == "sandbox.egress_policy" and what in r.getMessage()
    ]


def test_a_sandbox_reaches_its_tenants_app_through_the_proxy(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sandbox.egress_policy")
    host = f"{cluster.app_id}.apps.internal"
    forged = identity("tenant-b", secret="f" * 40)
    with _via_proxy(cluster, identity("tenant-a", "run-7")) as client:
        page = client.get(f"http://{host}/hello?x=1", headers={"X-Agentic-Egress-Identity": forged})
        assert page.status_code == 200, page.text
        assert "hello from /hello?x=1</a>" in page.text
        assert f"prefix=/apps/{cluster.app_id} " in page.text  # through the server's app proxy
        assert "identity=-" in page.text and "auth=-" in page.text  # no credential reaches the app
        assert client.post(f"http://{host}:8080/echo", content=b"x" * 5000).text == "got 5000 bytes"
        links = client.get(f"http://{host}/apps/{cluster.app_id}/next")  # ROOT_PATH links work too
        assert links.status_code == 200 and "hello from /next" in links.text
    (line, *_) = _decisions(caplog, f"ALLOW {host}:80")
    upstream = cluster.server.url.removeprefix("http://")
    assert f"-> {upstream} (tenant's hosted app, via the server) tenant=tenant-a run=run-7" in line


def test_another_tenants_identity_gets_what_an_unknown_app_gets(cluster: Cluster) -> None:
    with _via_proxy(cluster, identity("tenant-b")) as client:
        other = client.get(f"http://{cluster.app_id}.apps.internal/hello")
    with _via_proxy(cluster, identity("tenant-a")) as client:
        unknown = client.get("http://nosuchapp.apps.internal/hello")
    assert other.status_code == unknown.status_code == 404
    assert other.text == unknown.text == "no such app\n"


def test_without_an_identity_an_app_stays_refused(cluster: Cluster) -> None:
    with _via_proxy(cluster, None) as client:
        refused = client.get(f"http://{cluster.app_id}.apps.internal/hello")
    assert refused.status_code == 407 and "Proxy-Authorization missing" in refused.text
    with _via_proxy(cluster, identity("tenant-a", secret="f" * 40)) as client:
        forged = client.get(f"http://{cluster.app_id}.apps.internal/hello")
    assert forged.status_code == 407 and "bad signature" in forged.text


def test_the_server_trusts_the_identity_only_when_signed_and_only_for_apps(cluster: Cluster) -> None:
    """Sent straight to the server (not through the proxy), as anything that reaches its port could."""
    internal = {"Host": f"{cluster.app_id}.apps.internal"}
    header = "X-Agentic-Egress-Identity"
    with httpx.Client(base_url=cluster.server.url, timeout=60, trust_env=False) as direct:
        for token, status in (
            (identity("tenant-a", secret="f" * 40), 401),  # another secret: forged
            (identity("tenant-a")[:-2] + "AA", 401),  # altered signature
            (identity("tenant-a", ttl=-1), 401),  # expired
            ("garbage", 401),
            (identity("tenant-b"), 404),  # signed, another tenant: as an unknown app
            (identity("tenant-a"), 200),
        ):
            answer = direct.get("/hello", headers={**internal, header: token})
            assert answer.status_code == status, (token, answer.text)
        assert direct.get("/hello", headers=internal).status_code == 401  # none
        two = [("Host", internal["Host"]), (header, identity("tenant-a")), (header, identity("tenant-a"))]
        assert direct.get("/hello", headers=two).status_code == 401
        # That host is the app's alone: the API's paths go to the app, never to the API.
        api_path = direct.get("/v1/apps", headers={**internal, header: identity("tenant-a")})
        assert api_path.status_code == 200 and "hello from /v1/apps" in api_path.text
        # Elsewhere the header is no credential: not for the API, not on the app's public hosts.
        assert direct.get("/v1/apps", headers={header: identity("tenant-a")}).status_code == 401
        on_api = direct.get(f"/apps/{cluster.app_id}/hello", headers={header: identity("tenant-a")})
        assert on_api.status_code == 307  # a browser on the API's origin: sent to the app's origin
    origin = cluster.server.url.replace("127.0.0.1", f"{cluster.app_id}.apps.localhost")
    with httpx.Client(base_url=origin, timeout=60, transport=LoopbackAppHosts()) as public:
        path = f"/apps/{cluster.app_id}/hello"
        assert public.get(path, headers={header: identity("tenant-a")}).status_code == 401
        assert public.get(path, headers={"X-App-Token": cluster.token}).status_code == 200


@pytest.mark.skipif(not os.access("/usr/bin/chromium", os.X_OK), reason="Chromium not installed")
def test_chromium_in_a_kata_browser_pod_opens_its_tenants_app(
    cluster: Cluster, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The case this route exists for: the Code Agent's browser check of an app hosted on the
    cluster. Chromium in a browser pod of the fake (bubblewrap, its own network namespace) goes
    through the runner's egress relay, which adds the session's identity, to the listener, which
    forwards to the server, which dials the app's Service."""
    caplog.set_level(logging.INFO, logger="sandbox.egress_policy")
    url = f"http://{cluster.app_id}.apps.internal/hello"
    sandbox_settings = SandboxSettings(
        browser_limits=dataclasses.replace(BROWSER_LIMITS, wall_seconds=90), browser_max_sessions=1
    )
    settings = kata_settings(
        cluster.fake.kubeconfig,
        egress_proxy_url=f"http://127.0.0.1:{PROXY_PORT}",
        egress_identity_secret=SECRET,
        browser_image=IMAGE,
        start_timeout_s=30,
    )

    async def browse(tenant: str) -> tuple[str, str]:
        """The page's text, and how a WebSocket to the app ended."""
        pool = BrowserPool(sandbox_settings)
        async with await KataSandbox.open(settings) as box:
            guarded = GuardedSandbox.from_settings(box, sandbox_settings).for_owner(tenant)
            try:
                async with pool.session(guarded) as browser:
                    page = await browser.new_page()
                    await page.goto(url, timeout=60_000)
                    return await page.inner_text("body"), await page.evaluate(WEBSOCKET)
            finally:
                await pool.close()

    text, websocket = asyncio.run(browse("tenant-a"))
    assert "hello from /hello" in text
    lines = _decisions(caplog, f"ALLOW {cluster.app_id}.apps.internal:80")
    assert any("tenant=tenant-a run=browser-" in line for line in lines), lines
    # Chromium opens a WebSocket through its proxy with CONNECT, which this route refuses (README).
    assert websocket == "error" and _decisions(caplog, "CONNECT to a hosted app is not routed")
    assert asyncio.run(browse("tenant-b"))[0].strip() == "no such app"
