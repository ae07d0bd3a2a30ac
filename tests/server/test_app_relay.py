"""The app proxy's HTTP/1.1 relay against a real stdlib HTTP server, on a Unix socket and on a loopback URL.

Every relay test runs through both dialers (:mod:`server.apps.dialer`): one relay, two ways to connect.
"""

from __future__ import annotations

import http.server
import socketserver
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from sandbox.service import ServiceEndpoint
from server.apps.dialer import Dialer, EndpointError, TcpDialer, dialer_for
from server.apps.relay import RelayError, Upstream, UpstreamPool


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    connections: list[int] = []
    hosts: list[str] = []
    close_after_each = False  # keep-alive announced, but the socket is closed: a stale pooled connection

    def setup(self) -> None:
        super().setup()
        _Handler.connections.append(id(self.connection))

    def _reply(self, body: bytes, *, chunked: bool = False) -> None:
        self.send_response(200)
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (body[:3], body[3:]):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
        self.close_connection = _Handler.close_after_each

    def do_GET(self) -> None:
        _Handler.hosts.append(self.headers["host"])
        self._reply(f"path={self.path} prefix={self.headers['x-forwarded-prefix']}".encode())

    def do_HEAD(self) -> None:
        self._reply(b"0123456789")

    def do_POST(self) -> None:
        if self.headers.get("Transfer-Encoding") == "chunked":
            body = b""
            while size := int(self.rfile.readline().strip(), 16):
                body += self.rfile.read(size)
                self.rfile.readline()
            self.rfile.readline()
        else:
            body = self.rfile.read(int(self.headers["Content-Length"]))
        self._reply(b"echo:" + body, chunked=True)

    def log_message(self, *args: Any) -> None:
        pass


class _UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class _TcpServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True


@pytest.fixture(params=["unix", "tcp"])
def app_dialer(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Dialer]:
    """The test app, and the dialer that reaches it: its Unix socket, or its URL on 127.0.0.1."""
    _Handler.connections.clear()
    _Handler.hosts.clear()
    _Handler.close_after_each = False
    server: socketserver.BaseServer
    if request.param == "unix":
        path = tmp_path / "app.sock"
        server = _UnixServer(str(path), _Handler)
        endpoint = ServiceEndpoint(unix_socket=path)
    else:
        server = _TcpServer(("127.0.0.1", 0), _Handler)
        endpoint = ServiceEndpoint(url=f"http://127.0.0.1:{server.server_address[1]}/")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield dialer_for(endpoint)
    server.shutdown()
    server.server_close()


async def _read(upstream: Upstream) -> bytes:
    body = b"".join([chunk async for chunk in upstream.body()])
    upstream.done()
    return body


async def _get(pool: UpstreamPool, target: str) -> bytes:
    return await _read(await pool.request("GET", target, [(b"x-forwarded-prefix", b"/apps/a")]))


async def test_connections_are_kept_alive_and_reused(app_dialer: Dialer) -> None:
    pool = UpstreamPool(app_dialer)
    assert await _get(pool, "/one?x=1") == b"path=/one?x=1 prefix=/apps/a"
    head = await pool.request("HEAD", "/", [])
    assert head.status == 200 and (b"content-length", b"10") in head.headers
    assert await _read(head) == b""  # no body after HEAD, and the connection stays usable
    assert await _get(pool, "/two") == b"path=/two prefix=/apps/a"
    assert len(_Handler.connections) == 1
    pool.close()


async def test_a_stale_pooled_connection_is_retried_on_a_new_one(app_dialer: Dialer) -> None:
    _Handler.close_after_each = True
    pool = UpstreamPool(app_dialer)
    for n in range(3):
        assert await _get(pool, f"/{n}") == f"path=/{n} prefix=/apps/a".encode()
    assert len(_Handler.connections) == 3
    pool.close()


async def test_request_bodies_stream_and_chunked_answers_are_decoded(app_dialer: Dialer) -> None:
    async def parts() -> AsyncIterator[bytes]:
        for part in (b"hello ", b"", b"world"):
            yield part

    pool = UpstreamPool(app_dialer)
    chunked = await pool.request("POST", "/", [], parts, chunked=True)
    assert (b"transfer-encoding", b"chunked") in chunked.headers
    assert await _read(chunked) == b"echo:hello world"
    sized = await pool.request("POST", "/", [(b"content-length", b"11")], parts)
    assert await _read(sized) == b"echo:hello world"
    pool.close()


async def test_a_target_with_control_characters_is_never_sent(app_dialer: Dialer) -> None:
    pool = UpstreamPool(app_dialer)
    with pytest.raises(RelayError):
        await pool.request("GET", "/a\r\nX-Injected: 1", [])
    with pytest.raises(RelayError):
        await pool.request("GET", "/a b", [])
    assert not _Handler.connections


async def test_requests_carry_the_endpoints_host(app_dialer: Dialer) -> None:
    pool = UpstreamPool(app_dialer)
    await _get(pool, "/")
    pool.close()
    expected = "app" if app_dialer.endpoint.unix_socket else app_dialer.endpoint.url.split("/")[2]  # type: ignore[union-attr]
    assert _Handler.hosts == [expected]


async def test_an_edge_endpoint_sends_the_apps_name_as_host() -> None:
    """A shared edge (Unikraft's) routes by Host: the endpoint's host goes out, the URL is only dialed."""
    _Handler.hosts.clear()
    _Handler.close_after_each = False
    server = _TcpServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        pool = UpstreamPool(TcpDialer(ServiceEndpoint(url=url, host="abc.fra.example.app")))
        assert await _get(pool, "/x") == b"path=/x prefix=/apps/a"
        pool.close()
    finally:
        server.shutdown()
        server.server_close()
    assert _Handler.hosts == ["abc.fra.example.app"]


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("file:///etc/passwd", "scheme"),
        ("ftp://127.0.0.1/", "scheme"),
        ("unix:///run/x.sock", "scheme"),
        ("http://user:pw@127.0.0.1:8080/", "credentials"),
        ("http://127.0.0.1:8080/other/", "origin"),
        ("http://127.0.0.1:8080/?a=1", "origin"),
        ("http:///nohost", "host"),
        ("http://127.0.0.1:99999/", "port"),
    ],
)
def test_urls_the_proxy_will_not_dial(url: str, why: str) -> None:
    with pytest.raises(EndpointError, match=why):
        dialer_for(ServiceEndpoint(url=url))


def test_urls_the_proxy_dials() -> None:
    plain = TcpDialer(ServiceEndpoint(url="http://agentic-app-x.agentic-u-a.svc.cluster.local"))
    assert (plain.address, plain.port, plain.tls, plain.host) == (
        "agentic-app-x.agentic-u-a.svc.cluster.local",
        80,
        False,
        b"agentic-app-x.agentic-u-a.svc.cluster.local",
    )
    tls = TcpDialer(ServiceEndpoint(url="https://edge.example:8443/", host="abc.fra.example.app"))
    assert (tls.port, tls.tls, tls.server_name, tls.host) == (
        8443,
        True,
        "abc.fra.example.app",
        b"abc.fra.example.app",
    )
    assert TcpDialer(ServiceEndpoint(url="wss://a.example")).port == 443
    assert TcpDialer(ServiceEndpoint(url="ws://a.example")).tls is False
