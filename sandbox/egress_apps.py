"""The cluster's route from a sandbox to its tenant's hosted apps: ``http://<app_id>.apps.internal/``.

Why: on one host the egress proxy lives inside the server and hands a request for
``<app_id>.apps.internal`` straight to the app's Unix socket (``EgressProxy.app_route``). On a
cluster the proxy is its own Deployment and a Kata or Unikraft app has no socket, only a URL the
server dials; the server's reverse proxy is the one place that knows apps and checks who may open
them. So the TCP listener forwards such a request to the server (``AGENTIC_EGRESS_PROXY_APPS_UPSTREAM``)
on the app's own host, and proves the tenant with the run's signed identity in
:data:`EGRESS_IDENTITY_HEADER`, which it has just verified and which the server verifies again with
the same secret (its own issuer's): the server serves the app only to that tenant. Whatever the
client sent in that header is dropped first.

Only plain HTTP proxying is routed (what browsers and HTTP clients use for ``http://`` URLs): a
``CONNECT`` tunnel would carry requests the proxy does not see, so it could not label them.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from sandbox.egress_policy import Decision, log_decision

__all__ = [
    "APPS_INTERNAL_DOMAIN",
    "EGRESS_IDENTITY_HEADER",
    "AppsUpstream",
    "app_id_of_internal_host",
    "app_route_refusal",
    "connect_app",
    "is_app_host",
]

APPS_INTERNAL_DOMAIN = "apps.internal"  # a sandbox names its tenant's app <app_id>.apps.internal
EGRESS_IDENTITY_HEADER = "X-Agentic-Egress-Identity"  # the run's token, added by the proxy only

_APP_ID = re.compile(r"^[0-9a-z][0-9a-z-]{0,62}$")  # as server.apps.origin reads app hosts
_CONNECT_TIMEOUT_S = 10.0
_LIMIT = 64 * 1024
_DROPPED = {
    "host",
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    EGRESS_IDENTITY_HEADER.lower(),
}


def is_app_host(host: str) -> bool:
    """``host`` (a name, no port) is under ``.apps.internal``: never resolved, routed or refused as such."""
    return host.lower().rstrip(".").endswith("." + APPS_INTERNAL_DOMAIN)


def app_id_of_internal_host(host: str) -> str | None:
    """The app id when ``host`` (a name, no port) is ``<app_id>.apps.internal``, else None."""
    label, dot, domain = host.lower().rstrip(".").partition(".")
    if not dot or domain != APPS_INTERNAL_DOMAIN:
        return None
    return label if _APP_ID.match(label) else None


@dataclass(frozen=True)
class AppsUpstream:
    """The server's internal address, where app requests from sandboxes go (``http://host:port``)."""

    host: str
    port: int

    @classmethod
    def from_url(cls, url: str) -> AppsUpstream:
        """Parse ``http://host[:port]`` (the server's Service; no path, query or credentials).

        Raises:
            ValueError: another scheme, no host, or anything beyond ``scheme://host:port``.
        """
        try:
            parts = urlsplit(url.strip())
            port = parts.port
        except ValueError as exc:
            raise ValueError(f"apps upstream {url!r}: {exc}") from None
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(
                f"apps upstream {url!r}: give the server's internal http://host:port "
                "(e.g. http://agentic-server.agentic-system.svc.cluster.local:80)"
            )
        if parts.username or parts.password or parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError(f"apps upstream {url!r}: only http://host:port, no credentials, path or query")
        return cls(host=parts.hostname, port=port or 80)

    @property
    def address(self) -> str:
        """``host:port``, as the proxy's log names it."""
        return f"{self.host}:{self.port}"

    async def open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A new connection to the server (one per proxied request).

        Raises:
            OSError: refused or unreachable (also a timeout, as ``TimeoutError``).
        """
        return await asyncio.wait_for(
            asyncio.open_connection(self.host, self.port, limit=_LIMIT), _CONNECT_TIMEOUT_S
        )

    @staticmethod
    def request_head(
        method: str, path: str, version: str, header_lines: list[str], authority: str, token: str
    ) -> bytes:
        """The request as the server gets it: on the app's host, with the run's identity, one shot.

        ``header_lines`` are the client's; its ``Host``, hop-by-hop and proxy headers and any
        identity header it sent are dropped, ``authority`` (the ``<app_id>.apps.internal[:port]``
        the proxy routed) becomes ``Host`` and ``token`` (verified by the proxy) the identity.
        """
        kept = [h for h in header_lines if h and h.split(":", 1)[0].strip().lower() not in _DROPPED]
        lines = [
            f"{method} {path} {version}",
            f"Host: {authority}",
            *kept,
            f"{EGRESS_IDENTITY_HEADER}: {token}",
            "Connection: close",
        ]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def app_route_refusal(
    upstream: AppsUpstream | None, host: str, token: str | None, *, tunnel: bool
) -> str | None:
    """Why the TCP listener will not route this ``*.apps.internal`` request (None: it will).

    ``token`` is the request's verified run identity (None: the listener checks none).
    """
    if upstream is None:
        return "hosted apps are not routed here (AGENTIC_EGRESS_PROXY_APPS_UPSTREAM is empty)"
    if token is None:
        return "hosted apps need the run's signed identity (AGENTIC_EGRESS_PROXY_IDENTITY_SECRET is empty)"
    if app_id_of_internal_host(host) is None:
        return "not an app's name (<app_id>.apps.internal)"
    if tunnel:
        return "CONNECT to a hosted app is not routed: proxy plain HTTP to http://<app_id>.apps.internal/"
    return None


async def connect_app(
    upstream: AppsUpstream | None,
    labels: Mapping[str, str],
    host: str,
    port: int,
    token: str | None,
    *,
    tunnel: bool,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | Decision:
    """The connection to the server for a ``*.apps.internal`` request, or the refusal (both logged)."""
    refusal = app_route_refusal(upstream, host, token, tunnel=tunnel)
    if upstream is None or refusal is not None:
        decision = Decision(False, refusal or "hosted apps are not routed here")
    else:
        try:
            opened = await upstream.open()
        except (OSError, TimeoutError) as exc:
            decision = Decision(False, f"the platform's app proxy is unreachable: {exc.__class__.__name__}")
        else:
            allowed = Decision(True, "tenant's hosted app, via the server", upstream.address)
            log_decision(allowed, host, port, labels)
            return opened
    log_decision(decision, host, port, labels)
    return decision
