"""The TCP egress proxy's route to hosted apps (``<app_id>.apps.internal``), on its own.

What reaches the apps upstream is recorded by a loopback HTTP server standing in for the platform
server (the whole path, server included, is ``tests/server/test_app_egress.py``): the request on the
app's host with the verified identity and nothing the client sent in its place. Every way the route
is off is refused with its reason, in the answer and in the decision's log line.
"""

from __future__ import annotations

import asyncio
import base64
import http.server
import logging
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pydantic
import pytest

from sandbox.egress_apps import AppsUpstream, app_id_of_internal_host
from sandbox.egress_identity import proxy_url_with_identity, sign_identity
from sandbox.egress_listener import EgressListenerSettings
from sandbox.egress_policy import EgressPolicy
from sandbox.egress_proxy import EgressChannel, EgressProxy
from tests.sandbox.egress_command import egress_proxy_command

SECRET = "a" * 40
APP_HOST = "app1.apps.internal"


class _Server(http.server.BaseHTTPRequestHandler):
    """The platform server as the proxy sees it: records each request head, answers 200 (``/start``:
    a relative redirect to ``/next``, as the server's ``/apps/<id>`` -> ``/apps/<id>/``)."""

    seen: list[tuple[str, list[tuple[str, str]]]] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        if self.path == "/start":
            self.send_response(307)
            self.send_header("Location", "/next")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        _Server.seen.append((self.path, [(k.lower(), v) for k, v in self.headers.items()]))
        body = b"the app"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[int]:
    _Server.seen = []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Server)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()


def _token(tenant: str = "acme", run: str = "run-1", secret: str = SECRET) -> str:
    return sign_identity(secret, tenant=tenant, run=run, expires_at=int(time.time()) + 300)


async def _listen(secret: str | None, upstream: int | None) -> EgressChannel:
    apps = AppsUpstream("127.0.0.1", upstream) if upstream is not None else None
    proxy = EgressProxy(EgressPolicy.from_entries([], allow_internet=False, platform_ports=[8000]))
    return await proxy.listen_tcp("127.0.0.1", 0, identity_secret=secret, apps_upstream=apps)


@pytest.fixture
async def channel(server: int) -> AsyncIterator[EgressChannel]:
    opened = await _listen(SECRET, server)
    yield opened
    await opened.close()


async def _get(channel: EgressChannel, url: str, token: str | None, **kwargs: object) -> httpx.Response:
    assert channel.address is not None
    proxy = f"http://127.0.0.1:{channel.address[1]}"
    async with httpx.AsyncClient(
        proxy=proxy_url_with_identity(proxy, token) if token else proxy, trust_env=False, timeout=10
    ) as client:
        return await client.get(url, **kwargs)  # type: ignore[arg-type]


def _denials(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "sandbox.egress_policy" and "DENY" in r.getMessage()
    ]


async def test_the_server_gets_the_request_on_the_apps_host_with_the_verified_identity(
    channel: EgressChannel,
) -> None:
    token = _token("acme", "run-9")
    forged = _token("globex", "run-x", secret="f" * 40)
    headers = {"X-Agentic-Egress-Identity": forged, "Host": "elsewhere.example", "X-Other": "kept"}
    answer = await _get(channel, f"http://{APP_HOST}:8080/a/b?c=1", token, headers=headers)
    assert answer.status_code == 200 and answer.text == "the app"
    ((path, seen),) = _Server.seen
    assert path == "/a/b?c=1"
    assert [v for k, v in seen if k == "host"] == [f"{APP_HOST}:8080"]  # the host the proxy routed
    assert [v for k, v in seen if k == "x-agentic-egress-identity"] == [token]  # the client's is gone
    assert ("x-other", "kept") in seen and ("connection", "close") in seen
    assert not any(k == "proxy-authorization" for k, _ in seen)


async def test_a_redirect_to_an_app_is_left_to_the_client(channel: EgressChannel) -> None:
    """A redirect within the route is not refused for naming a host no resolver knows: the
    client's next request is routed like the first."""
    answer = await _get(channel, f"http://{APP_HOST}/start", _token(), follow_redirects=True)
    assert answer.status_code == 200 and [p for p, _ in _Server.seen] == ["/next"]


@pytest.mark.parametrize(
    ("secret", "upstream", "reason"),
    [
        (SECRET, False, "hosted apps are not routed here (AGENTIC_EGRESS_PROXY_APPS_UPSTREAM is empty)"),
        (
            None,
            True,
            "hosted apps need the run's signed identity (AGENTIC_EGRESS_PROXY_IDENTITY_SECRET is empty)",
        ),
    ],
)
async def test_without_upstream_or_identities_app_names_stay_refused(
    server: int, secret: str | None, upstream: bool, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sandbox.egress_policy")
    opened = await _listen(secret, server if upstream else None)
    try:
        answer = await _get(opened, f"http://{APP_HOST}/", _token() if secret else None)
    finally:
        await opened.close()
    assert answer.status_code == 403 and reason in answer.text
    (line,) = _denials(caplog)
    assert f"DENY {APP_HOST}:80" in line and reason in line
    assert _Server.seen == []


async def test_connect_other_names_and_a_dead_upstream_are_refused(
    channel: EgressChannel, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sandbox.egress_policy")
    assert channel.address is not None
    reader, writer = await asyncio.open_connection(*channel.address)
    auth = "Basic " + base64.b64encode(f"agentic:{_token()}".encode()).decode()
    writer.write(f"CONNECT {APP_HOST}:443 HTTP/1.1\r\nProxy-Authorization: {auth}\r\n\r\n".encode())
    refused = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    assert refused.startswith(b"HTTP/1.1 403 ") and b"CONNECT to a hosted app is not routed" in refused
    bad_name = await _get(channel, "http://a.b.apps.internal/", _token())
    assert bad_name.status_code == 403 and "not an app's name" in bad_name.text
    dead = await _listen(SECRET, 9)  # the discard port: nothing listens on loopback
    try:
        unreachable = await _get(dead, f"http://{APP_HOST}/", _token())
    finally:
        await dead.close()
    assert unreachable.status_code == 403 and "the platform's app proxy is unreachable" in unreachable.text
    assert len(_denials(caplog)) == 3 and _Server.seen == []


def test_app_names_and_upstream_urls() -> None:
    assert app_id_of_internal_host("Abc-1.apps.internal.") == "abc-1"
    assert app_id_of_internal_host("a.b.apps.internal") is None
    assert app_id_of_internal_host("apps.internal") is None
    assert EgressListenerSettings().apps() is None
    upstream = EgressListenerSettings(apps_upstream="http://agentic-server.agentic-system.svc:80").apps()
    assert upstream == AppsUpstream("agentic-server.agentic-system.svc", 80)
    for bad in (
        "https://server:443",
        "http://server/apps",
        "http://u:p@server",
        "server:80",
        "http://server:x",
    ):
        with pytest.raises(pydantic.ValidationError, match="apps upstream"):
            EgressListenerSettings(apps_upstream=bad)


def test_the_command_routes_apps_to_its_upstream(server: int, tmp_path: Path) -> None:
    env = {
        "AGENTIC_EGRESS_PROXY_IDENTITY_SECRET": SECRET,
        "AGENTIC_EGRESS_PROXY_APPS_UPSTREAM": f"http://127.0.0.1:{server}",
    }
    with egress_proxy_command(tmp_path, env) as (port, log):
        assert f"apps via the server at 127.0.0.1:{server}" in log.read_text(), log.read_text()
        signed = proxy_url_with_identity(f"http://127.0.0.1:{port}", _token("globex", "run-cli"))
        with httpx.Client(proxy=signed, trust_env=False, timeout=10) as client:
            assert client.get(f"http://{APP_HOST}/x").text == "the app"
    assert "tenant's hosted app, via the server" in log.read_text()
    assert SECRET not in log.read_text()
