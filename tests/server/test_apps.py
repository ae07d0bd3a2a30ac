"""Hosted apps through the real server: REST, the reverse proxy (HTTP, SSE, WebSocket), access, lifecycle."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import connect as ws_connect

from server.app import create_app
from server.apps.config import AppSettings
from tests.server.conftest import make_settings
from tests.server.support import LiveServer, demo_ticks
from tests.support.app_hosts import LoopbackAppHosts
from tests.support.leftovers import descendants

KEY_A = "tenant-a:key-a-" + uuid.uuid4().hex
KEY_B = "tenant-b:key-b-" + uuid.uuid4().hex
APP_SOURCE = (Path(__file__).parent / "apps" / "demo_app.py").read_text()


def _settings(data_dir: Path) -> object:
    apps = AppSettings(reap_interval_s=0.3, link_secret="s" * 32, idle_stop_s=0)  # type: ignore[arg-type]
    return make_settings(data_dir, api_keys=[KEY_A, KEY_B], apps=apps)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("apps")


@pytest.fixture(scope="module")
def server(data_dir: Path) -> Iterator[LiveServer]:
    with LiveServer(create_app(_settings(data_dir))) as live:  # type: ignore[arg-type]
        yield live


def _client(server: LiveServer, key: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {key.split(':', 1)[1]}"} if key else {}
    return httpx.Client(base_url=server.url, headers=headers, timeout=60)


def _host(server: LiveServer, **extra: object) -> dict[str, object]:
    with _client(server, KEY_A) as a:
        ws = a.post("/v1/workspaces", json={"name": "site"}).json()["id"]
        assert a.put(f"/v1/workspaces/{ws}/files/app.py", json={"content": APP_SOURCE}).status_code == 200
        created = a.post("/v1/apps", json={"workspace_id": ws, "entry": "app.py", **extra})
        assert created.status_code == 201, created.text
        return dict(created.json())


def test_app_is_served_through_the_proxy_http_sse_websocket(server: LiveServer) -> None:
    app = _host(server)
    prefix, token = f"/apps/{app['id']}", str(app["token"])
    with httpx.Client(base_url=server.url, timeout=30, headers={"X-App-Token": token}) as c:
        page = c.get(f"{prefix}/hello?x=1")
        assert page.status_code == 200, page.text
        assert f"hello from /hello?x=1</a> prefix={prefix}" in page.text
        assert f"href='{prefix}/next'" in page.text  # ROOT_PATH reached the app
        assert "auth=-" in page.text  # our credentials never reach the app
        assert c.post(f"{prefix}/echo", content=b"x" * 300_000).text == "got 300000 bytes"
        ticks, first_at = demo_ticks(c, f"{prefix}/sse")
        assert ticks == ["tick 0", "tick 1", "tick 2"]
        assert first_at < 0.5  # streamed, not buffered until the end
    ws_url = server.url.replace("http", "ws") + f"{prefix}/ws"
    with ws_connect(ws_url, additional_headers={"X-App-Token": token}) as ws:
        ws.send("ping")
        assert ws.recv(timeout=10) == "echo:ping"
        ws.send(b"\x00\x01")
        assert ws.recv(timeout=10) == b"echo:\x00\x01"


def test_requests_without_the_token_are_refused_and_links_set_a_cookie(server: LiveServer) -> None:
    app = _host(server)
    prefix = f"/apps/{app['id']}"
    port = server.url.rstrip("/").rsplit(":", 1)[1]
    origin = f"http://{app['id']}.apps.localhost:{port}"
    assert app["url"] == f"{origin}{prefix}/"  # the app's address is on its own origin
    with httpx.Client(base_url=origin, timeout=30, transport=LoopbackAppHosts()) as anon:
        assert anon.get(f"{prefix}/").status_code == 401
        assert anon.get(f"{prefix}/", headers={"X-App-Token": "apt_wrong"}).status_code == 401
        assert anon.get(f"{prefix}/?agentic_link=1.bad").status_code == 401
        link = str(app["link"]["url"])  # type: ignore[index]
        assert link.startswith(f"{origin}{prefix}/?agentic_link=")
        opened = anon.get(link)
        assert opened.status_code == 303 and opened.headers["location"] == f"{prefix}/"
        cookie = opened.headers["set-cookie"]
        assert "Path=/;" in cookie and "HttpOnly" in cookie and "Domain" not in cookie
        page = anon.get(f"{prefix}/")  # the client kept the cookie (host-only: this app's origin)
        assert page.status_code == 200 and "cookie=-" in page.text  # not forwarded to the app
        assert anon.get("/").status_code == 200  # the app's host serves the app at its root too
    with httpx.Client(base_url=server.url, timeout=30) as anon:
        assert anon.get(f"/apps/{uuid.uuid4().hex[:24]}/").status_code == 404
    with pytest.raises(Exception):  # noqa: B017 (websockets raises InvalidStatus / ConnectionClosed)
        with ws_connect(server.url.replace("http", "ws") + f"{prefix}/ws") as ws:
            ws.send("x")
            ws.recv(timeout=5)


def test_each_app_has_its_own_origin_and_never_runs_on_the_apis(server: LiveServer) -> None:
    """An app's scripts must not share an origin with the UI (its API key) or with another app."""
    one, other = _host(server), _host(server)
    port = server.url.rstrip("/").rsplit(":", 1)[1]
    with httpx.Client(base_url=server.url, timeout=30) as browser:
        # A browser on the API's origin is sent to the app's own origin, link and all.
        moved = browser.get(f"/apps/{one['id']}/page?agentic_link=x.y")
        assert moved.status_code == 307
        assert moved.headers["location"] == (
            f"http://{one['id']}.apps.localhost:{port}/apps/{one['id']}/page?agentic_link=x.y"
        )
    origin = f"http://{one['id']}.apps.localhost:{port}"
    token = {"X-App-Token": str(one["token"])}
    with httpx.Client(base_url=origin, timeout=30, transport=LoopbackAppHosts(), headers=token) as app:
        assert app.get(f"/apps/{one['id']}/hello").status_code == 200
        # One app's host never serves another app, nor the API or the UI: every path is the app's.
        elsewhere = app.get(f"/apps/{other['id']}/", headers={"X-App-Token": str(other["token"])})
        assert elsewhere.status_code == 401  # app one's proxy, and the other app's token is not its own
        api = app.get("/v1/workspaces")
        assert api.status_code == 200 and f"prefix=/apps/{one['id']}" in api.text, api.text
        assert f"prefix=/apps/{one['id']}" in app.get("/").text  # the app's page, not the UI
    with _client(server, KEY_A) as a:  # within the tenant's app cap for the tests after this one
        assert all(a.delete(f"/v1/apps/{x['id']}").status_code == 204 for x in (one, other))


def test_tenant_b_never_reaches_tenant_a_app(server: LiveServer) -> None:
    app = _host(server)
    prefix = f"/apps/{app['id']}"
    with _client(server, KEY_B) as b:
        assert b.get(f"{prefix}/").status_code == 401  # B's API key is not A's
        assert b.get(f"/v1/apps/{app['id']}").status_code == 404
        assert b.delete(f"/v1/apps/{app['id']}").status_code == 404
        refused = b.post(f"/v1/apps/{app['id']}/links")
        assert refused.status_code == 404 and refused.json()["error"]["type"] == "app_not_found"
        assert b.get(f"/v1/apps/{app['id']}/logs").status_code == 404
        assert b.get(f"/v1/apps/{app['id']}/logs", params={"follow": "true"}).status_code == 404
        assert all(x["id"] != app["id"] for x in b.get("/v1/apps").json())
    with _client(server, KEY_A) as a:
        assert a.get(f"{prefix}/").status_code == 200  # the owner's API key opens it
        link = a.post(f"/v1/apps/{app['id']}/links")
        assert link.status_code == 200 and "agentic_link=" in link.json()["url"], link.text


def test_app_expires_after_its_ttl_leaving_nothing(server: LiveServer) -> None:
    before_pids, before_dirs = descendants(os.getpid()), set(Path("/tmp").glob("agentic-*/net/*"))
    app = _host(server, ttl_s=3)
    pids = descendants(os.getpid()) - before_pids
    dirs = set(Path("/tmp").glob("agentic-*/net/*")) - before_dirs
    assert pids and len(dirs) == 1 and (next(iter(dirs)) / "app.sock").exists()
    headers = {"X-App-Token": str(app["token"])}
    with httpx.Client(base_url=server.url, timeout=30, headers=headers) as c:
        assert c.get(f"/apps/{app['id']}/").status_code == 200
        deadline = time.monotonic() + 15
        while c.get(f"/apps/{app['id']}/").status_code != 404:
            assert time.monotonic() < deadline, "the app did not expire"
            time.sleep(0.3)
    with _client(server, KEY_A) as a:
        assert a.get(f"/v1/apps/{app['id']}").status_code == 404
    deadline = time.monotonic() + 10
    while pids & descendants(os.getpid()):  # the reaper terminated it: its processes are gone
        assert time.monotonic() < deadline, pids & descendants(os.getpid())
        time.sleep(0.1)
    while any(d.exists() for d in dirs):  # its socket and proxy channel are gone (removed just after)
        assert time.monotonic() < deadline, [d for d in dirs if d.exists()]
        time.sleep(0.1)
    with open("/proc/net/unix") as table:
        assert not any(str(d) in table.read() for d in dirs)
    assert not any(str(d) in Path("/proc/self/mountinfo").read_text() for d in dirs)


def test_app_limits_per_tenant(data_dir: Path) -> None:
    settings = make_settings(data_dir / "limits", api_keys=[KEY_A], apps=AppSettings(max_per_tenant=0))
    with LiveServer(create_app(settings)) as live, _client(live, KEY_A) as a:
        ws = a.post("/v1/workspaces", json={"name": "x"}).json()["id"]
        a.put(f"/v1/workspaces/{ws}/files/app.py", json={"content": APP_SOURCE})
        refused = a.post("/v1/apps", json={"workspace_id": ws, "entry": "app.py"})
        assert refused.status_code == 409 and refused.json()["error"]["type"] == "app_limit", refused.text


def test_permanent_app_comes_back_after_kill_and_after_restart(data_dir: Path) -> None:
    restart_dir = data_dir / "restart"
    others = descendants(os.getpid())  # the module's other server and its apps
    with LiveServer(create_app(_settings(restart_dir))) as first:  # type: ignore[arg-type]
        app = _host(first, permanent=True)
        headers = {"X-App-Token": str(app["token"])}
        prefix = f"/apps/{app['id']}"
        with httpx.Client(base_url=first.url, timeout=60, headers=headers) as c:
            assert c.get(f"{prefix}/a").status_code == 200
            ours = descendants(os.getpid()) - others
            assert ours
            for pid in ours:  # kill its sandbox from outside
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.5)
            again = c.get(f"{prefix}/b")
            assert again.status_code == 200 and "hello from /b" in again.text
    assert not descendants(os.getpid()) - others  # the server's shutdown terminated it
    with LiveServer(create_app(_settings(restart_dir))) as second:  # type: ignore[arg-type]
        with httpx.Client(base_url=second.url, timeout=60, headers=headers) as c:
            woke = c.get(f"{prefix}/c")
            assert woke.status_code == 200 and "hello from /c" in woke.text
        with _client(second, KEY_A) as a:
            assert a.get(f"/v1/apps/{app['id']}").json()["running"] is True
            assert "listening on" in a.get(f"/v1/apps/{app['id']}/logs").text
            assert a.delete(f"/v1/apps/{app['id']}").status_code == 204
    assert not descendants(os.getpid()) - others


LOGGER_APP = """
import http.server, os, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        print('out', self.path, flush=True)
        print('err', self.path, file=sys.stderr, flush=True)
        self.send_response(200); self.send_header('Content-Length', '2'); self.end_headers()
        self.wfile.write(b'ok')
    def log_message(self, *args):
        pass
print('listening', flush=True)
http.server.HTTPServer(('127.0.0.1', int(os.environ['PORT'])), H).serve_forever()
"""


def _sse(lines: Iterator[str]) -> Iterator[tuple[str, str]]:
    """(event, data) pairs of an SSE line stream."""
    event = "message"
    for line in lines:
        if line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            yield event, json.loads(line[5:].strip()).get("data", line[5:].strip())
            event = "message"


def test_app_logs_are_kept_across_restarts_and_followed_until_deleted(server: LiveServer) -> None:
    with _client(server, KEY_A) as a:
        ws = a.post("/v1/workspaces", json={"name": "logs"}).json()["id"]
        assert a.put(f"/v1/workspaces/{ws}/files/app.py", json={"content": LOGGER_APP}).status_code == 200
        app = a.post("/v1/apps", json={"workspace_id": ws, "entry": "app.py"}).json()
        prefix, token = f"/apps/{app['id']}", {"X-App-Token": app["token"]}
        assert a.get(f"{prefix}/first", headers=token).text == "ok"
        logs = a.get(f"/v1/apps/{app['id']}/logs")
        assert logs.status_code == 200 and logs.headers["content-type"].startswith("text/plain")
        assert "[agentic] app started" in logs.text and "listening" in logs.text
        assert "out /first" in logs.text and "err /first" in logs.text
        assert a.post(f"/v1/apps/{app['id']}/restart").status_code == 200
        again = a.get(f"/v1/apps/{app['id']}/logs").text
        assert again.startswith(logs.text.split("out /first")[0]) and "out /first" in again  # kept
        assert again.count("[agentic] app started") == 2 and "[agentic] app stopped" in again

        seen: dict[str, str] = {}  # stream -> text so far (chunk boundaries are the program's writes)

        def read_until(events: Iterator[tuple[str, str]], done: Callable[[], bool]) -> None:
            if done():
                return
            for name, data in events:
                seen[name] = seen.get(name, "") + data
                if done():
                    return

        with httpx.Client(base_url=server.url, timeout=30, headers=a.headers) as follower:
            with follower.stream("GET", f"/v1/apps/{app['id']}/logs", params={"follow": "true"}) as stream:
                assert stream.headers["content-type"].startswith("text/event-stream")
                events = _sse(stream.iter_lines())
                read_until(events, lambda: seen.get("stdout", "").count("listening") == 2)  # what is kept
                assert "out /first" in seen["stdout"] and "err /first" in seen["stderr"]
                assert "out" not in seen["stderr"] and seen["platform"].count("app started") == 2
                assert a.get(f"{prefix}/live", headers=token).text == "ok"  # new output while followed
                read_until(events, lambda: "err /live" in seen.get("stderr", ""))
                read_until(events, lambda: "out /live" in seen.get("stdout", ""))
                assert a.delete(f"/v1/apps/{app['id']}").status_code == 204
                rest = list(events)  # the stream ends once the app is deleted
                assert rest and rest[-1][0] == "end", rest
        assert a.get(f"/v1/apps/{app['id']}/logs").status_code == 404
