"""The egress proxy over its Unix socket, with a stub resolver: refusals happen before any connect.

Only loopback listeners of the test are ever contacted; private, link-local and metadata targets
(by literal, by DNS answer, by redirect) are refused by the proxy's decision, which is the point.
"""

from __future__ import annotations

import asyncio
import http.server
import logging
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from sandbox.egress_policy import EgressPolicy
from sandbox.egress_proxy import EgressChannel, EgressProxy

LABELS = {"tenant": "acme", "run": "run-42"}


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        routes = {
            "/to-metadata": "http://169.254.169.254/latest/meta-data/",
            "/to-private-name": "http://intranet.example/admin",
            "/to-link-local": "https://169.254.10.10/",
            "/to-page": "/page",
        }
        if self.path in routes:
            self.send_response(302)
            self.send_header("Location", routes[self.path])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = b"allowed page"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def page() -> Iterator[int]:
    """An HTTP server on 127.0.0.2 (the allow-listed address of these tests)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.2", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


async def _stub(host: str, port: int) -> list[str]:
    answers = {
        "intranet.example": ["10.0.0.7"],
        "meta.example": ["169.254.169.254"],
        "page.test": ["127.0.0.2"],
    }
    return answers[host]


@pytest.fixture
async def channel(tmp_path: Path) -> AsyncIterator[EgressChannel]:
    policy = EgressPolicy.from_entries(["127.0.0.2"], allow_internet=True, platform_ports=[8000])
    proxy = EgressProxy(policy, resolver=_stub)
    opened = await proxy.open_channel(tmp_path / "egress.sock", LABELS)
    yield opened
    await opened.close()
    assert not (tmp_path / "egress.sock").exists()


async def _ask(channel: EgressChannel, head: str) -> bytes:
    reader, writer = await asyncio.open_unix_connection(str(channel.path))
    writer.write(head.encode())
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return data


@pytest.mark.parametrize(
    "target",
    [
        "169.254.169.254:80",
        "10.0.0.1:443",
        "192.168.1.1:22",
        "meta.example:80",
        "intranet.example:443",
        "127.0.0.1:8000",
        "127.0.0.2:8000",
        "[::1]:443",
        "[fd00:ec2::254]:80",
    ],
)
async def test_connect_to_internal_targets_is_refused(channel: EgressChannel, target: str) -> None:
    answer = await _ask(channel, f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 403"), answer


async def test_plain_http_to_metadata_is_refused(channel: EgressChannel) -> None:
    answer = await _ask(
        channel, "GET http://169.254.169.254/latest/ HTTP/1.1\r\nHost: 169.254.169.254\r\n\r\n"
    )
    assert answer.startswith(b"HTTP/1.1 403") and b"metadata" in answer


async def test_allow_listed_page_is_fetched_and_decisions_are_logged(
    channel: EgressChannel, page: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sandbox.egress_policy")
    answer = await _ask(channel, f"GET http://page.test:{page}/page HTTP/1.1\r\nHost: page.test\r\n\r\n")
    assert answer.startswith(b"HTTP/1.0 200") and answer.endswith(b"allowed page"), answer
    reader, writer = await asyncio.open_unix_connection(str(channel.path))
    writer.write(f"CONNECT 127.0.0.2:{page} HTTP/1.1\r\n\r\n".encode())
    assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
    writer.write(b"GET /page HTTP/1.0\r\n\r\n")
    assert (await asyncio.wait_for(reader.read(), 10)).endswith(b"allowed page")
    writer.close()
    lines = [r.getMessage() for r in caplog.records]
    assert any("ALLOW page.test" in line and "tenant=acme run=run-42" in line for line in lines), lines


@pytest.mark.parametrize("path", ["/to-metadata", "/to-private-name", "/to-link-local"])
async def test_redirects_into_internal_addresses_are_refused(
    channel: EgressChannel, page: int, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sandbox.egress_policy")
    answer = await _ask(channel, f"GET http://127.0.0.2:{page}{path} HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 403") and b"redirect refused" in answer, answer
    assert any("DENY" in r.getMessage() and "tenant=acme" in r.getMessage() for r in caplog.records)


async def test_redirects_to_allowed_targets_pass(channel: EgressChannel, page: int) -> None:
    answer = await _ask(channel, f"GET http://127.0.0.2:{page}/to-page HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer.startswith(b"HTTP/1.0 302") and b"Location: /page" in answer, answer
