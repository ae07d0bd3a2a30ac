"""Assistants: the default one per served graph (read-only) and the tenants' own, versioned.

Create, get, patch (a new version), delete, search / count, versions and ``/latest`` (which version
is active), plus the graph's drawing and schemas. Shapes as the LangGraph server's (what
``langgraph-sdk`` reads): an ``Assistant`` everywhere, ``AssistantVersion`` in the version list,
``X-Pagination-Next`` on a search page that has a next one.
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Query, Response

from server.agent_protocol.api.deps import ServiceDep
from server.agent_protocol.api.json_body import JSONBodyRoute
from server.agent_protocol.api.paging import one_page
from server.agent_protocol.assistants import is_uuid
from server.agent_protocol.errors import AssistantExistsError, AssistantNotFoundError
from server.agent_protocol.schemas import (
    AssistantCreate,
    AssistantPatch,
    AssistantSearch,
    AssistantVersionChange,
    AssistantVersionsSearch,
)
from server.agent_protocol.storage.assistants import AssistantRecord, AssistantVersionFields
from server.deps import TenantDep

__all__ = ["router"]

router = APIRouter(prefix="/assistants", tags=["agent-protocol"], route_class=JSONBodyRoute)


def _matches(record: AssistantRecord, metadata: dict[str, Any] | None) -> bool:
    return not metadata or all(record.metadata.get(k) == v for k, v in metadata.items())


@router.post("")
async def create_assistant(body: AssistantCreate, service: ServiceDep, tenant: TenantDep) -> dict[str, Any]:
    """Create an assistant of ``tenant`` (``if_exists="do_nothing"`` returns the existing one).

    Its config and context are checked against the operator's policy first: nothing is stored
    when they are refused (422 naming what to fix).
    """
    assistants = service.assistants
    config, context = assistants.checked(body.graph_id, body.config, body.context)
    fields = AssistantVersionFields(
        graph_id=body.graph_id,
        config=config,
        context=context,
        metadata=body.metadata or {},
        name=body.name or "Untitled",
        description=body.description,
    )
    assistant_id = body.assistant_id or str(uuid.uuid4())
    if assistants.is_default(assistant_id):
        raise AssistantExistsError(
            f"assistant id {assistant_id} is the server's default assistant; choose another"
        )
    try:
        return (await assistants.store.create(assistant_id, tenant, fields)).public()
    except AssistantExistsError:
        existing = await assistants.store.get(assistant_id, tenant)
        if existing is None:  # another tenant's (ids are global): never share one
            raise AssistantExistsError(f"assistant id {assistant_id} is taken; choose another") from None
        if body.if_exists == "do_nothing":
            return existing.public()
        raise


@router.post("/search")
async def search_assistants(
    body: AssistantSearch, service: ServiceDep, tenant: TenantDep, response: Response
) -> list[dict[str, Any]]:
    """The default assistant and ``tenant``'s own that match the filters, one page."""
    found = await service.assistants.matching(tenant, body)
    return one_page(found, offset=body.offset, limit=body.limit, select=body.select, response=response)


@router.post("/count")
async def count_assistants(body: AssistantSearch, service: ServiceDep, tenant: TenantDep) -> int:
    """How many assistants match."""
    return len(await service.assistants.matching(tenant, body))


@router.get("/{assistant_id}")
async def get_assistant(assistant_id: str, service: ServiceDep, tenant: TenantDep) -> dict[str, Any]:
    """The active version of the assistant (by uuid; the default one also by graph id)."""
    return (await service.assistants.resolve(assistant_id, tenant)).public()


@router.patch("/{assistant_id}")
async def patch_assistant(
    assistant_id: str, body: AssistantPatch, service: ServiceDep, tenant: TenantDep
) -> dict[str, Any]:
    """Write a new version from the active one with the given fields, and make it active.

    Config and context are checked again (as on create); metadata is merged.
    """
    assistants = service.assistants
    current = await assistants.resolve_own(assistant_id, tenant)
    graph_id = body.graph_id or current.graph_id
    config_in = body.config if body.config is not None else current.config
    context_in = body.context
    if context_in is None and not (body.config or {}).get("configurable"):
        context_in = current.context
    config, context = assistants.checked(graph_id, config_in, context_in)
    change: dict[str, Any] = {"graph_id": graph_id, "config": config, "context": context}
    if body.metadata is not None:
        change["metadata"] = body.metadata
    if body.name is not None:
        change["name"] = body.name
    if body.description is not None:
        change["description"] = body.description
    record = await assistants.store.add_version(current.assistant_id, tenant, change)
    if record is None:  # deleted meanwhile
        raise AssistantNotFoundError(f"assistant {assistant_id!r} not found")
    return record.public()


@router.delete("/{assistant_id}", status_code=204)
async def delete_assistant(
    assistant_id: str,
    service: ServiceDep,
    tenant: TenantDep,
    delete_threads: str | None = Query(default=None),
) -> Response:
    """Delete the assistant and its versions; cancel its active runs first.

    ``delete_threads=true`` also deletes ``tenant``'s threads whose ``metadata.assistant_id`` is it.
    """
    current = await service.assistants.resolve_own(assistant_id, tenant)
    manager = service.manager
    await manager.cancel_assistant_runs(current.assistant_id, tenant)
    if (delete_threads or "").lower() in ("1", "true", "yes"):
        for thread_id in await manager.threads_of_assistant(current.assistant_id, tenant):
            await manager.delete_thread(thread_id)
    if not await service.assistants.store.delete(current.assistant_id, tenant):
        raise AssistantNotFoundError(f"assistant {assistant_id!r} not found")
    return Response(status_code=204)


@router.post("/{assistant_id}/versions")
async def list_assistant_versions(
    assistant_id: str, body: AssistantVersionsSearch, service: ServiceDep, tenant: TenantDep
) -> list[dict[str, Any]]:
    """The assistant's versions, newest first (``metadata`` filters)."""
    assistants = service.assistants
    if assistants.is_default(assistant_id):
        versions = assistants.versions_of_default()
    else:
        found = await assistants.store.versions(assistant_id, tenant) if is_uuid(assistant_id) else None
        if found is None:
            raise AssistantNotFoundError(f"assistant {assistant_id!r} not found")
        versions = found
    matching = [v for v in versions if _matches(v, body.metadata)]
    return [v.version_public() for v in matching[body.offset : body.offset + body.limit]]


@router.post("/{assistant_id}/latest")
async def set_latest_assistant_version(
    assistant_id: str, body: AssistantVersionChange, service: ServiceDep, tenant: TenantDep
) -> dict[str, Any]:
    """Make one of the assistant's versions the active one (what get, search and new runs use)."""
    current = await service.assistants.resolve_own(assistant_id, tenant)
    record = await service.assistants.store.set_latest(current.assistant_id, tenant, body.version)
    if record is None:  # deleted meanwhile
        raise AssistantNotFoundError(f"assistant {assistant_id!r} not found")
    return record.public()


@router.get("/{assistant_id}/graph")
async def get_assistant_graph(
    assistant_id: str, service: ServiceDep, tenant: TenantDep, xray: str | None = Query(default=None)
) -> dict[str, Any]:
    """Nodes and edges of the graph (``xray`` true or a depth includes subgraphs)."""
    await service.assistants.resolve(assistant_id, tenant)
    depth: bool | int = False
    if xray in ("true", "True"):
        depth = True
    elif xray and xray.isdigit():
        depth = int(xray)
    return service.host.drawable(depth)


@router.get("/{assistant_id}/schemas")
async def get_assistant_schemas(assistant_id: str, service: ServiceDep, tenant: TenantDep) -> dict[str, Any]:
    """JSON schemas of input, output, state, config and context."""
    await service.assistants.resolve(assistant_id, tenant)
    return service.host.schemas()


@router.get("/{assistant_id}/subgraphs")
async def get_assistant_subgraphs(
    assistant_id: str, service: ServiceDep, tenant: TenantDep
) -> dict[str, Any]:
    """Subgraph schemas are not exposed: an empty mapping."""
    await service.assistants.resolve(assistant_id, tenant)
    return {}
