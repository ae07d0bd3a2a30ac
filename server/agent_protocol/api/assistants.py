"""Assistants: one per served graph, read-only (search / get / graph / schemas)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from server.agent_protocol.api.deps import ServiceDep
from server.agent_protocol.api.json_body import JSONBodyRoute
from server.agent_protocol.errors import AssistantNotFoundError
from server.agent_protocol.schemas import AssistantSearch

__all__ = ["router"]

router = APIRouter(prefix="/assistants", tags=["agent-protocol"], route_class=JSONBodyRoute)


def _check(service: ServiceDep, assistant_id: str) -> None:
    if not service.host.matches(assistant_id):
        raise AssistantNotFoundError(f"assistant {assistant_id!r} not found")


@router.post("/search")
async def search_assistants(body: AssistantSearch, service: ServiceDep) -> list[dict[str, Any]]:
    """The one assistant, if it matches the filters."""
    host = service.host
    assistant = host.assistant()
    if body.graph_id not in (None, host.graph_id) or body.name not in (None, host.graph_id):
        return []
    if body.metadata and any(assistant["metadata"].get(k) != v for k, v in body.metadata.items()):
        return []
    return [assistant][body.offset : body.offset + body.limit]


@router.post("/count")
async def count_assistants(body: AssistantSearch, service: ServiceDep) -> int:
    """1 or 0."""
    return len(await search_assistants(body, service))


@router.get("/{assistant_id}")
async def get_assistant(assistant_id: str, service: ServiceDep) -> dict[str, Any]:
    """The assistant (by uuid or graph id)."""
    _check(service, assistant_id)
    return service.host.assistant()


@router.get("/{assistant_id}/graph")
async def get_assistant_graph(
    assistant_id: str, service: ServiceDep, xray: str | None = Query(default=None)
) -> dict[str, Any]:
    """Nodes and edges of the graph (``xray`` true or a depth includes subgraphs)."""
    _check(service, assistant_id)
    depth: bool | int = False
    if xray in ("true", "True"):
        depth = True
    elif xray and xray.isdigit():
        depth = int(xray)
    return service.host.drawable(depth)


@router.get("/{assistant_id}/schemas")
async def get_assistant_schemas(assistant_id: str, service: ServiceDep) -> dict[str, Any]:
    """JSON schemas of input, output, state, config and context."""
    _check(service, assistant_id)
    return service.host.schemas()


@router.get("/{assistant_id}/subgraphs")
async def get_assistant_subgraphs(assistant_id: str, service: ServiceDep) -> dict[str, Any]:
    """Subgraph schemas are not exposed: an empty mapping."""
    _check(service, assistant_id)
    return {}
