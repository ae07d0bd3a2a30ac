"""The long-term memory store: ``/store/items`` (put, get, delete), ``/store/items/search``,
``/store/namespaces``.

Shapes as the LangGraph server's (what ``langgraph-sdk``'s ``client.store`` sends and reads): put and
delete answer 204, get answers the item or ``null``, search ``{"items": [...]}`` (each with a
``score`` when ranked by ``query``), namespaces ``{"namespaces": [[...]]}``. Every request goes
through the caller's tenant's view (:class:`~server.agent_protocol.memory.tenant.TenantMemoryStore`):
namespaces are the tenant's own, checked there (422 saying what to fix, nothing stored).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Response
from langgraph.store.base import InvalidNamespaceError
from pydantic import Field

from server.agent_protocol.api.deps import ServiceDep
from server.agent_protocol.api.json_body import JSONBodyRoute
from server.agent_protocol.memory.errors import InvalidStoreRequestError
from server.agent_protocol.memory.tenant import TenantMemoryStore
from server.agent_protocol.schemas import JsonBody
from server.deps import TenantDep

__all__ = ["router"]

router = APIRouter(prefix="/store", tags=["agent-protocol"], route_class=JSONBodyRoute)

MAX_PAGE = 1000
MAX_QUERY_CHARS = 4000


class StorePut(JsonBody):
    """``PUT /store/items``: store or replace an item (``ttl`` in minutes)."""

    namespace: list[str] = Field(default_factory=list)
    key: str
    value: dict[str, Any]
    index: Literal[False] | list[str] | None = None
    ttl: float | None = None


class StoreDelete(JsonBody):
    """``DELETE /store/items``."""

    namespace: list[str] = Field(default_factory=list)
    key: str


class StoreSearch(JsonBody):
    """``POST /store/items/search``: newest first, or ranked by ``query`` (semantic search)."""

    namespace_prefix: list[str] | None = None
    filter: dict[str, Any] | None = None
    limit: int = Field(default=10, ge=1, le=MAX_PAGE)
    offset: int = Field(default=0, ge=0)
    query: str | None = Field(default=None, max_length=MAX_QUERY_CHARS)
    refresh_ttl: bool | None = None


class StoreListNamespaces(JsonBody):
    """``POST /store/namespaces``."""

    prefix: list[str] | None = None
    suffix: list[str] | None = None
    max_depth: int | None = Field(default=None, ge=1)
    limit: int = Field(default=100, ge=1, le=MAX_PAGE)
    offset: int = Field(default=0, ge=0)


async def get_memory(service: ServiceDep, tenant: TenantDep) -> TenantMemoryStore:
    """The caller's tenant's view of the memory store."""
    return TenantMemoryStore(service.memory, tenant, service.settings.memory)


MemoryDep = Annotated[TenantMemoryStore, Depends(get_memory)]


def _refused(exc: InvalidNamespaceError) -> InvalidStoreRequestError:
    return InvalidStoreRequestError(str(exc))


@router.put("/items", status_code=204)
async def put_item(body: StorePut, memory: MemoryDep) -> Response:
    """Store or replace an item of the caller's tenant."""
    try:
        await memory.aput(tuple(body.namespace), body.key, body.value, index=body.index, ttl=body.ttl)
    except InvalidNamespaceError as exc:
        raise _refused(exc) from None
    return Response(status_code=204)


@router.get("/items")
async def get_item(
    memory: MemoryDep,
    key: Annotated[str, Query(min_length=1)],
    namespace: Annotated[str, Query(description="Labels joined with '.'")] = "",
    refresh_ttl: bool | None = None,
) -> dict[str, Any] | None:
    """One item of the caller's tenant, or ``null`` (also for another tenant's)."""
    try:
        item = await memory.aget(tuple(namespace.split(".")), key, refresh_ttl=refresh_ttl)
    except InvalidNamespaceError as exc:
        raise _refused(exc) from None
    return item.dict() if item is not None else None


@router.delete("/items", status_code=204)
async def delete_item(body: StoreDelete, memory: MemoryDep) -> Response:
    """Delete an item of the caller's tenant (nothing to delete is no error)."""
    try:
        await memory.adelete(tuple(body.namespace), body.key)
    except InvalidNamespaceError as exc:
        raise _refused(exc) from None
    return Response(status_code=204)


@router.post("/items/search")
async def search_items(body: StoreSearch, memory: MemoryDep) -> dict[str, Any]:
    """Items under a namespace prefix of the caller's tenant, filtered, newest first or by relevance."""
    try:
        found = await memory.asearch(
            tuple(body.namespace_prefix or ()),
            query=body.query,
            filter=body.filter,
            limit=body.limit,
            offset=body.offset,
            refresh_ttl=body.refresh_ttl,
        )
    except InvalidNamespaceError as exc:
        raise _refused(exc) from None
    return {"items": [item.dict() for item in found]}


@router.post("/namespaces")
async def list_namespaces(body: StoreListNamespaces, memory: MemoryDep) -> dict[str, Any]:
    """The caller's tenant's namespaces matching a prefix and / or suffix, cut at ``max_depth``."""
    try:
        found = await memory.alist_namespaces(
            prefix=tuple(body.prefix) if body.prefix else None,
            suffix=tuple(body.suffix) if body.suffix else None,
            max_depth=body.max_depth,
            limit=body.limit,
            offset=body.offset,
        )
    except InvalidNamespaceError as exc:
        raise _refused(exc) from None
    return {"namespaces": [list(ns) for ns in found]}
