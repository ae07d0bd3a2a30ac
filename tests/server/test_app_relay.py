"""The app proxy's HTTP/1.1 relay against a real stdlib HTTP server on a Unix socket."""

from __future__ import annotations

import http.server
import socketserver
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from server.apps.relay import RelayError, Upstream, UpstreamPool


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    connections: list[int] = []
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


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


@pytest.fixture
def app_socket(tmp_path: Path) -> Iterator[str]:
    path = str(tmp_path / "app.sock")
    _Handler.connections.clear()
    _Handler.close_after_each = False
    server = _Server(path, _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield path
    server.shutdown()
    server.server_close()


async def _read(upstream: Upstream) -> bytes:
    body = b"".join([chunk async for chunk in upstream.body()])
    upstream.done()
    return body


async def _get(pool: UpstreamPool, target: str) -> bytes:
    return await _read(await pool.request("GET", target, [(b"x-forwarded-prefix", b"/apps/a")]))


async def test_connections_are_kept_alive_and_reused(app_socket: str) -> None:
    pool = UpstreamPool(app_socket)
    assert await _get(pool, "/one?x=1") == b"path=/one?x=1 prefix=/apps/a"
    head = await pool.request("HEAD", "/", [])
    assert head.status == 200 and (b"content-length", b"10") in head.headers
    assert await _read(head) == b""  # no body after HEAD, and the connection stays usable
    assert await _get(pool, "/two") == b"path=/two prefix=/apps/a"
    assert len(_Handler.connections) == 1
    pool.close()


async def test_a_stale_pooled_connection_is_retried_on_a_new_one(app_socket: str) -> None:
    _Handler.close_after_each = True
    pool = UpstreamPool(app_socket)
    for n in range(3):
        assert await _get(pool, f"/{n}") == f"path=/{n} prefix=/apps/a".encode()
    assert len(_Handler.connections) == 3
    pool.close()


async def test_request_bodies_stream_and_chunked_answers_are_decoded(app_socket: str) -> None:
    async def parts() -> AsyncIterator[bytes]:
        for part in (b"hello ", b"", b"world"):
            yield part

    pool = UpstreamPool(app_socket)
    chunked = await pool.request("POST", "/", [], parts, chunked=True)
    assert (b"transfer-encoding", b"chunked") in chunked.headers
    assert await _read(chunked) == b"echo:hello world"
    sized = await pool.request("POST", "/", [(b"content-length", b"11")], parts)
    assert await _read(sized) == b"echo:hello world"
    pool.close()


async def test_a_target_with_control_characters_is_never_sent(app_socket: str) -> None:
    pool = UpstreamPool(app_socket)
    with pytest.raises(RelayError):
        await pool.request("GET", "/a\r\nX-Injected: 1", [])
    with pytest.raises(RelayError):
        await pool.request("GET", "/a b", [])
    assert not _Handler.connections
