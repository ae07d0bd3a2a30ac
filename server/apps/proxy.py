"""The reverse proxy at ``/apps/{app_id}/``: the only way into a hosted app (HTTP, SSE, WebSocket).

Why a raw ASGI app: bodies stream both ways chunk by chunk (uploads, Server-Sent Events), and a
WebSocket is relayed frame by frame, without buffering. Upstream is where the app's service handle
says it is (:mod:`server.apps.dialer`): a Unix socket for the local backends (the forwarder inside
the sandbox relays to its port), or a URL for a remote one (a Kata Service, a Unikraft edge). The
app learns its prefix from ``X-Forwarded-Prefix`` (and ``ROOT_PATH`` in its environment). Our
credentials (token header, access cookie, API key) are removed before the request reaches the app.

Origins (see :mod:`server.apps.origin`): with ``AGENTIC_APPS_DOMAIN`` set (the default), browsers
are sent to the app's own host ``{id}.{domain}``; on the API's origin only token-carrying requests
are served. Access (see :mod:`server.apps.access`): ``public`` apps are open; otherwise the app's token
(``Authorization: Bearer`` or ``X-App-Token``), a valid signed-link cookie, or an API key of the
owning tenant. A signed link (``?agentic_link=``) sets the cookie and redirects to the clean URL.
On a sandbox's ``<app_id>.apps.internal`` host (the cluster's egress proxy forwarding it) the only
credential is the run's signed identity in ``X-Agentic-Egress-Identity``, checked with the secret the
backend signs with: the app is served when it belongs to that tenant; another tenant's app is "no
such app", like an unknown one. The header never reaches an app and means nothing on other hosts.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections.abc import AsyncIterator, Callable
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

from starlette.types import Receive, Scope, Send
from websockets.exceptions import ConnectionClosed, WebSocketException

from sandbox.egress_apps import EGRESS_IDENTITY_HEADER
from sandbox.egress_identity import IdentityError, RunIdentity
from sandbox.service import ServiceEndpoint
from server.apps.access import COOKIE, LINK_PARAM, hash_token
from server.apps.dialer import EndpointError, dialer_for
from server.apps.manager import AppError, AppManager
from server.apps.origin import EGRESS_APP_KEY, ORIGIN_APP_KEY, app_origin
from server.apps.relay import RelayError, UpstreamPool
from server.apps.store import AppRecord
from server.keys import KeyRing

__all__ = ["AppProxy"]

logger = logging.getLogger(__name__)

_HOP = {
    b"connection",
    b"keep-alive",
    b"proxy-connection",
    b"transfer-encoding",
    b"upgrade",
    b"te",
    b"trailer",
}
_IDENTITY = EGRESS_IDENTITY_HEADER.lower().encode()
_DROP_UP = _HOP | {b"host", b"x-app-token", _IDENTITY}
_PATH_SAFE = "/:@!$&'()*+,;=~-._"
_WS_DROP = _DROP_UP | {
    b"sec-websocket-key",
    b"sec-websocket-version",
    b"sec-websocket-extensions",
    b"sec-websocket-protocol",
    b"origin",
}


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _carries_token(scope: Scope) -> bool:
    """A token header (app token or API key): an API client or a script, never a browser navigation."""
    auth = _header(scope, b"authorization") or ""
    return bool(_header(scope, b"x-app-token")) or auth.lower().startswith("bearer ")


def _cookies(scope: Scope) -> SimpleCookie:
    jar: SimpleCookie = SimpleCookie()
    with contextlib.suppress(Exception):
        jar.load(_header(scope, b"cookie") or "")
    return jar


class AppProxy:
    """ASGI app mounted at ``/apps``."""

    def __init__(
        self,
        manager: AppManager,
        keyring: KeyRing | None,
        verify_identity: Callable[[str], RunIdentity] | None = None,
    ) -> None:
        """``verify_identity``: the backend's check of the run identities it signs (None: it signs none)."""
        self.manager = manager
        self.keyring = keyring
        self.verify_identity = verify_identity
        self._pools: dict[str, UpstreamPool] = {}

    def _egress_tenant(self, scope: Scope) -> str:
        """The tenant a sandbox's request proves with its signed run identity.

        Raises:
            IdentityError: none, more than one, none accepted here, or one the backend refuses.
        """
        values = [v for k, v in scope["headers"] if k == _IDENTITY]
        if len(values) != 1:
            raise IdentityError(f"{len(values)} {EGRESS_IDENTITY_HEADER} headers; one is needed")
        if self.verify_identity is None:
            raise IdentityError("this server's sandbox backend signs no run identities")
        return self.verify_identity(values[0].decode("latin-1")).tenant

    async def aclose(self) -> None:
        """Close the pooled upstream connections."""
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()

    def _pool(self, app_id: str, endpoint: ServiceEndpoint) -> UpstreamPool:
        """The app's keep-alive pool (a new one when its service, hence its endpoint, changed).

        Raises:
            EndpointError: the backend's URL is not one the proxy dials.
        """
        pool = self._pools.get(app_id)
        if pool is not None and pool.dialer.endpoint == endpoint:
            return pool
        if pool is not None:
            pool.close()
        pool = self._pools[app_id] = UpstreamPool(dialer_for(endpoint))
        return pool

    async def _allowed(self, scope: Scope, record: AppRecord) -> bool:
        if record.public:
            return True
        auth = _header(scope, b"authorization") or ""
        bearer = auth[7:].strip() if auth.lower().startswith("bearer ") else None
        for token in (bearer, _header(scope, b"x-app-token")):
            if token and hmac.compare_digest(hash_token(token), record.token_hash):
                return True
        morsel = _cookies(scope).get(COOKIE)
        if morsel is not None and self.manager.signer.check(record.id, morsel.value) is not None:
            return True
        if bearer and self.keyring is not None and await self.keyring.enabled():
            principal = await self.keyring.authenticate(bearer)
            return principal is not None and principal.tenant == record.tenant
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return
        path: str = scope["path"]
        root: str = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        app_id, _, rest = path.lstrip("/").partition("/")
        egress_tenant: str | None = None
        if scope.get(EGRESS_APP_KEY):  # a sandbox through the cluster's egress proxy
            try:
                egress_tenant = self._egress_tenant(scope)
            except IdentityError as exc:
                logger.info("app %s: a sandbox's request refused: %s", app_id, exc)
                return await self._refuse(scope, receive, send, 401, f"run identity refused: {exc}")
        record = await self.manager.lookup(app_id) if app_id else None
        if record is None or record.expired() or egress_tenant not in (None, record.tenant):
            return await self._refuse(scope, receive, send, 404, "no such app")
        origin_app = scope.get(ORIGIN_APP_KEY)
        if origin_app is not None and origin_app != app_id:  # one app's host never serves another
            return await self._refuse(scope, receive, send, 404, "no such app")
        domain = self.manager.settings.domain
        if domain and origin_app is None and not _carries_token(scope):
            # A browser on the API's origin: the app's pages run only on the app's own origin.
            if scope["type"] == "websocket":
                return await self._refuse(scope, receive, send, 403, "open the app on its own origin")
            query = scope.get("query_string", b"").decode("latin-1")
            location = app_origin(scope, app_id, domain) + self.manager.prefix(app_id) + "/" + rest
            location += f"?{query}" if query else ""
            return await _simple(send, 307, b"", [(b"location", location.encode("latin-1"))])
        if scope["type"] == "http" and not path.startswith(f"/{app_id}/"):
            location = self.manager.prefix(app_id) + "/"
            return await _simple(send, 307, b"", [(b"location", location.encode())])
        query = scope.get("query_string", b"").decode("latin-1")
        params = parse_qsl(query, keep_blank_values=True)
        link = next((v for k, v in params if k == LINK_PARAM), None)
        if egress_tenant is None and scope["type"] == "http" and link is not None:
            return await self._open_link(scope, send, record, rest, params, link)
        if egress_tenant is None and not await self._allowed(scope, record):
            return await self._refuse(scope, receive, send, 401, "this app needs its token or a signed link")
        if record.stopped:
            return await self._refuse(scope, receive, send, 503, "this app is stopped")
        try:
            handle = await self.manager.ensure_running(record)
        except AppError as exc:
            logger.warning("app %s could not be woken: %s", app_id, exc)
            return await self._refuse(scope, receive, send, 502, "the app did not start")
        try:
            if handle.endpoint is None:
                raise EndpointError("the backend gave the app no endpoint")
            pool = self._pool(app_id, handle.endpoint)
        except EndpointError as exc:
            logger.warning("app %s cannot be reached: %s", app_id, exc)
            return await self._refuse(scope, receive, send, 502, "the app's endpoint is not usable")
        # scope["path"] is percent-decoded: encode it again (a decoded CR LF must never reach the app).
        target = quote("/" + rest, safe=_PATH_SAFE) + (f"?{query}" if query else "")
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send, record, pool, target)
        else:
            await self._http(scope, receive, send, record, pool, target)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, status: int, message: str) -> None:
        if scope["type"] == "websocket":
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": 4000 + status})
            return
        await _simple(send, status, message.encode() + b"\n", [(b"content-type", b"text/plain")])

    async def _open_link(
        self, scope: Scope, send: Send, record: AppRecord, rest: str, params: list[tuple[str, str]], link: str
    ) -> None:
        """A valid signed link sets the app's cookie and redirects to the URL without the link."""
        left = self.manager.signer.check(record.id, link)
        if left is None:
            await _simple(send, 401, b"this link is invalid or expired\n", [(b"content-type", b"text/plain")])
            return
        prefix = self.manager.prefix(record.id)
        kept = urlencode([(k, v) for k, v in params if k != LINK_PARAM])
        location = f"{prefix}/{rest}" + (f"?{kept}" if kept else "")
        # On the app's own host the whole host is the app's (host-only cookie); on the API's origin
        # (no apps domain) the cookie is scoped to the app's path.
        path = "/" if scope.get(ORIGIN_APP_KEY) else f"{prefix}/"
        cookie = f"{COOKIE}={link}; Path={path}; Max-Age={left}; HttpOnly; SameSite=Lax"
        await _simple(send, 303, b"", [(b"location", location.encode()), (b"set-cookie", cookie.encode())])

    def _upstream_headers(
        self, scope: Scope, record: AppRecord, drop: set[bytes]
    ) -> list[tuple[bytes, bytes]]:
        """The client's headers minus hop-by-hop ones and our credentials, plus the X-Forwarded ones."""
        headers: list[tuple[bytes, bytes]] = []
        host = b""
        for key, value in scope["headers"]:
            if key == b"host":
                host = value
            if key in drop or key == b"authorization" and not record.public:
                continue
            if key == b"cookie":
                jar = _cookies(scope)
                kept = "; ".join(f"{k}={m.value}" for k, m in jar.items() if k != COOKIE)
                if kept:
                    headers.append((b"cookie", kept.encode("latin-1")))
                continue
            headers.append((key, value))
        client = scope.get("client")
        scheme = scope.get("scheme", "http").replace("ws", "http")
        prefix = self.manager.prefix(record.id).encode()
        headers += [
            (b"x-forwarded-prefix", prefix),
            (b"x-forwarded-host", host),
            (b"x-forwarded-proto", scheme.encode()),
            (b"x-forwarded-for", client[0].encode() if client else b""),
        ]
        return headers

    async def _http(
        self, scope: Scope, receive: Receive, send: Send, record: AppRecord, pool: UpstreamPool, target: str
    ) -> None:
        async def body() -> AsyncIterator[bytes]:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                if chunk := message.get("body", b""):
                    yield chunk
                if not message.get("more_body", False):
                    return

        request_headers = scope["headers"]
        has_length = any(k == b"content-length" for k, _ in request_headers)
        chunked = not has_length and any(k == b"transfer-encoding" for k, _ in request_headers)
        headers = self._upstream_headers(scope, record, _DROP_UP)
        try:
            upstream = await pool.request(
                scope["method"], target, headers, body if has_length or chunked else None, chunked=chunked
            )
        except (OSError, RelayError) as exc:
            logger.info("app %s did not answer: %s", record.id, exc)
            await _simple(send, 502, b"the app did not answer\n", [(b"content-type", b"text/plain")])
            return
        try:
            out = [(k, v) for k, v in upstream.headers if k not in _HOP]
            await send({"type": "http.response.start", "status": upstream.status, "headers": out})
            async for chunk in upstream.body():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except (RelayError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
            logger.info("app %s: stream ended early: %s", record.id, exc)
        finally:
            upstream.done()

    async def _websocket(
        self, scope: Scope, receive: Receive, send: Send, record: AppRecord, pool: UpstreamPool, target: str
    ) -> None:
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        protocols = [
            p.strip() for p in (_header(scope, b"sec-websocket-protocol") or "").split(",") if p.strip()
        ]
        try:
            upstream = await pool.dialer.websocket(
                target,
                subprotocols=protocols or None,
                additional_headers=[
                    (k.decode("latin-1"), v.decode("latin-1"))
                    for k, v in self._upstream_headers(scope, record, _WS_DROP)
                ],
                max_size=16 * 1024 * 1024,
            )
        except (OSError, WebSocketException, TimeoutError) as exc:
            logger.info("app %s refused the websocket: %s", record.id, exc)
            await send({"type": "websocket.close", "code": 1011})
            return
        await send({"type": "websocket.accept", "subprotocol": upstream.subprotocol})

        async def client_to_app() -> None:
            while True:
                msg = await receive()
                if msg["type"] == "websocket.disconnect":
                    await upstream.close()
                    return
                data: Any = msg.get("text") if msg.get("text") is not None else msg.get("bytes")
                if data is not None:
                    await upstream.send(data)

        async def app_to_client() -> None:
            try:
                async for data in upstream:
                    key = "text" if isinstance(data, str) else "bytes"
                    await send({"type": "websocket.send", key: data})
            except ConnectionClosed:
                pass
            code = upstream.close_code or 1000
            with contextlib.suppress(Exception):
                await send({"type": "websocket.close", "code": code})

        tasks = [asyncio.ensure_future(client_to_app()), asyncio.ensure_future(app_to_client())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await upstream.close()
            for task in tasks:
                with contextlib.suppress(BaseException):
                    await task


async def _simple(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
