"""Where the reverse proxy connects for one app: its Unix socket on this host, or a URL from the backend.

Why one small protocol: the relay (:mod:`server.apps.relay`) and the WebSocket path of
:mod:`server.apps.proxy` only need "open a byte stream to the app", "what Host to send" and "open a
WebSocket to the app"; everything else (framing, pooling, headers policy) is the same for a local
sandbox's socket and a remote backend's Service or edge URL. :func:`dialer_for` picks the
implementation from the handle's :class:`~sandbox.service.ServiceEndpoint`.

A URL endpoint comes only from the backend (a Kata Service's ClusterIP, a Unikraft app's edge),
never from a client; it is still checked: ``http``, ``https``, ``ws`` or ``wss``, a host, no
credentials, no path beyond ``/``, no query. Connections to it never go through the server's own
``HTTP(S)_PROXY``.
"""

from __future__ import annotations

import asyncio
import ssl
from functools import cache
from typing import Any, Protocol
from urllib.parse import urlsplit

from websockets.asyncio.client import ClientConnection, connect, unix_connect

from sandbox.service import ServiceEndpoint

__all__ = ["Connection", "Dialer", "EndpointError", "TcpDialer", "UnixDialer", "dialer_for"]

LIMIT = 64 * 1024  # the longest response head / chunk-size line a stream reads
_TLS_SCHEMES = {"https", "wss"}
_SCHEMES = {"http", "ws"} | _TLS_SCHEMES

Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class EndpointError(ValueError):
    """The backend gave an endpoint the proxy will not dial (scheme, credentials, path...)."""


class Dialer(Protocol):
    """Opens connections to one app's endpoint."""

    endpoint: ServiceEndpoint
    host: bytes  # the Host header requests to the app carry

    async def open(self) -> Connection:
        """A new byte stream to the app (raises ``OSError`` when nothing answers)."""
        ...

    async def websocket(self, target: str, **options: Any) -> ClientConnection:
        """A WebSocket to ``target`` (path and query) on the app; ``options`` go to ``websockets``."""
        ...


class UnixDialer:
    """An app behind a Unix socket on this host (the local backends' in-sandbox forwarder)."""

    host = b"app"

    def __init__(self, endpoint: ServiceEndpoint) -> None:
        assert endpoint.unix_socket is not None
        self.endpoint = endpoint
        self.path = str(endpoint.unix_socket)

    async def open(self) -> Connection:
        return await asyncio.open_unix_connection(self.path, limit=LIMIT)

    async def websocket(self, target: str, **options: Any) -> ClientConnection:
        return await unix_connect(self.path, uri="ws://app" + target, **options)


@cache
def _tls_context() -> ssl.SSLContext:
    return ssl.create_default_context()


class TcpDialer:
    """An app at a URL (a remote backend's Service or edge), over TCP, with TLS for https / wss."""

    def __init__(self, endpoint: ServiceEndpoint) -> None:
        assert endpoint.url is not None
        parts = urlsplit(endpoint.url)
        scheme = parts.scheme.lower()
        if scheme not in _SCHEMES:
            raise EndpointError(f"refusing to dial {scheme or 'no'} scheme (http, https, ws or wss only)")
        try:
            port = parts.port
        except ValueError as exc:
            raise EndpointError(f"bad port in the app's URL: {exc}") from exc
        if not parts.hostname or parts.username is not None or parts.password is not None:
            raise EndpointError("the app's URL needs a host and no credentials")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise EndpointError("the app's URL must be an origin (no path, query or fragment)")
        self.endpoint = endpoint
        self.tls = scheme in _TLS_SCHEMES
        self.address = parts.hostname
        self.port = port or (443 if self.tls else 80)
        authority = endpoint.host or parts.netloc  # an edge serving many apps tells them apart by Host
        if not authority.isascii():
            raise EndpointError("the app's host must be ASCII (IDNA-encoded)")
        self.host = authority.encode("ascii")
        self.server_name = urlsplit(f"//{authority}").hostname or self.address

    async def open(self) -> Connection:
        if not self.tls:
            return await asyncio.open_connection(self.address, self.port, limit=LIMIT)
        return await asyncio.open_connection(
            self.address, self.port, limit=LIMIT, ssl=_tls_context(), server_hostname=self.server_name
        )

    async def websocket(self, target: str, **options: Any) -> ClientConnection:
        uri = ("wss://" if self.tls else "ws://") + self.host.decode("ascii") + target
        if self.tls:
            options |= {"ssl": _tls_context(), "server_hostname": self.server_name}
        return await connect(uri, host=self.address, port=self.port, proxy=None, **options)


def dialer_for(endpoint: ServiceEndpoint) -> Dialer:
    """The dialer for ``endpoint``.

    Raises:
        EndpointError: a URL the proxy will not dial.
    """
    if endpoint.unix_socket is not None:
        return UnixDialer(endpoint)
    return TcpDialer(endpoint)
