"""Wire helpers of the fake Unikraft Cloud: strict parsing with the SDK's models, envelopes, items.

Every request body is parsed with the SDK's own request model for that operation and refused when a
required field is missing or a field is unknown anywhere in it (the SDK's models keep unknown
fields, so that check is ours); every answer is checked against the SDK's response model the same
way, so the fake cannot invent fields either.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse
from unikraft_cloud.api.controlplane import models as cp
from unikraft_cloud.api.platform import models as pm
from unikraft_cloud_plugin_sandbox_api import models as sm

from tests.sandbox.unikraft.fake_state import FakeInstance

__all__ = [
    "NOT_FOUND_CODE",
    "PLUGIN",
    "BodyError",
    "body_json",
    "cp",
    "envelope",
    "error",
    "instance_json",
    "missing",
    "pm",
    "sm",
    "strict",
]

NOT_FOUND_CODE = 8  # the API's per-item code for a resource that is not there
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


async def body_json(request: Request) -> Any:
    """The request's JSON body, or None when it has none."""
    raw = await request.body()
    if not raw:
        return None
    if request.headers.get("content-type") != "application/json":
        raise BodyError("a body must be sent as application/json")
    return json.loads(raw)


def envelope(
    model: type[BaseModel], data: dict[str, Any] | None, status: str = "success", **extra: Any
) -> Any:
    """A response envelope, checked against the SDK's response ``model``."""
    body: dict[str, Any] = {"status": status, "op_time_us": 17, **extra}
    if data is not None:
        body["data"] = data
    strict(model, body)
    return body


def error(status: int, message: str) -> JSONResponse:
    """An error envelope with an HTTP status."""
    return JSONResponse({"status": "error", "message": message}, status_code=status)


def instance_json(instance: FakeInstance) -> dict[str, Any]:
    """An instance as the platform reports it (``details=true``)."""
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


def missing(uid: str | None, name: str | None) -> dict[str, Any]:
    """The item the platform answers for an instance that is not there."""
    item: dict[str, Any] = {"status": "error", "error": NOT_FOUND_CODE, "message": "No such instance"}
    item.update({"uuid": uid} if uid is not None else {"name": name})
    return item
