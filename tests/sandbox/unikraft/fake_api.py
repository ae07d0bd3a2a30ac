"""The HTTP face of the fake Unikraft Cloud: platform API, control plane, sandbox plugin, app edge.

Requests are checked as ``fake_wire`` describes (refusals answer 400 and are recorded in
``FakeCloud.rejected``); query parameters are checked against the operation's. Answers follow what
the SDK expects of the platform: results are per item in a 200 envelope, a missing instance is an
item with the API's not-found code (8), an instance that stopped while the create waited is a failed
item naming it and its state. Injected failures (``FakeCloud.fail``) answer with their status and
an error envelope before the operation runs. Requests whose ``Host`` is an app's domain go to the
app (the metro's edge), waking it from standby.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from tests.sandbox.unikraft import fake_platform, fake_plugin
from tests.sandbox.unikraft.fake_state import FakeCloudState
from tests.sandbox.unikraft.fake_wire import BodyError, error

__all__ = ["FakeCloud", "Failure"]


_EDGE_DROP = {"host", "connection", "content-length", "transfer-encoding", "keep-alive"}  # per hop


@dataclass
class Failure:
    """An injected failure: the next ``times`` requests matching answer ``status``."""

    method: str
    path: re.Pattern[str]
    status: int
    times: int
    message: str


class FakeCloud:
    """The fake's state plus its request log, injected failures and the ASGI app serving it."""

    def __init__(self, state: FakeCloudState, token: str) -> None:
        self.state = state
        self.token = token
        self.calls: list[tuple[float, str, str]] = []
        self.rejected: list[str] = []
        self.failures: list[Failure] = []
        routes = fake_platform.routes(self._route) + fake_plugin.routes(self._route)
        self.app = Starlette(routes=routes)

    def fail(self, method: str, path: str, status: int, *, times: int = 1, message: str = "injected") -> None:
        """Make the next ``times`` ``method`` requests whose path matches regex ``path`` fail."""
        self.failures.append(Failure(method.upper(), re.compile(path), status, times, message))

    def _route(
        self,
        path: str,
        method: str,
        handler: Callable[[FakeCloud, Request], Awaitable[Response]],
        query: frozenset[str] = frozenset(),
    ) -> Route:
        async def endpoint(request: Request) -> Response:
            self.calls.append((time.monotonic(), method, request.url.path))
            if request.headers.get("authorization") != f"Bearer {self.token}":
                return error(401, "Unauthorized: invalid or missing token")
            for failure in self.failures:
                if failure.times > 0 and failure.method == method and failure.path.search(request.url.path):
                    failure.times -= 1
                    return error(failure.status, failure.message)
            try:
                unknown = set(request.query_params) - query
                if unknown:
                    raise BodyError(f"unknown query parameter(s) {sorted(unknown)}")
                return await handler(self, request)
            except BodyError as exc:
                self.rejected.append(str(exc))
                return error(400, str(exc))

        return Route(path, endpoint, methods=[method])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            host = dict(scope["headers"]).get(b"host", b"").decode().split(":")[0]
            if host.endswith(f".{self.state.metro}.unikraft.app"):
                await self._edge(host, scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _edge(self, host: str, scope: Scope, receive: Receive, send: Send) -> None:
        """The metro's public edge: route by Host to the app's port, waking it from standby."""
        instance = next((i for i in self.state.instances.values() if i.fqdn == host), None)
        if (
            instance is None
            or instance.destination_port is None
            or instance.state not in ("running", "standby")
        ):
            await JSONResponse({"message": "no such app"}, status_code=503)(scope, receive, send)
            return
        self.state.touch(instance)
        request = Request(scope, receive)
        async with httpx.AsyncClient(trust_env=False) as client:
            try:
                upstream = await client.request(
                    request.method,
                    f"http://127.0.0.1:{instance.destination_port}{request.url.path}",
                    content=await request.body(),
                    headers=[(k, v) for k, v in request.headers.items() if k not in _EDGE_DROP],
                )
                kept = {k: v for k, v in upstream.headers.items() if k not in _EDGE_DROP}
                response = Response(upstream.content, status_code=upstream.status_code, headers=kept)
            except httpx.HTTPError:
                response = Response(b"bad gateway", status_code=502)
        await response(scope, receive, send)
