"""The HTTP face of the fake Unikraft Cloud: platform API, control plane, sandbox plugin, app edge.

Every request body is parsed with the SDK's own request model for that operation and refused (HTTP
400, recorded in ``FakeCloud.rejected``) when a required field is missing or a field is unknown
anywhere in it (the SDK's models keep unknown fields, so that check is ours). Query parameters
are checked against the operation's. Every answer is built as a dict and checked against the SDK's
response model the same way, so the fake cannot invent fields either.

Answers follow what the SDK expects of the platform: results are per item in a 200 envelope, a
missing instance is an item with the API's not-found code (8), an instance that stopped while the
create waited is a failed item naming it and its state. Injected failures (``FakeCloud.fail``)
answer with their status and an error envelope before the operation runs.
"""

from __future__ import annotations

import asyncio
import base64
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import BaseModel, TypeAdapter, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send
from unikraft_cloud.api.controlplane import models as cp
from unikraft_cloud.api.platform import models as pm
from unikraft_cloud_plugin_sandbox_api import models as sm

from tests.sandbox.unikraft.fake_state import STOP_FORCED_USER, STOP_USER_COMPLETE, FakeCloudState, FakeInstance

NOT_FOUND_CODE = 8
PLUGIN = "/v1/instances/{uuid}/plugins/sandbox"


class BodyError(Exception):
    """A request the real API would refuse: the message says why."""


def _extras(value: Any, where: str = "body") -> list[str]:
    """Dotted paths of fields no SDK model declares, anywhere in a parsed value."""
    found: list[str] = []
    if isinstance(value, BaseModel):
        found += [f"{where}.{key}" for key in (value.model_extra or {})]
        for name in type(value).model_fields:
            found += _extras(getattr(value, name), f"{where}.{name}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _extras(item, f"{where}[{index}]")
    return found


def strict(model: Any, data: Any) -> Any:
    """Parse ``data`` as ``model`` (a model or ``list[model]``), refusing unknown or missing fields."""
    try:
        parsed = TypeAdapter(model).validate_python(data)
    except ValidationError as exc:
        raise BodyError(f"invalid body for {model}: {exc}") from exc
    unknown = _extras(parsed)
    if unknown:
        raise BodyError(f"unknown field(s) {', '.join(unknown)} for {model}")
    return parsed


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
        self.app = _build_app(self)

    def fail(self, method: str, path: str, status: int, *, times: int = 1, message: str = "injected") -> None:
        """Make the next ``times`` ``method`` requests whose path matches regex ``path`` fail."""
        self.failures.append(Failure(method.upper(), re.compile(path), status, times, message))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            host = dict(scope["headers"]).get(b"host", b"").decode().split(":")[0]
            if host.endswith(f".{self.state.metro}.unikraft.app"):
                await _edge(self, host, scope, receive, send)
                return
        await self.app(scope, receive, send)


def _envelope(model: type[BaseModel], data: dict[str, Any] | None, status: str = "success", **extra: Any) -> Any:
    body: dict[str, Any] = {"status": status, "op_time_us": 17, **extra}
    if data is not None:
        body["data"] = data
    strict(model, body)
    return body


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"status": "error", "message": message}, status_code=status)


def _instance_json(instance: FakeInstance) -> dict[str, Any]:
    data: dict[str, Any] = {
        "uuid": instance.uuid,
        "name": instance.name,
        "state": instance.state,
        "image": instance.image,
        "memory_mb": instance.memory_mb,
        "vcpus": instance.vcpus,
        "tags": instance.tags,
        "created_at": instance.created_at.isoformat(),
        "private_fqdn": f"{instance.name}.internal",
        "restart_policy": instance.spec.get("restart_policy", "never"),
        "plugins": [{"name": p["name"], "image": p["image"]} for p in instance.spec.get("plugins") or []],
    }
    for key in ("started_at", "stopped_at"):
        if getattr(instance, key) is not None:
            data[key] = getattr(instance, key).isoformat()
    for key in ("boot_time_us", "stop_reason", "stop_code"):
        if getattr(instance, key) is not None:
            data[key] = getattr(instance, key)
    if instance.fqdn is not None:
        data["service_group"] = {"name": f"{instance.name}-sg", "domains": [{"fqdn": f"{instance.fqdn}."}]}
        data["services"] = [f"tcp:{s['port']}" for s in instance.spec["service_group"]["services"]]
    if instance.spec.get("scale_to_zero"):
        data["scale_to_zero"] = {"enabled": True, **instance.spec["scale_to_zero"]}
    return data


def _missing(uid: str | None, name: str | None) -> dict[str, Any]:
    item: dict[str, Any] = {"status": "error", "error": NOT_FOUND_CODE, "message": "No such instance"}
    item.update({"uuid": uid} if uid is not None else {"name": name})
    return item


Handler = Callable[[FakeCloud, Request], Awaitable[Response]]


def _build_app(fake: FakeCloud) -> Starlette:
    def route(path: str, method: str, handler: Handler, query: frozenset[str] = frozenset()) -> Route:
        async def endpoint(request: Request) -> Response:
            fake.calls.append((time.monotonic(), method, request.url.path))
            if request.headers.get("authorization") != f"Bearer {fake.token}":
                return _error(401, "Unauthorized: invalid or missing token")
            for failure in fake.failures:
                if failure.times > 0 and failure.method == method and failure.path.search(request.url.path):
                    failure.times -= 1
                    return _error(failure.status, failure.message)
            unknown = set(request.query_params) - query
            try:
                if unknown:
                    raise BodyError(f"unknown query parameter(s) {sorted(unknown)}")
                return await handler(fake, request)
            except BodyError as exc:
                fake.rejected.append(str(exc))
                return _error(400, str(exc))

        return Route(path, endpoint, methods=[method])

    from tests.sandbox.unikraft import fake_plugin, fake_platform

    routes = fake_platform.routes(route) + fake_plugin.routes(route)
    return Starlette(routes=routes)


async def body_json(request: Request) -> Any:
    """The request's JSON body, or None when it has none."""
    raw = await request.body()
    if not raw:
        return None
    if request.headers.get("content-type") != "application/json":
        raise BodyError("a body must be sent as application/json")
    import json

    return json.loads(raw)


async def _edge(fake: FakeCloud, host: str, scope: Scope, receive: Receive, send: Send) -> None:
    """The metro's public edge: route by Host to the app's port, waking it from standby."""
    instance = next((i for i in fake.state.instances.values() if i.fqdn == host), None)
    if instance is None or instance.destination_port is None or instance.state not in ("running", "standby"):
        await JSONResponse({"message": "no such app"}, status_code=503)(scope, receive, send)
        return
    fake.state.touch(instance)
    request = Request(scope, receive)
    async with httpx.AsyncClient(trust_env=False) as client:
        try:
            upstream = await client.request(
                request.method,
                f"http://127.0.0.1:{instance.destination_port}{request.url.path}",
                content=await request.body(),
            )
            response = Response(upstream.content, status_code=upstream.status_code)
        except httpx.HTTPError:
            response = Response(b"bad gateway", status_code=502)
    await response(scope, receive, send)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def hold(seconds: float) -> None:
    await asyncio.sleep(seconds)


__all__ = [
    "NOT_FOUND_CODE",
    "PLUGIN",
    "STOP_FORCED_USER",
    "STOP_USER_COMPLETE",
    "BodyError",
    "FakeCloud",
    "b64",
    "body_json",
    "cp",
    "pm",
    "sm",
    "strict",
]
