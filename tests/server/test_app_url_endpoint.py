"""Hosted apps behind a URL endpoint (as on the Kata and Unikraft backends), through the real server.

The backend (:mod:`tests.support.url_apps`) starts the app on a loopback port and hands the server
``http://127.0.0.1:PORT``; the reverse proxy dials it over TCP. Same checks as for a Unix-socket app:
HTTP with the prefix and without our credentials, a streamed upload, SSE as it comes, a WebSocket
echo with a subprotocol, no token refused, another tenant refused.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import connect as ws_connect

from sandbox.config import SandboxSettings, UnikraftSettings
from sandbox.registry import BACKENDS, register_backend
from server.app import create_app
from server.apps.config import AppSettings
from tests.sandbox.unikraft.fake_server import fake_unikraft_cloud
from tests.server.conftest import make_settings
from tests.server.support import LiveServer, demo_ticks
from tests.support.url_apps import BACKEND, LoopbackUrlSandbox, free_port

KEY_A = "tenant-a:key-a-" + uuid.uuid4().hex
KEY_B = "tenant-b:key-b-" + uuid.uuid4().hex
APP_SOURCE = (Path(__file__).parent / "apps" / "demo_app.py").read_text()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    register_backend(BACKEND, LoopbackUrlSandbox)
    apps = AppSettings(reap_interval_s=0.3, link_secret="s" * 32, idle_stop_s=0)  # type: ignore[arg-type]
    sandbox = SandboxSettings().model_copy(update={"backend": BACKEND})
    settings = make_settings(
        tmp_path_factory.mktemp("url-apps"), api_keys=[KEY_A, KEY_B], apps=apps, sandbox=sandbox
    )
    try:
        with LiveServer(create_app(settings)) as live:
            yield live
    finally:
        BACKENDS.pop(BACKEND, None)


def _client(server: LiveServer, key: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key.split(':', 1)[1]}"})


def _host(server: LiveServer) -> dict[str, object]:
    with _client(server, KEY_A) as a:
        ws = a.post("/v1/workspaces", json={"name": "site"}).json()["id"]
        assert a.put(f"/v1/workspaces/{ws}/files/app.py", json={"content": APP_SOURCE}).status_code == 200
        created = a.post("/v1/apps", json={"workspace_id": ws, "entry": "app.py"}, timeout=60)
        assert created.status_code == 201, created.text
        return dict(created.json())


def test_an_app_at_a_url_is_served_http_sse_websocket(server: LiveServer) -> None:
    app = _host(server)
    prefix, token = f"/apps/{app['id']}", str(app["token"])
    started = len(LoopbackUrlSandbox.processes)
    assert started >= 1  # the app really is the URL backend's process, on a loopback port
    with httpx.Client(base_url=server.url, timeout=30, headers={"X-App-Token": token}) as c:
        page = c.get(f"{prefix}/hello?x=1", headers={"Cookie": "theme=dark"})
        assert page.status_code == 200, page.text
        assert f"hello from /hello?x=1</a> prefix={prefix} host=127.0.0.1:" in page.text  # the URL's host
        assert f"href='{prefix}/next'" in page.text  # ROOT_PATH reached the app
        assert "auth=-" in page.text and "cookie=theme=dark" in page.text  # our token stays here

        def upload() -> Iterator[bytes]:
            for _ in range(30):
                yield b"x" * 10_000

        assert c.post(f"{prefix}/echo", content=b"y" * 300_000).text == "got 300000 bytes"
        sized = c.post(f"{prefix}/echo", content=upload(), headers={"Content-Length": "300000"})
        assert sized.text == "got 300000 bytes"  # streamed up in pieces
        ticks, first_at = demo_ticks(c, f"{prefix}/sse")
        assert ticks == ["tick 0", "tick 1", "tick 2"]
        assert first_at < 0.5  # relayed as it came (the app sleeps 0.3 s between)
    ws_url = server.url.replace("http", "ws") + f"{prefix}/ws"
    with ws_connect(ws_url, additional_headers={"X-App-Token": token}, subprotocols=["one", "two"]) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == "two"  # the app's choice among those offered
        ws.send("ping")
        assert ws.recv(timeout=10) == "echo:ping"
        ws.send(b"\x00\x01" * 100)
        assert ws.recv(timeout=10) == b"echo:" + b"\x00\x01" * 100


def test_an_app_at_a_url_refuses_no_token_and_other_tenants(server: LiveServer) -> None:
    app = _host(server)
    prefix = f"/apps/{app['id']}"
    with httpx.Client(base_url=server.url, timeout=30) as anon:
        assert anon.get(f"{prefix}/", headers={"X-App-Token": "apt_wrong"}).status_code == 401
    with _client(server, KEY_B) as b:
        assert b.get(f"{prefix}/").status_code == 401  # B's API key is not A's
    with pytest.raises(Exception):  # noqa: B017 (websockets raises InvalidStatus / ConnectionClosed)
        with ws_connect(server.url.replace("http", "ws") + f"{prefix}/ws") as ws:
            ws.send("x")
            ws.recv(timeout=5)
    with _client(server, KEY_A) as a:
        assert a.get(f"{prefix}/").status_code == 200  # the owner's key opens it
        pid = LoopbackUrlSandbox.processes[-1]
        assert a.delete(f"/v1/apps/{app['id']}").status_code == 204
    for _ in range(100):  # terminate() killed the app's process
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        pytest.fail("the app's process outlived its app")


def test_an_app_on_the_unikraft_fake_is_served_through_its_edge(tmp_path: Path) -> None:
    """The real ``unikraft`` backend against the fake cloud: the proxy dials the edge with the app's Host."""
    with fake_unikraft_cloud() as fake:
        sandbox = SandboxSettings(backend="unikraft", unikraft=UnikraftSettings(**fake.settings_env()))
        settings = make_settings(tmp_path, api_keys=[KEY_A, KEY_B], sandbox=sandbox)
        with LiveServer(create_app(settings)) as server:
            with _client(server, KEY_A) as a:
                ws = a.post("/v1/workspaces", json={"name": "ukc"}).json()["id"]
                a.put(f"/v1/workspaces/{ws}/files/app.py", json={"content": APP_SOURCE})
                body = {"workspace_id": ws, "entry": "app.py", "port": free_port()}
                created = a.post("/v1/apps", json=body, timeout=60)
                assert created.status_code == 201, created.text
                app = created.json()
                (instance,) = fake.state.instances.values()
                assert instance.state == "running" and instance.fqdn
                prefix = f"/apps/{app['id']}"
                headers = {"X-App-Token": app["token"]}
                page = a.get(f"{prefix}/hello", headers=headers, timeout=30)
                assert page.status_code == 200, page.text
                # The edge routed by the app's Host (else 503) and passed the proxy's headers on.
                assert f"hello from /hello</a> prefix={prefix} " in page.text and "auth=-" in page.text
                echoed = a.post(f"{prefix}/echo", content=b"z" * 50_000, headers=headers, timeout=30)
                assert echoed.text == "got 50000 bytes"
                with _client(server, KEY_B) as b:
                    assert b.get(f"{prefix}/hello").status_code == 401
                assert a.delete(f"/v1/apps/{app['id']}").status_code == 204
        assert fake.instance_names() == [] and not fake.cloud.rejected
