"""The egress proxy: the only way out of a sandbox that was granted network (HTTP CONNECT and plain HTTP).

Transport (why Unix sockets): a sandbox with network keeps its own network namespace holding only
``lo``; nothing routes to the host. For each run the proxy listens on a Unix socket of its own
(:meth:`EgressProxy.open_channel`) which the backend binds into the sandbox, where a tiny forwarder
(:mod:`sandbox.host.forwarder`) serves ``127.0.0.1:3128`` and ``HTTP(S)_PROXY`` point at it. A per-run
socket means the proxy knows the tenant and run of every connection without trusting anything the
sandbox sends, and no address or port of the host is ever reachable from inside.

On a cluster the same proxy listens on TCP instead (:meth:`EgressProxy.listen_tcp`, run by
``agentic egress-proxy``): sandbox pods reach it through a Service, NetworkPolicies let only them in,
and each decision is logged with the client's address (the pod's IP). A TCP peer carries no tenant
or run the proxy could trust, so with an identity secret each request must carry the run's signed
identity (:mod:`sandbox.egress_identity`) in ``Proxy-Authorization``: a valid one labels the request
with its tenant and run; a missing, malformed, badly signed or expired one gets a 407 (logged, with
the reason) and nothing is proxied. The header never goes upstream.

Each request names a host; the proxy resolves it, decides with :class:`~sandbox.egress_policy.EgressPolicy`
and connects to the approved address itself (no second resolution: no DNS rebinding). Plain HTTP
responses that redirect are decided again and refused when the target would be. Every decision is
logged with the run's tenant and id. A tenant's own hosted apps are reached by name,
``http://<app_id>.apps.internal/``, without opening loopback or private addresses: on a run's Unix
socket through ``app_route`` (the app's socket, the server being in the same process); on the TCP
listener by forwarding plain HTTP to the server's app proxy with the verified identity
(:mod:`sandbox.egress_apps`), only when both an identity secret and ``apps_upstream`` are set.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from sandbox.egress_apps import AppsUpstream, connect_app, is_app_host
from sandbox.egress_identity import IdentityError, token_from_proxy_authorization, verify_identity
from sandbox.egress_policy import Decision, EgressPolicy, Resolver, log_decision, system_resolver

__all__ = ["AppRoute", "EgressChannel", "EgressProxy"]

logger = logging.getLogger(__name__)

AppRoute = Callable[[Mapping[str, str], str, int], Awaitable[Path | None]]
"""``(labels, host, port) -> Unix socket of one of the tenant's apps`` (None: not an app name)."""

_MAX_HEAD = 64 * 1024
_CONNECT_TIMEOUT_S = 10.0
_CHUNK = 64 * 1024
_HOP_HEADERS = {"proxy-connection", "proxy-authorization", "connection", "keep-alive"}


@dataclass
class EgressChannel:
    """One listener of the proxy (a run's Unix socket, or a TCP address); ``close`` stops it."""

    path: Path | None
    labels: Mapping[str, str]
    address: tuple[str, int] | None = None  # the TCP listener's bound host and port
    identity_secret: str | None = field(default=None, repr=False)  # TCP: requests must carry an identity
    apps_upstream: AppsUpstream | None = None  # TCP: where <app_id>.apps.internal requests go (the server)
    server: asyncio.AbstractServer | None = None
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def close(self) -> None:
        """Stop listening, end this run's open connections, remove the socket; idempotent."""
        server, self.server = self.server, None
        if server is not None:
            server.close()
        for task in list(self.tasks):
            task.cancel()
        for task in list(self.tasks):
            with contextlib.suppress(BaseException):
                await task
        if self.path is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(_CHUNK):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            if writer.can_write_eof():
                writer.write_eof()


async def _splice(
    a: tuple[asyncio.StreamReader, asyncio.StreamWriter], b: tuple[asyncio.StreamReader, asyncio.StreamWriter]
) -> None:
    """Copy both ways until both sides are done, then close both."""
    try:
        await asyncio.gather(_pipe(a[0], b[1]), _pipe(b[0], a[1]))
    finally:
        for writer in (a[1], b[1]):
            writer.close()


def _refusal(code: int, text: str, reason: str, extra: str = "") -> bytes:
    body = f"egress refused: {reason}\n".encode()
    head = (
        f"HTTP/1.1 {code} {text}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
        f"{extra}X-Agentic-Egress: denied\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


def _identify(secret: str, header_lines: list[str]) -> tuple[str, str, str]:
    """``(tenant, run, token)`` of the request's signed identity.

    Raises:
        IdentityError: none, more than one, or one :func:`verify_identity` refuses.
    """
    values = [
        line.split(":", 1)[1].strip()
        for line in header_lines
        if line.split(":", 1)[0].strip().lower() == "proxy-authorization"
    ]
    if len(values) > 1:
        raise IdentityError("malformed identity: more than one Proxy-Authorization header")
    token = token_from_proxy_authorization(values[0] if values else None)
    identity = verify_identity(secret, token)
    return identity.tenant, identity.run, token


def _split_host_port(authority: str, default_port: int) -> tuple[str, int]:
    parts = urlsplit(f"//{authority}")
    return parts.hostname or "", parts.port or default_port


class EgressProxy:
    """Per-run Unix-socket listeners in front of one policy (one proxy per backend instance)."""

    def __init__(
        self,
        policy: EgressPolicy | None = None,
        *,
        resolver: Resolver = system_resolver,
        app_route: AppRoute | None = None,
    ) -> None:
        self.policy = policy or EgressPolicy()
        self.resolver = resolver
        self.app_route = app_route

    async def open_channel(self, path: Path, labels: Mapping[str, str]) -> EgressChannel:
        """Listen on ``path`` (a new socket any uid may connect to) for one run labelled ``labels``."""
        channel = EgressChannel(path=path, labels=dict(labels))
        channel.server = await asyncio.start_unix_server(
            self._handler(channel), path=str(path), limit=_MAX_HEAD
        )
        os.chmod(path, 0o666)
        return channel

    async def listen_tcp(
        self,
        host: str,
        port: int,
        *,
        identity_secret: str | None = None,
        apps_upstream: AppsUpstream | None = None,
    ) -> EgressChannel:
        """Listen on ``host:port`` for a cluster's sandbox pods (port 0: any free one, see ``address``).

        Every connection is labelled with its peer's address (``client``), logged with each decision.
        With ``identity_secret`` every request must carry a run identity signed with it (else 407);
        its tenant and run label the request. With both that and ``apps_upstream``, plain HTTP to
        ``<app_id>.apps.internal`` goes to the server there, carrying the identity; otherwise such
        names are refused with the reason.
        """
        channel = EgressChannel(
            path=None, labels={}, identity_secret=identity_secret or None, apps_upstream=apps_upstream
        )
        server = await asyncio.start_server(self._handler(channel), host, port, limit=_MAX_HEAD)
        channel.server = server
        bound = server.sockets[0].getsockname()
        channel.address = (str(bound[0]), int(bound[1]))
        return channel

    def _handler(
        self, channel: EgressChannel
    ) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
        """Serve one connection to ``channel`` (tracked, so ``close`` ends it)."""

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            channel.tasks.add(task)
            labels = channel.labels
            if channel.path is None:  # TCP: the peer's address is all the proxy knows of the client
                peer = writer.get_extra_info("peername")
                labels = {**labels, "client": str(peer[0]) if peer else "-"}
            try:
                await self._serve(channel, labels, reader, writer)
            except (ConnectionError, OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                pass
            finally:
                channel.tasks.discard(task)
                writer.close()

        return handle

    async def decide(self, host: str, port: int, labels: Mapping[str, str]) -> Decision:
        """Decide ``host:port`` for a run with ``labels`` and log it."""
        decision = await self.policy.decide(host, port, self.resolver)
        log_decision(decision, host, port, labels)
        return decision

    async def _connect(
        self,
        channel: EgressChannel,
        labels: Mapping[str, str],
        host: str,
        port: int,
        token: str | None,
        *,
        tunnel: bool,
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | Decision:
        """Open the upstream connection, or return the refusal (logged)."""
        if channel.path is None and is_app_host(host):  # TCP: apps only through the server
            return await connect_app(channel.apps_upstream, labels, host, port, token, tunnel=tunnel)
        if self.app_route is not None:
            app_socket = await self.app_route(labels, host, port)
            if app_socket is not None:
                log_decision(Decision(True, "tenant's hosted app", str(app_socket)), host, port, labels)
                return await asyncio.open_unix_connection(str(app_socket), limit=_MAX_HEAD)
        decision = await self.decide(host, port, labels)
        if not decision.allowed or decision.address is None:
            return decision
        try:
            return await asyncio.wait_for(
                asyncio.open_connection(decision.address, port, limit=_MAX_HEAD), _CONNECT_TIMEOUT_S
            )
        except (OSError, TimeoutError) as exc:
            return Decision(False, f"upstream unreachable: {exc.__class__.__name__}")

    async def _serve(
        self,
        channel: EgressChannel,
        labels: Mapping[str, str],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        try:
            method, target, version = lines[0].split(" ", 2)
        except ValueError:
            writer.write(_refusal(400, "Bad Request", "malformed request line"))
            return
        token: str | None = None
        if channel.identity_secret is not None:
            try:
                tenant, run, token = _identify(channel.identity_secret, lines[1:])
            except IdentityError as exc:
                self._refuse_identity(writer, method, target, labels, str(exc))
                return
            labels = {**labels, "tenant": tenant, "run": run}
        if method.upper() == "CONNECT":
            host, port = _split_host_port(target, 443)
            upstream = await self._connect(channel, labels, host, port, token, tunnel=True)
            if isinstance(upstream, Decision):
                writer.write(_refusal(403, "Forbidden", upstream.reason))
                await writer.drain()
                return
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await writer.drain()
            await _splice((reader, writer), upstream)
            return
        await self._plain_http(channel, labels, token, (method, target, version), lines[1:], reader, writer)

    @staticmethod
    def _refuse_identity(
        writer: asyncio.StreamWriter, method: str, target: str, labels: Mapping[str, str], reason: str
    ) -> None:
        """Log the refusal like any decision and answer 407 with a Basic challenge."""
        try:
            if method.upper() == "CONNECT":
                host, port = _split_host_port(target, 443)
            else:
                url = urlsplit(target)
                host, port = url.hostname or "", url.port or 80
        except ValueError:  # a bad port: the log names the target as sent
            host, port = "", 0
        log_decision(Decision(False, f"run identity refused: {reason}"), host or target[:80], port, labels)
        challenge = 'Proxy-Authenticate: Basic realm="agentic-egress"\r\n'
        writer.write(
            _refusal(407, "Proxy Authentication Required", f"run identity refused: {reason}", challenge)
        )

    async def _plain_http(
        self,
        channel: EgressChannel,
        labels: Mapping[str, str],
        token: str | None,
        request_line: tuple[str, str, str],
        header_lines: list[str],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        """Forward one absolute-URI request (``Connection: close``); re-decide a redirect's target."""
        method, target, version = request_line
        url = urlsplit(target)
        if url.scheme != "http" or not url.hostname:
            reason = (
                "use CONNECT for https" if url.scheme == "https" else f"unsupported target {target[:80]!r}"
            )
            writer.write(_refusal(400, "Bad Request", reason))
            return
        port = url.port or 80
        upstream = await self._connect(channel, labels, url.hostname, port, token, tunnel=False)
        if isinstance(upstream, Decision):
            writer.write(_refusal(403, "Forbidden", upstream.reason))
            return
        up_reader, up_writer = upstream
        path = url.path or "/"
        if url.query:
            path += "?" + url.query
        if channel.path is None and token is not None and is_app_host(url.hostname):
            authority = url.hostname + (f":{url.port}" if url.port else "")
            up_writer.write(AppsUpstream.request_head(method, path, version, header_lines, authority, token))
        else:
            headers = [
                h for h in header_lines if h and h.split(":", 1)[0].strip().lower() not in _HOP_HEADERS
            ]
            request = f"{method} {path} {version}\r\n" + "".join(f"{h}\r\n" for h in headers)
            up_writer.write((request + "Connection: close\r\n\r\n").encode("latin-1"))
        await up_writer.drain()
        sender = asyncio.ensure_future(_pipe(reader, up_writer))
        try:
            response_head = await up_reader.readuntil(b"\r\n\r\n")
            refused = await self._refused_redirect(channel, labels, target, response_head)
            if refused is not None:
                writer.write(_refusal(403, "Forbidden", f"redirect refused: {refused.reason}"))
                return
            writer.write(response_head)
            await _pipe(up_reader, writer)
        finally:
            sender.cancel()
            with contextlib.suppress(BaseException):
                await sender
            up_writer.close()

    async def _refused_redirect(
        self, channel: EgressChannel, labels: Mapping[str, str], base: str, head: bytes
    ) -> Decision | None:
        """The refusal for a 3xx whose ``Location`` leads somewhere the policy refuses, else None."""
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) < 2 or not parts[1].startswith("3"):
            return None
        location = next(
            (ln.split(":", 1)[1].strip() for ln in lines[1:] if ln.lower().startswith("location:")), None
        )
        if not location:
            return None
        nxt = urlsplit(urljoin(base, location))
        if nxt.scheme not in ("http", "https") or not nxt.hostname:
            return None
        port = nxt.port or (443 if nxt.scheme == "https" else 80)
        if channel.path is None and is_app_host(nxt.hostname):  # decided when the client follows it
            return None
        if self.app_route is not None and await self.app_route(labels, nxt.hostname, port) is not None:
            return None
        decision = await self.decide(nxt.hostname, port, labels)
        return None if decision.allowed else decision
