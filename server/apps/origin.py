"""Each hosted app on an origin of its own: ``{app_id}.{domain}`` (default ``apps.localhost``).

Why: a page served at ``/apps/{id}/`` on the API's own origin shares that origin with the web UI,
so the app's scripts could read the UI's API key from ``localStorage`` and call the API as the
visitor, or read another app (cookies are not a boundary between paths). Browsers keep origins
apart, so each app gets its own host name; ``*.localhost`` resolves to loopback in browsers with no
DNS set-up, and a deployment points a wildcard DNS name at the server (``infra/`` has the Ingress).

:class:`AppOriginMiddleware` sends every request on an app's host to that app's proxy (never to the
API or the UI); the app keeps its ``/apps/{id}`` prefix there, so ``ROOT_PATH`` and links work the
same on both origins. On the API's origin the proxy serves only requests that carry a token header
(scripts and API clients: a browser navigation cannot carry one) and redirects browsers to the
app's own origin. An empty domain serves apps on the API's origin, as before (single-user set-ups).

Sandboxes on a cluster reach their tenant's apps as ``<app_id>.apps.internal`` through the egress
proxy, which forwards them here on that host with the run's signed identity
(:mod:`sandbox.egress_apps`). Those hosts are app hosts too (marked :data:`EGRESS_APP_KEY`): the
proxy then accepts that identity, and nothing else, as the credential. No Ingress rule names such a
host, so only what reaches the server's port inside the cluster uses it.
"""

from __future__ import annotations

import re

from starlette.types import ASGIApp, Receive, Scope, Send

from sandbox.egress_apps import APPS_INTERNAL_DOMAIN, is_app_host
from server.apps.manager import APP_PREFIX

__all__ = ["EGRESS_APP_KEY", "ORIGIN_APP_KEY", "AppOriginMiddleware", "app_id_of_host", "app_origin"]

ORIGIN_APP_KEY = "agentic.app_origin"  # scope key: the app whose own host the request came to
EGRESS_APP_KEY = "agentic.app_egress"  # scope key: that host is <app_id>.apps.internal (from a sandbox)
_NO_APP = "-"  # the app id of an internal host that names none (never an app's id): answered 404

_APP_ID = re.compile(r"^[0-9a-z][0-9a-z-]{0,62}$")


def _host_header(scope: Scope) -> str:
    for key, value in scope.get("headers", ()):
        if key == b"host":
            return str(value.decode("latin-1"))
    return ""


def _split_host(host: str) -> tuple[str, str]:
    """``name[:port]`` -> (lower-case name, ``:port`` or "")."""
    if host.startswith("["):  # an IPv6 literal is never an app's host
        return host.lower(), ""
    name, sep, port = host.rpartition(":")
    if not sep or not port.isdigit():
        return host.lower(), ""
    return name.lower(), f":{port}"


def app_id_of_host(host: str, domain: str) -> str | None:
    """The app id when ``host`` is ``{app_id}.{domain}[:port]``, else None."""
    if not domain:
        return None
    name, _ = _split_host(host)
    suffix = "." + domain.lower()
    if not name.endswith(suffix):
        return None
    label = name[: -len(suffix)]
    return label if _APP_ID.match(label) else None


def app_origin(scope: Scope, app_id: str, domain: str) -> str:
    """``scheme://{app_id}.{domain}[:port]``, on the port the request came in on."""
    _, port = _split_host(_host_header(scope))
    scheme = str(scope.get("scheme", "http")).replace("ws", "http")
    return f"{scheme}://{app_id}.{domain}{port}"


class AppOriginMiddleware:
    """Send requests on ``{app_id}.{domain}`` or ``*.apps.internal`` to that app's proxy; the rest on."""

    def __init__(self, app: ASGIApp, domain: str) -> None:
        self.app = app
        self.domain = domain

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            host = _host_header(scope)
            app_id, egress = app_id_of_host(host, self.domain), False
            if app_id is None and is_app_host(_split_host(host)[0]):  # every such host is an app's
                app_id, egress = app_id_of_host(host, APPS_INTERNAL_DOMAIN) or _NO_APP, True
            if app_id is not None:
                prefix = f"{APP_PREFIX}/{app_id}"
                path: str = scope["path"]
                if path != prefix and not path.startswith(prefix + "/"):
                    path = prefix + (path if path.startswith("/") else "/" + path)
                scope = {**scope, "path": path, "raw_path": path.encode(), ORIGIN_APP_KEY: app_id}
                if egress:
                    scope[EGRESS_APP_KEY] = True
        await self.app(scope, receive, send)
