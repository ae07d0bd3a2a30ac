"""Platform API and control-plane operations of the fake Unikraft Cloud (see ``fake_api``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.sandbox.unikraft.fake_state import STOP_FORCED_USER, STOP_USER_COMPLETE
from tests.sandbox.unikraft.fake_wire import (
    BodyError,
    body_json,
    cp,
    envelope,
    instance_json,
    missing,
    pm,
    strict,
)

if TYPE_CHECKING:
    from tests.sandbox.unikraft.fake_api import FakeCloud

LIST_QUERY = frozenset({"uuid", "name", "details", "count", "from", "order", "sortby", "tags"})


def _dump(model: Any) -> dict[str, Any]:
    return model.model_dump(mode="json", by_alias=True, exclude_unset=True)  # type: ignore[no-any-return]


async def create_instance(fake: FakeCloud, request: Request) -> Response:
    spec = _dump(strict(pm.CreateInstanceRequest, await body_json(request)))
    state = fake.state
    if not spec.get("image"):
        raise BodyError("an instance needs an image (templates are not played back)")
    if spec.get("timeout_s") and not spec.get("autostart"):
        raise BodyError("timeout_s requires autostart")
    if spec.get("scale_to_zero") and not spec.get("service_group"):
        raise BodyError("scale_to_zero requires service_group")
    for group in [spec.get("service_group")] if spec.get("service_group") else []:
        if not group.get("services"):
            raise BodyError("a new service group needs services")
    memory = spec.get("memory_mb") or 128
    problem = state.quota_problem(memory if spec.get("autostart") else 0, new_instance=True)
    if problem is not None:
        item = {"status": "error", "error": 10, "message": problem}
        return JSONResponse(
            envelope(pm.CreateInstanceResponse, {"instances": [item]}, status="error", message=problem)
        )
    instance = state.create(spec)
    if spec.get("autostart"):
        state.start(instance)
        wait = spec.get("timeout_s") or 0
        if wait > 0:
            await state.wait_state(instance, ("running", "stopped"), wait)
            if instance.state != "running":
                item = {
                    "status": "error",
                    "uuid": instance.uuid,
                    "name": instance.name,
                    "state": instance.state,
                }
                message = (
                    "Timed out waiting for instance" if instance.state == "starting" else "Instance stopped"
                )
                item["message"] = message
                body = envelope(
                    pm.CreateInstanceResponse, {"instances": [item]}, status="error", message=message
                )
                return JSONResponse(body)
    item = {"status": "success", "uuid": instance.uuid, "name": instance.name, "state": instance.state}
    return JSONResponse(envelope(pm.CreateInstanceResponse, {"instances": [item]}))


async def list_instances(fake: FakeCloud, request: Request) -> Response:
    if await request.body():
        raise BodyError("GET /v1/instances takes no body")
    uuids = request.query_params.getlist("uuid")
    names = request.query_params.getlist("name")
    tags = [t for value in request.query_params.getlist("tags") for t in value.split(",") if t]
    state = fake.state
    items: list[dict[str, Any]] = []
    if uuids or names:
        for uid in uuids:
            found = state.find(uid, None)
            items.append(instance_json(found) if found else missing(uid, None))
        for name in names:
            found = state.find(None, name)
            items.append(instance_json(found) if found else missing(None, name))
    else:
        items = [instance_json(i) for i in state.instances.values() if all(t in i.tags for t in tags)]
        start = request.query_params.get("from")
        if start is not None:
            uids = [i["uuid"] for i in items]
            items = items[uids.index(start) :] if start in uids else []
        items = items[: int(request.query_params.get("count", "100"))]
    failed = any(i.get("status") == "error" for i in items)
    status = ("partial_success" if len(items) > 1 else "error") if failed else "success"
    return JSONResponse(envelope(pm.GetInstancesResponse, {"instances": items}, status=status))


async def start_instances(fake: FakeCloud, request: Request) -> Response:
    body = strict(list[pm.StartInstancesRequestItem], await body_json(request))
    items: list[dict[str, Any]] = []
    for entry in body:
        instance = fake.state.find(entry.uuid, entry.name)
        if instance is None:
            items.append(missing(entry.uuid, entry.name))
            continue
        problem = fake.state.quota_problem(instance.memory_mb, new_instance=False)
        if problem is not None:
            items.append({"status": "error", "uuid": instance.uuid, "error": 10, "message": problem})
            continue
        previous = instance.state
        fake.state.start(instance)
        if entry.timeout_s:
            await fake.state.wait_state(instance, ("running", "stopped"), entry.timeout_s)
        items.append(
            {
                "status": "success",
                "uuid": instance.uuid,
                "name": instance.name,
                "state": instance.state,
                "previous_state": previous,
            }
        )
    status = "success" if all(i["status"] == "success" for i in items) else "error"
    return JSONResponse(envelope(pm.StartInstancesResponse, {"instances": items}, status=status))


async def stop_instances(fake: FakeCloud, request: Request) -> Response:
    body = strict(list[pm.StopInstancesRequestItem], await body_json(request))
    items: list[dict[str, Any]] = []
    for entry in body:
        instance = fake.state.find(entry.uuid, entry.name)
        if instance is None:
            items.append(missing(entry.uuid, entry.name))
            continue
        previous = instance.state
        await fake.state.stop(instance, reason=STOP_FORCED_USER if entry.force else STOP_USER_COMPLETE)
        items.append(
            {
                "status": "success",
                "uuid": instance.uuid,
                "name": instance.name,
                "state": "stopped",
                "previous_state": previous,
            }
        )
    status = "success" if all(i["status"] == "success" for i in items) else "error"
    return JSONResponse(envelope(pm.StopInstancesResponse, {"instances": items}, status=status))


async def delete_instances(fake: FakeCloud, request: Request) -> Response:
    body = strict(list[pm.DeleteInstanceRequestItem], await body_json(request))
    items: list[dict[str, Any]] = []
    for entry in body:
        instance = fake.state.find(entry.uuid, entry.name)
        if instance is None:
            items.append(missing(entry.uuid, entry.name))
            continue
        previous = instance.state
        await fake.state.delete(instance)
        items.append(
            {"status": "success", "uuid": instance.uuid, "name": instance.name, "previous_state": previous}
        )
    status = "success" if all(i["status"] == "success" for i in items) else "error"
    return JSONResponse(envelope(pm.DeleteInstancesResponse, {"instances": items}, status=status))


async def quotas(fake: FakeCloud, request: Request) -> Response:
    state = fake.state
    used = {"instances": len(state.instances), "live_memory_mb": state.live_memory_mb()}
    hard = {"instances": state.quota_instances or 1000, "live_memory_mb": state.quota_live_memory_mb or 65536}
    item = {"status": "success", "uuid": "q-1", "used": used, "hard": hard, "limits": {"min_memory_mb": 16}}
    return JSONResponse(envelope(pm.QuotasResponse, {"quotas": [item]}))


async def list_metros(fake: FakeCloud, request: Request) -> Response:
    metro = {
        "uuid": "m-1",
        "name": fake.state.metro,
        "iata_code": fake.state.metro.upper(),
        "endpoint": str(request.base_url).rstrip("/"),
        "country": "XX",
    }
    return JSONResponse(envelope(cp.ListMetroResponse, {"metros": [metro]}))


async def list_images(fake: FakeCloud, request: Request) -> Response:
    namespaces = set(request.query_params.getlist("namespace"))
    images = [
        {
            "name": repo,
            "tags": [{"name": tag, "digest": f"sha256:{abs(hash((repo, tag))):064x}"[:71]} for tag in tags],
        }
        for repo, tags in sorted(fake.state.registry.items())
        if not namespaces or repo.split("/")[0] in namespaces
    ]
    return JSONResponse(envelope(cp.ListImagesResponse, {"images": images}))


def routes(route: Callable[..., Route]) -> list[Route]:
    """The platform's and the control plane's routes."""
    return [
        route("/v1/instances", "POST", create_instance),
        route("/v1/instances", "GET", list_instances, LIST_QUERY),
        route("/v1/instances/start", "PUT", start_instances),
        route("/v1/instances/stop", "PUT", stop_instances),
        route("/v1/instances", "DELETE", delete_instances),
        route("/v1/users/quotas", "GET", quotas),
        route("/controlplane/v1/metros", "GET", list_metros),
        route("/controlplane/v1/images", "GET", list_images, frozenset({"details", "namespace"})),
    ]
