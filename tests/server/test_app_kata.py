"""A Kata hosted app through the real server's reverse proxy, end to end against the fake cluster.

The server runs the ``kata`` backend (the real ``kubernetes`` client) against the fake API server
(:mod:`tests.sandbox.kata.fake_kube`, in a thread of its own): ``POST /v1/apps`` becomes a
ConfigMap, a Deployment and a Service; the fake's Deployment controller starts the pod, its
kubelet runs the in-pod runner and the app in bubblewrap (own network namespace, a loopback pod
IP), and the Service gets a loopback ClusterIP relayed to the ready pod. The handle's endpoint is
that ClusterIP, so every request below goes server -> ClusterIP -> pod IP -> the runner's relay
-> the app, all on 127.0.0.0/8. The app is the same demo app the local app tests host.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import connect as ws_connect

from tests.sandbox.kata.fake_kube import FakeKube
from tests.sandbox.kata.fake_kube_thread import FakeKubeThread
from tests.server.kata_cluster import APP_KINDS, kata_server
from tests.server.support import LiveServer, demo_ticks
from tests.support.app_hosts import LoopbackAppHosts

KEY = "tenant-a:key-a-" + uuid.uuid4().hex
APP_SOURCE = (Path(__file__).parent / "apps" / "demo_app.py").read_text()
NAMESPACE = "agentic-sandboxes"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FakeKubeThread, LiveServer]]:
    with kata_server(tmp_path_factory.mktemp("kata-apps"), [KEY]) as (fake, server):
        yield fake, server


def _tree(pid: int) -> set[int]:
    """``pid`` and every process under it (the pod's bwrap, its pid 1, the runner, the app)."""
    found, todo = set(), [pid]
    while todo:
        current = todo.pop()
        found.add(current)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            try:
                todo += [int(child) for child in task.read_text().split()]
            except (OSError, ValueError):
                continue
    return found


def _stored(fake: FakeKubeThread) -> dict[str, list[str]]:
    def read(kube: FakeKube) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {kind: [] for kind in APP_KINDS}
        for resource, namespace, name in kube.stored():
            if resource in found and namespace == NAMESPACE:
                found[resource].append(name)
        return found

    return fake.call(read)


def test_a_kata_app_is_served_through_the_proxy_and_deleted_with_its_pod(
    cluster: tuple[FakeKubeThread, LiveServer],
) -> None:
    fake, server = cluster
    auth = {"Authorization": f"Bearer {KEY.split(':', 1)[1]}"}
    with httpx.Client(base_url=server.url, headers=auth, timeout=60) as owner:
        ws = owner.post("/v1/workspaces", json={"name": "kata-site"}).json()["id"]
        assert owner.put(f"/v1/workspaces/{ws}/files/app.py", json={"content": APP_SOURCE}).status_code == 200
        created = owner.post("/v1/apps", json={"workspace_id": ws, "entry": "app.py"})
        assert created.status_code == 201, created.text
    app = created.json()
    prefix, token = f"/apps/{app['id']}", str(app["token"])
    name = f"agentic-app-{app['id']}"
    objects = _stored(fake)
    assert objects["configmaps"] == objects["deployments"] == objects["services"] == [name]
    (pod,) = objects["pods"]
    cluster_ip, pid = fake.call(
        lambda kube: (
            kube.objects[("services", NAMESPACE, name)]["spec"]["clusterIP"],
            kube.kubelet.runtimes[(NAMESPACE, pod)].process.pid,  # type: ignore[union-attr]
        )
    )
    relayed = fake.call(lambda kube: kube.services.connections)
    processes = _tree(pid)
    assert len(processes) >= 3  # bwrap, the forwarder-exec'd runner, the app

    with httpx.Client(base_url=server.url, timeout=30, headers={"X-App-Token": token}) as c:
        page = c.get(f"{prefix}/hello?x=1")
        assert page.status_code == 200, page.text
        via_service = f"hello from /hello?x=1</a> prefix={prefix} host={cluster_ip}:80 "
        assert via_service in page.text  # the proxy dialled the Service's ClusterIP
        assert f"href='{prefix}/next'" in page.text  # ROOT_PATH reached the app in the pod
        assert "auth=-" in page.text  # the token stays with the server
        ticks, first_at = demo_ticks(c, f"{prefix}/sse")
        assert ticks == ["tick 0", "tick 1", "tick 2"]
        assert first_at < 0.5  # relayed as it came through every hop (the app sleeps 0.3 s between)
    ws_url = server.url.replace("http", "ws") + f"{prefix}/ws"
    with ws_connect(ws_url, additional_headers={"X-App-Token": token}) as ws_conn:
        ws_conn.send("ping")
        assert ws_conn.recv(timeout=10) == "echo:ping"
        ws_conn.send(b"\x00\x01" * 100)
        assert ws_conn.recv(timeout=10) == b"echo:" + b"\x00\x01" * 100
    assert fake.call(lambda kube: kube.services.connections) > relayed  # the Service carried them

    origin = str(app["url"]).removesuffix(f"{prefix}/")  # the app's own origin, {id}.apps.localhost
    with httpx.Client(base_url=origin, timeout=30, transport=LoopbackAppHosts()) as anon:
        assert anon.get(f"{prefix}/hello").status_code == 401
        assert anon.get(f"{prefix}/hello", headers={"X-App-Token": "apt_wrong"}).status_code == 401
        assert anon.get(f"{prefix}/hello", headers={"X-App-Token": token}).status_code == 200
    with pytest.raises(Exception):  # noqa: B017 (websockets raises InvalidStatus / ConnectionClosed)
        with ws_connect(ws_url) as refused:
            refused.send("x")
            refused.recv(timeout=5)

    with httpx.Client(base_url=server.url, headers=auth, timeout=60) as owner:
        assert owner.delete(f"/v1/apps/{app['id']}").status_code == 204
    assert _stored(fake) == {kind: [] for kind in APP_KINDS}  # Deployment, Service, ConfigMap, pod
    deadline = time.monotonic() + 10
    while alive := [p for p in processes if Path(f"/proc/{p}").exists()]:  # the pod's processes ended
        assert time.monotonic() < deadline, f"the app's pod processes outlived it: {alive}"
        time.sleep(0.05)
    with pytest.raises(httpx.ConnectError):  # nothing answers at the ClusterIP any more
        with httpx.Client(timeout=5) as direct:
            direct.get(f"http://{cluster_ip}:80/")
