"""The egress proxy over its Unix socket and on TCP (the cluster's mode), with a stub resolver:
refusals happen before any connect.

Only loopback listeners of the test are ever contacted; private, link-local and metadata targets
(by literal, by DNS answer, by redirect) are refused by the proxy's decision, which is the point.
"""

from __future__ import annotations

import asyncio
import http.server
import logging
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from sandbox.egress_policy import EgressPolicy
from sandbox.egress_proxy import EgressChannel, EgressProxy
from tests.sandbox.egress_command import egress_proxy_command

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


@pytest.fixture(params=["unix", "tcp"])
async def channel(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[EgressChannel]:
    """A run's Unix socket (labelled with tenant and run), or the cluster's TCP listener on 127.0.0.1."""
    policy = EgressPolicy.from_entries(["127.0.0.2"], allow_internet=True, platform_ports=[8000])
    proxy = EgressProxy(policy, resolver=_stub)
    if request.param == "unix":
        opened = await proxy.open_channel(tmp_path / "egress.sock", LABELS)
    else:
        opened = await proxy.listen_tcp("127.0.0.1", 0)
    yield opened
    await opened.close()
    assert not (tmp_path / "egress.sock").exists()


async def _open(channel: EgressChannel) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    if channel.path is not None:
        return await asyncio.open_unix_connection(str(channel.path))
    assert channel.address is not None
    return await asyncio.open_connection(*channel.address)


def _who(channel: EgressChannel) -> str:
    """What a decision's log line says of the client: the run's ids, or the TCP peer's address."""
    return "tenant=acme run=run-42" if channel.path is not None else "tenant=- run=- client=127.0.0.1"


async def _ask(channel: EgressChannel, head: str) -> bytes:
    reader, writer = await _open(channel)
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
    reader, writer = await _open(channel)
    writer.write(f"CONNECT 127.0.0.2:{page} HTTP/1.1\r\n\r\n".encode())
    assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
    writer.write(b"GET /page HTTP/1.0\r\n\r\n")
    assert (await asyncio.wait_for(reader.read(), 10)).endswith(b"allowed page")
    writer.close()
    lines = [r.getMessage() for r in caplog.records]
    assert any("ALLOW page.test" in line and _who(channel) in line for line in lines), lines


@pytest.mark.parametrize("path", ["/to-metadata", "/to-private-name", "/to-link-local"])
async def test_redirects_into_internal_addresses_are_refused(
    channel: EgressChannel, page: int, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sandbox.egress_policy")
    answer = await _ask(channel, f"GET http://127.0.0.2:{page}{path} HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 403") and b"redirect refused" in answer, answer
    assert any("DENY" in r.getMessage() and _who(channel) in r.getMessage() for r in caplog.records)


async def test_redirects_to_allowed_targets_pass(channel: EgressChannel, page: int) -> None:
    answer = await _ask(channel, f"GET http://127.0.0.2:{page}/to-page HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer.startswith(b"HTTP/1.0 302") and b"Location: /page" in answer, answer


def test_the_cluster_command_serves_on_tcp_with_the_same_decisions(page: int, tmp_path: Path) -> None:
    """``agentic egress-proxy``, configured from the environment as its Deployment is: an allow-listed
    loopback page is fetched through it (plain HTTP and CONNECT); private, metadata and loopback
    targets are refused by its decision (nothing is sent to them), and every decision is logged."""
    with egress_proxy_command(tmp_path, {"AGENTIC_EGRESS_PROXY_ALLOW": '["127.0.0.2"]'}) as (port, log):
        proxy = f"http://127.0.0.1:{port}"
        with httpx.Client(proxy=proxy, trust_env=False, timeout=10) as client:
            assert client.get(f"http://127.0.0.2:{page}/page").text == "allowed page"
            for target in ("http://10.0.0.1/", "http://169.254.169.254/latest/", f"http://127.0.0.1:{port}/"):
                refused = client.get(target)
                assert refused.status_code == 403 and refused.headers["x-agentic-egress"] == "denied", target
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            raw.sendall(f"CONNECT 127.0.0.2:{page} HTTP/1.1\r\n\r\nGET /page HTTP/1.0\r\n\r\n".encode())
            data = b""
            while chunk := raw.recv(65536):
                data += chunk
            assert data.startswith(b"HTTP/1.1 200") and data.endswith(b"allowed page")
    text = log.read_text()
    assert f"egress ALLOW 127.0.0.2:{page}" in text and "client=127.0.0.1" in text
    assert "egress DENY 10.0.0.1:80" in text and "private address" in text
    assert "egress DENY 169.254.169.254:80" in text and "metadata address" in text
    assert "egress proxy stopped" in text
