"""The cluster's TCP egress proxy with run identities: a signed request is labelled with its tenant and
run, anything else gets 407, and the credential never travels upstream.

Real clients (curl, urllib, requests, httpx) put the userinfo of ``HTTP(S)_PROXY`` into
``Proxy-Authorization`` on plain HTTP and on CONNECT (checked against a TLS page with a certificate
made here). Only loopback listeners of the test are contacted.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import http.server
import ipaddress
import logging
import os
import ssl
import subprocess
import threading
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pydantic
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sandbox.egress_identity import IDENTITY_USER, proxy_url_with_identity, sign_identity
from sandbox.egress_listener import EgressListenerSettings
from sandbox.egress_policy import EgressPolicy
from sandbox.egress_proxy import EgressChannel, EgressProxy
from tests.sandbox.egress_command import egress_proxy_command

SECRET = "k" * 48
PAGE_HOST = "127.0.0.2"  # the allow-listed address of these tests


class _Recorder(http.server.BaseHTTPRequestHandler):
    seen: list[dict[str, str]] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        _Recorder.seen.append({k.lower(): v for k, v in self.headers.items()})
        body = b"allowed page"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def _serve(server: http.server.ThreadingHTTPServer) -> Iterator[int]:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture
def page() -> Iterator[int]:
    _Recorder.seen = []
    yield from _serve(http.server.ThreadingHTTPServer((PAGE_HOST, 0), _Recorder))


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.2 (its own CA) and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, PAGE_HOST)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(PAGE_HOST))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return folder / "cert.pem", folder / "key.pem"


@pytest.fixture
def tls_page(tls_files: tuple[Path, Path]) -> Iterator[int]:
    server = http.server.ThreadingHTTPServer((PAGE_HOST, 0), _Recorder)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*tls_files)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    yield from _serve(server)


@pytest.fixture
async def channel() -> AsyncIterator[EgressChannel]:
    """The cluster's listener on 127.0.0.1, requiring identities signed with :data:`SECRET`."""
    policy = EgressPolicy.from_entries([PAGE_HOST], allow_internet=False, platform_ports=[8000])
    opened = await EgressProxy(policy).listen_tcp("127.0.0.1", 0, identity_secret=SECRET)
    yield opened
    await opened.close()


def _token(run: str, tenant: str = "acme", *, expires_at: int | None = None, secret: str = SECRET) -> str:
    return sign_identity(secret, tenant=tenant, run=run, expires_at=expires_at or int(time.time()) + 300)


def _basic(token: str) -> str:
    return "Basic " + base64.b64encode(f"{IDENTITY_USER}:{token}".encode()).decode()


async def _ask(channel: EgressChannel, head: str) -> bytes:
    assert channel.address is not None
    reader, writer = await asyncio.open_connection(*channel.address)
    writer.write(head.encode())
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return data


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "sandbox.egress_policy"]


async def test_a_signed_request_is_labelled_and_its_credential_stays_here(
    channel: EgressChannel, page: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sandbox.egress_policy")
    head = f"Proxy-Authorization: {_basic(_token('run-7'))}\r\nX-Kept: yes\r\n"
    answer = await _ask(channel, f"GET http://{PAGE_HOST}:{page}/p HTTP/1.1\r\nHost: x\r\n{head}\r\n")
    assert answer.startswith(b"HTTP/1.0 200") and answer.endswith(b"allowed page"), answer
    (seen,) = _Recorder.seen
    assert "proxy-authorization" not in seen and seen["x-kept"] == "yes"
    reader, writer = await asyncio.open_connection(*channel.address)  # type: ignore[misc]
    writer.write(f"CONNECT {PAGE_HOST}:{page} HTTP/1.1\r\n{head}\r\nGET /t HTTP/1.0\r\n\r\n".encode())
    assert (await asyncio.wait_for(reader.read(), 10)).endswith(b"allowed page")
    writer.close()
    assert "proxy-authorization" not in _Recorder.seen[1]  # inside the tunnel: what the client sent
    allowed = [line for line in _lines(caplog) if f"ALLOW {PAGE_HOST}:{page}" in line]
    assert len(allowed) == 2
    assert all("tenant=acme run=run-7 client=127.0.0.1" in line for line in allowed), allowed


@pytest.mark.parametrize(
    ("credential", "reason"),
    [
        (None, "Proxy-Authorization missing"),
        ("Basic " + base64.b64encode(b"agentic:v1.nope.nope").decode(), "bad signature"),
        (_basic(_token("r1", secret="x" * 40)), "bad signature"),
        (_basic(_token("r1", expires_at=1_000)), "expired identity"),
        (_basic("garbage"), "malformed identity"),
        ("Bearer abc", "scheme 'Bearer'"),
    ],
)
async def test_without_a_valid_identity_the_answer_is_407(
    channel: EgressChannel, page: int, credential: str | None, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sandbox.egress_policy")
    extra = f"Proxy-Authorization: {credential}\r\n" if credential else ""
    for head in (
        f"GET http://{PAGE_HOST}:{page}/p HTTP/1.1\r\nHost: x\r\n{extra}\r\n",
        f"CONNECT {PAGE_HOST}:{page} HTTP/1.1\r\n{extra}\r\n",
    ):
        answer = await _ask(channel, head)
        assert answer.startswith(b"HTTP/1.1 407 Proxy Authentication Required"), answer
        assert b'Proxy-Authenticate: Basic realm="agentic-egress"' in answer
        assert b"run identity refused: " in answer and reason.encode() in answer, answer
    assert _Recorder.seen == []  # nothing was proxied
    denied = [line for line in _lines(caplog) if "DENY" in line]
    assert len(denied) == 2 and all(reason in line and "client=127.0.0.1" in line for line in denied)


async def test_two_credentials_are_refused(channel: EgressChannel, page: int) -> None:
    """A second header could smuggle another identity past whichever the proxy read: neither counts."""
    good = _basic(_token("r1"))
    head = f"Proxy-Authorization: {good}\r\nProxy-Authorization: {good}\r\n"
    answer = await _ask(channel, f"GET http://{PAGE_HOST}:{page}/ HTTP/1.1\r\nHost: x\r\n{head}\r\n")
    assert answer.startswith(b"HTTP/1.1 407") and b"more than one" in answer


def _clients(proxy: str, url: str, ca: Path) -> dict[str, tuple[int, str]]:
    """Each client fetches ``url`` through ``proxy`` as a sandboxed program would (proxy variables)."""
    env = {**os.environ, "HTTP_PROXY": proxy, "HTTPS_PROXY": proxy, "http_proxy": proxy, "https_proxy": proxy}
    env.pop("NO_PROXY", None)
    env.pop("no_proxy", None)
    curl = subprocess.run(
        ["curl", "-sS", "--cacert", str(ca), "-w", "\n%{http_code}", url],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    body, _, code = curl.stdout.rpartition("\n")
    out = {"curl": (int(code or 0), body or curl.stderr)}
    context = ssl.create_default_context(cafile=str(ca))
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({"http": proxy, "https": proxy}),
        urllib.request.HTTPSHandler(context=context),
    )
    with opener.open(url, timeout=10) as response:
        out["urllib"] = (response.status, response.read().decode())
    got = requests.get(url, proxies={"http": proxy, "https": proxy}, verify=str(ca), timeout=10)
    out["requests"] = (got.status_code, got.text)
    with httpx.Client(proxy=proxy, verify=context, trust_env=False, timeout=10) as client:
        fetched = client.get(url)
        out["httpx"] = (fetched.status_code, fetched.text)
    return out


@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_common_clients_send_the_userinfo_as_proxy_authorization(
    channel: EgressChannel,
    page: int,
    tls_page: int,
    tls_files: tuple[Path, Path],
    scheme: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """curl, urllib, requests and httpx: plain HTTP (forwarded) and HTTPS (CONNECT) both carry it."""
    if not os.access("/usr/bin/curl", os.X_OK):
        pytest.skip("curl not installed (apt-get install curl)")
    caplog.set_level(logging.INFO, logger="sandbox.egress_policy")
    assert channel.address is not None
    proxy = proxy_url_with_identity(f"http://127.0.0.1:{channel.address[1]}", _token(f"run-{scheme}"))
    port = page if scheme == "http" else tls_page
    results = await asyncio.to_thread(_clients, proxy, f"{scheme}://{PAGE_HOST}:{port}/c", tls_files[0])
    assert results == {name: (200, "allowed page") for name in ("curl", "urllib", "requests", "httpx")}
    assert len(_Recorder.seen) == 4 and all("proxy-authorization" not in seen for seen in _Recorder.seen)
    allowed = [line for line in _lines(caplog) if f"ALLOW {PAGE_HOST}:{port}" in line]
    assert len(allowed) == 4 and all(f"tenant=acme run=run-{scheme} " in line for line in allowed), allowed
    # Without the userinfo the same clients are turned away (curl shown; the others behave alike).
    bare = await asyncio.to_thread(
        subprocess.run,
        [
            "curl",
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-x",
            f"http://127.0.0.1:{channel.address[1]}",
        ]
        + ["--cacert", str(tls_files[0]), f"{scheme}://{PAGE_HOST}:{port}/c"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert bare.stdout == "407" or "407" in bare.stderr, (bare.stdout, bare.stderr)


def test_the_listener_settings_take_one_secret() -> None:
    assert EgressListenerSettings(identity_secret="").identity_secret is None  # type: ignore[arg-type]
    assert EgressListenerSettings().identity_secret is None
    with pytest.raises(pydantic.ValidationError, match="at least 32"):
        EgressListenerSettings(identity_secret="too-short")  # type: ignore[arg-type]
    assert "k" * 48 not in repr(EgressListenerSettings(identity_secret=SECRET))  # type: ignore[arg-type]


def test_the_cluster_command_requires_identities_when_given_the_secret(page: int, tmp_path: Path) -> None:
    """``agentic egress-proxy`` configured from the environment as its Deployment is, secret included."""
    env = {"AGENTIC_EGRESS_PROXY_ALLOW": f'["{PAGE_HOST}"]', "AGENTIC_EGRESS_PROXY_IDENTITY_SECRET": SECRET}
    with egress_proxy_command(tmp_path, env) as (port, log):
        assert "run identities required" in log.read_text(), log.read_text()
        url = f"http://{PAGE_HOST}:{page}/page"
        with httpx.Client(proxy=f"http://127.0.0.1:{port}", trust_env=False, timeout=10) as client:
            refused = client.get(url)
        assert refused.status_code == 407 and "Proxy-Authorization missing" in refused.text
        signed = proxy_url_with_identity(f"http://127.0.0.1:{port}", _token("run-cli", "globex"))
        with httpx.Client(proxy=signed, trust_env=False, timeout=10) as client:
            assert client.get(url).text == "allowed page"
    text = log.read_text()
    assert f"egress ALLOW {PAGE_HOST}:{page}" in text and "tenant=globex run=run-cli client=127.0.0.1" in text
    assert f"egress DENY {PAGE_HOST}:{page}" in text and "run identity refused" in text
    assert SECRET not in text
