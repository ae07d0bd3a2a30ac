"""Preflight, library sets, the reaper, hosted apps and agent-sandbox warm pools, against the fake API."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from kubernetes.aio.client import V1Service, V1ServicePort, V1ServiceSpec

from sandbox.base import Limits, RunRequest
from sandbox.errors import InvalidRunRequestError, SandboxStartError, SandboxUnavailableError
from sandbox.kata import KataSandbox, KataServiceHandle, KataSettings
from sandbox.kata.apps import service_url
from sandbox.kata.manifests import RELAY_PORT
from sandbox.kata.naming import MANAGED_BY, TTL_LABEL
from sandbox.service import ServiceEndpoint
from tests.sandbox.kata.conftest import IMAGE, kata_settings
from tests.sandbox.kata.fake_kube import FakeKube
from tests.sandbox.kata.fake_kubelet import Scenario

AGENT_SANDBOX_CRDS = {
    "sandboxes.agents.x-k8s.io",
    "sandboxclaims.extensions.agents.x-k8s.io",
    "sandboxtemplates.extensions.agents.x-k8s.io",
    "sandboxwarmpools.extensions.agents.x-k8s.io",
}


def py(code: str, **kwargs: object) -> RunRequest:
    return RunRequest(files={"main.py": code}, language="python", entry="main.py", **kwargs)  # type: ignore[arg-type]


# --- open, preflight, library sets ----------------------------------------------------------------


async def test_open_without_a_cluster_config_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(SandboxUnavailableError, match="KUBECONFIG"):
        await KataSandbox.open(KataSettings(kubeconfig=tmp_path / "missing"))


async def test_library_sets_are_the_configured_images(fake_kube: FakeKube, tmp_path: Path) -> None:
    images = {"base": IMAGE, "datascience": "registry.invalid/ds@sha256:" + "1" * 64}
    async with await KataSandbox.open(
        kata_settings(fake_kube.kubeconfig(tmp_path / "kc"), images=images)
    ) as box:
        assert await box.library_sets() == {"base", "datascience"}
    assert fake_kube.requests == []  # opening and listing sets cost no API call


async def test_preflight_on_a_ready_cluster(kata: KataSandbox) -> None:
    checks = await kata.preflight()
    assert [c.name for c in checks] == [
        "kata.api",
        "kata.namespace",
        "kata.runtime_class",
        "kata.permissions",
        "kata.images",
    ]
    assert all(c.ok for c in checks), checks
    assert "v1.33.0-fake" in checks[0].detail and "kata-qemu" in checks[2].detail


async def test_preflight_names_each_problem_with_a_fix(fake_kube: FakeKube, tmp_path: Path) -> None:
    fake_kube.namespaces.discard("agentic-sandboxes")
    fake_kube.runtime_classes.discard("kata-fc")
    fake_kube.denied |= {("create", "pods"), ("get", "pods/log")}
    settings = kata_settings(
        fake_kube.kubeconfig(tmp_path / "kc"),
        runtime_class="kata-fc",
        images={"base": "python:3.11-slim"},
        use_agent_sandbox=True,
    )
    async with await KataSandbox.open(settings) as box:
        checks = {c.name: c for c in await box.preflight()}
    assert checks["kata.api"].ok
    assert not checks["kata.namespace"].ok and "infra/" in checks["kata.namespace"].fix
    assert not checks["kata.runtime_class"].ok and "kata-deploy" in checks["kata.runtime_class"].fix
    permissions = checks["kata.permissions"]
    assert not permissions.ok and "create pods" in permissions.detail and "get pods/log" in permissions.detail
    assert not checks["kata.agent_sandbox"].ok and "sandboxclaims" in checks["kata.agent_sandbox"].detail
    images = checks["kata.images"]
    assert images.ok and "not pinned by digest: base" in images.detail and "@sha256" in images.fix


async def test_preflight_when_the_api_is_down(fake_kube: FakeKube, tmp_path: Path) -> None:
    fake_kube.fail("GET", r"^/version/?$", 503, times=5)
    async with await KataSandbox.open(kata_settings(fake_kube.kubeconfig(tmp_path / "kc"))) as box:
        checks = await box.preflight()
    assert [c.name for c in checks] == ["kata.api", "kata.images"]
    assert not checks[0].ok and "503" in checks[0].detail and checks[0].fix


# --- reaper -----------------------------------------------------------------------------------------


async def test_reaper_deletes_expired_leftovers_only(kata: KataSandbox, fake_kube: FakeKube) -> None:
    past, future = str(int(time.time()) - 10), str(int(time.time()) + 3600)
    ours = {MANAGED_BY[0]: MANAGED_BY[1]}

    def cm(name: str, labels: dict[str, str]) -> dict[str, object]:
        return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels}}

    await fake_kube.put("configmaps", "agentic-sandboxes", cm("expired", {**ours, TTL_LABEL: past}))
    await fake_kube.put("configmaps", "agentic-sandboxes", cm("fresh", {**ours, TTL_LABEL: future}))
    await fake_kube.put("configmaps", "agentic-sandboxes", cm("no-ttl", ours))
    await fake_kube.put(
        "services",
        "agentic-sandboxes",
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "old-app", "labels": {**ours, TTL_LABEL: past}},
        },
    )
    await fake_kube.put("configmaps", "agentic-sandboxes", cm("not-ours", {TTL_LABEL: past}))
    assert await kata.reap() == 2
    left = {name for _, _, name in fake_kube.stored("configmaps")} | {
        n for _, _, n in fake_kube.stored("services")
    }
    assert left == {"fresh", "no-ttl", "not-ours"}
    for name in left:
        await fake_kube.remove("configmaps", "agentic-sandboxes", name)


async def test_reaper_falls_back_to_namespaces_when_cluster_lists_are_forbidden(
    kata: KataSandbox, fake_kube: FakeKube
) -> None:
    labels = {MANAGED_BY[0]: MANAGED_BY[1], TTL_LABEL: str(int(time.time()) - 1)}
    await fake_kube.put(
        "pods",
        "agentic-sandboxes",
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "stale", "labels": labels}},
    )
    fake_kube.fail("GET", r"^/api/v1/pods$", 403)
    assert await kata.reap() == 1
    assert ("GET", "/api/v1/namespaces/agentic-sandboxes/pods") in fake_kube.requests


async def test_background_reaper_runs(fake_kube: FakeKube, tmp_path: Path) -> None:
    labels = {MANAGED_BY[0]: MANAGED_BY[1], TTL_LABEL: str(int(time.time()) - 1)}
    await fake_kube.put(
        "configmaps",
        "agentic-sandboxes",
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "stale", "labels": labels}},
    )
    settings = kata_settings(fake_kube.kubeconfig(tmp_path / "kc"), reap_interval_s=0.05)
    async with await KataSandbox.open(settings):
        for _ in range(100):
            if not fake_kube.stored("configmaps"):
                break
            await asyncio.sleep(0.02)
    assert fake_kube.stored("configmaps") == []


# --- hosted apps ---------------------------------------------------------------------------------


APP = """
import http.server, os
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b'hello')
print('serving on', os.environ['PORT'], flush=True)
http.server.HTTPServer(('127.0.0.1', int(os.environ['PORT'])), Handler).serve_forever()
"""


async def test_app_becomes_deployment_and_service_reached_through_the_platform(
    kata: KataSandbox, fake_kube: FakeKube, needs_bwrap: None, needs_service_ports: None
) -> None:
    request = py(
        APP, env={"PORT": "8000"}, labels={"tenant": "acme", "app": "app-7"}, limits=Limits(wall_seconds=5)
    )
    handle = await kata.start_service(request, port=8000)
    try:
        assert isinstance(handle, KataServiceHandle) and handle.socket_path is None
        service = fake_kube.objects[("services", "agentic-sandboxes", "agentic-app-app-7")]
        cluster_ip = service["spec"]["clusterIP"]  # allocated by the API at creation, as on a cluster
        assert handle.url == f"http://{cluster_ip}:80"
        assert handle.endpoint == ServiceEndpoint(url=handle.url)  # what the server's app proxy dials
        assert handle.ingress_path is None  # no Ingress past the platform's token check by default
        assert await handle.wait_ready(10)
        reader, writer = await asyncio.open_connection(cluster_ip, 80)  # the Service, to the pod's relay
        writer.write(b"GET / HTTP/1.0\r\n\r\n")
        assert (await asyncio.wait_for(reader.read(), 10)).endswith(b"hello")
        writer.close()
        for _ in range(100):
            if "serving on 8000" in handle.logs():
                break
            await asyncio.sleep(0.05)
        assert "serving on 8000" in handle.logs()
        kinds = {res for res, _, _ in fake_kube.stored()}
        assert {"configmaps", "deployments", "services", "pods"} <= kinds
        assert "ingresses" not in kinds
        (deployment,) = [o for (r, _, _), o in fake_kube.objects.items() if r == "deployments"]
        assert TTL_LABEL in deployment["metadata"]["labels"]
        assert (
            deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["tcpSocket"]["port"]
            == RELAY_PORT
        )
    finally:
        await handle.terminate()
        await handle.terminate()  # idempotent
    assert [k for k in fake_kube.stored() if k[0] != "namespaces"] == []


def test_the_app_url_is_the_cluster_ip_else_the_dns_name() -> None:
    def service(cluster_ip: str | None) -> V1Service:
        return V1Service(spec=V1ServiceSpec(cluster_ip=cluster_ip, ports=[V1ServicePort(port=80)]))

    assert service_url(service("10.96.4.7"), "a", "ns") == "http://10.96.4.7:80"
    assert service_url(service("fd00:10:96::7"), "a", "ns") == "http://[fd00:10:96::7]:80"
    for headless in ("None", None, "", "not-an-ip"):
        assert service_url(service(headless), "a", "ns") == "http://a.ns.svc.cluster.local:80"


async def test_an_app_is_ready_only_when_it_answers_through_the_service(
    kata: KataSandbox, fake_kube: FakeKube, needs_bwrap: None, needs_service_ports: None
) -> None:
    """The pod is Ready once the runner's relay listens, before the app does: not enough."""
    silent = "import time\nprint('not listening', flush=True)\ntime.sleep(60)"
    handle = await kata.start_service(py(silent, labels={"app": "app-9"}), port=8000)
    try:
        assert not await handle.wait_ready(3)
        (deployment,) = [o for (r, _, _), o in fake_kube.objects.items() if r == "deployments"]
        assert deployment["status"]["readyReplicas"] == 1  # the cluster alone would call it ready
    finally:
        await handle.terminate()


async def test_app_ingress_only_when_the_operator_asks(
    fake_kube: FakeKube, tmp_path: Path, needs_bwrap: None, needs_service_ports: None
) -> None:
    settings = kata_settings(fake_kube.kubeconfig(tmp_path / "kubeconfig"), app_ingress=True)
    async with await KataSandbox.open(settings) as box:
        handle = await box.start_service(py(APP, labels={"app": "app-8"}), port=8000)
        try:
            assert handle.ingress_path == "/apps/app-8/"
            assert "ingresses" in {res for res, _, _ in fake_kube.stored()}
        finally:
            await handle.terminate()
    assert [k for k in fake_kube.stored() if k[0] != "namespaces"] == []


async def test_app_refused_by_the_api_leaves_nothing(kata: KataSandbox, fake_kube: FakeKube) -> None:
    fake_kube.fail("POST", r"/services$", 403)
    with pytest.raises(SandboxStartError, match="403"):
        await kata.start_service(py(APP, labels={"app": "a1"}), port=8000)
    assert fake_kube.stored() == []


async def test_app_may_not_take_the_relay_port(kata: KataSandbox) -> None:
    with pytest.raises(InvalidRunRequestError, match=str(RELAY_PORT)):
        await kata.start_service(py(APP), port=RELAY_PORT)


# --- agent-sandbox warm pools -----------------------------------------------------------------------


@pytest.fixture
async def pooled(fake_kube: FakeKube, tmp_path: Path) -> KataSandbox:
    fake_kube.crds |= AGENT_SANDBOX_CRDS
    settings = kata_settings(fake_kube.kubeconfig(tmp_path / "kc"), use_agent_sandbox=True, warm_pool_size=3)
    return await KataSandbox.open(settings)


async def test_run_on_a_claimed_warm_pod(pooled: KataSandbox, fake_kube: FakeKube, needs_bwrap: None) -> None:
    async with pooled:
        code = "import sys\nprint(sys.stdin.read(), sys.argv[1:])\nprint('e', file=sys.stderr)\nsys.exit(4)"
        first = await pooled.run(py(code, stdin=b"in", args=("a",), labels={"tenant": "acme"}))
        second = await pooled.run(py("print(2)"))
        assert (first.exit_code, first.stdout, first.stderr) == (4, "in ['a']\n", "e\n")
        assert second.ok and second.stdout == "2\n"
        assert {c.name for c in await pooled.preflight()} >= {"kata.agent_sandbox"}
    templates = [o for (r, _, _), o in fake_kube.objects.items() if r == "sandboxtemplates"]
    pools = [o for (r, _, _), o in fake_kube.objects.items() if r == "sandboxwarmpools"]
    assert len(templates) == 1 and len(pools) == 1 and pools[0]["spec"]["replicas"] == 3  # made once, kept
    claims = [o for _, r, _, kind, o in fake_kube.events if r == "sandboxclaims" and kind == "ADDED"]
    assert len(claims) == 2 and claims[0]["metadata"]["labels"]["agentic.dev/tenant"] == "acme"
    assert [p for m, p in fake_kube.requests if p.endswith("/exec")]
    assert not [
        p for m, p in fake_kube.requests if m == "POST" and p.endswith("/configmaps")
    ]  # no volume needed
    for resource in ("sandboxtemplates", "sandboxwarmpools"):
        for key in fake_kube.stored(resource):
            fake_kube.objects.pop(key)


async def test_runs_that_do_not_fit_the_pool_get_a_bare_pod(
    pooled: KataSandbox, fake_kube: FakeKube, needs_bwrap: None
) -> None:
    async with pooled:
        big = await pooled.run(py("print('big')", limits=Limits(memory_mb=2048)))
    assert big.ok and big.stdout == "big\n"
    assert not [p for m, p in fake_kube.requests if "sandboxclaims" in p]


async def test_claim_without_a_ready_pod_is_a_start_error(fake_kube: FakeKube, tmp_path: Path) -> None:
    fake_kube.crds |= AGENT_SANDBOX_CRDS
    settings = kata_settings(
        fake_kube.kubeconfig(tmp_path / "kc"), use_agent_sandbox=True, start_timeout_s=0.5
    )
    fake_kube.scenarios.append(Scenario(mode="script", unschedulable=True))
    async with await KataSandbox.open(settings) as box:
        with pytest.raises(SandboxStartError, match="no ready pod"):
            await box.run(py("print(1)"))
    for resource in ("sandboxtemplates", "sandboxwarmpools"):
        for key in fake_kube.stored(resource):
            fake_kube.objects.pop(key)
