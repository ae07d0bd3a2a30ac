"""Threads: create / get / patch / delete / search / count / copy / prune, their state and history.

The thread row keeps metadata, status and the last values a run left; the state and its history
are read from the graph's checkpointer, so time travel sees exactly what the graph saw.
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Query, Response
from langchain_core.runnables import RunnableConfig
from langgraph.errors import InvalidUpdateError

from server.agent_protocol.api.deps import ServiceDep
from server.agent_protocol.api.json_body import JSONBodyRoute
from server.agent_protocol.checkpoints import copy_checkpoints, prune_to_latest
from server.agent_protocol.errors import (
    CheckpointNotFoundError,
    InvalidStateUpdateError,
    ThreadExistsError,
)
from server.agent_protocol.graphs import interrupts_by_task, snapshot_to_state
from server.agent_protocol.schemas import (
    CheckpointRef,
    HistoryRequest,
    StateCheckpointRequest,
    StateUpdate,
    ThreadCount,
    ThreadCreate,
    ThreadPatch,
    ThreadPrune,
    ThreadSearch,
)
from server.agent_protocol.serde import dumps_to_obj
from server.agent_protocol.status import ThreadStatus
from server.agent_protocol.storage.records import ThreadRecord
from server.deps import TenantDep

__all__ = ["router"]

router = APIRouter(prefix="/threads", tags=["agent-protocol"], route_class=JSONBodyRoute)

# as_node values LangGraph itself understands besides the graph's nodes (clear tasks, input, fork).
_SPECIAL_NODES = frozenset({"__end__", "__input__", "__copy__"})


async def _require(service: ServiceDep, thread_id: str, tenant: str) -> None:
    """404 unless the thread exists and belongs to ``tenant`` (another tenant's is "not found")."""
    await service.manager.require_thread(thread_id, tenant)


def _config(
    thread_id: str, checkpoint: CheckpointRef | None = None, checkpoint_id: str | None = None
) -> RunnableConfig:
    configurable: dict[str, Any] = {"thread_id": thread_id, "checkpoint_ns": ""}
    if checkpoint is not None:
        configurable["checkpoint_ns"] = checkpoint.checkpoint_ns
        if checkpoint.checkpoint_id:
            configurable["checkpoint_id"] = checkpoint.checkpoint_id
    if checkpoint_id:
        configurable["checkpoint_id"] = checkpoint_id
    return {"configurable": configurable}


@router.post("")
async def create_thread(body: ThreadCreate, service: ServiceDep, tenant: TenantDep) -> dict[str, Any]:
    """Create a thread (``if_exists="do_nothing"`` returns the existing one).

    Concurrent creates of one id: the store's unique key picks the winner, the others see the
    thread as existing (409, or the winner's thread with ``do_nothing``).
    """
    thread_id = body.thread_id or str(uuid.uuid4())
    # An id made here is new: no read first (a collision would still fail on the unique key).
    existing = await service.store.get_thread(thread_id) if body.thread_id else None
    if existing is None:
        metadata = service.manager.thread_metadata(body.metadata)
        try:
            return (await service.store.create_thread(thread_id, metadata, tenant)).public()
        except ThreadExistsError:
            existing = await service.store.get_thread(thread_id)
            if existing is None:  # created and deleted again meanwhile
                raise
    if existing.tenant != tenant:  # ids are global (the checkpointer keys on them): never share one
        raise ThreadExistsError(f"thread id {thread_id} is taken; choose another")
    if body.if_exists == "do_nothing":
        return existing.public()
    raise ThreadExistsError(f"thread {thread_id} already exists")


@router.post("/search")
async def search_threads(body: ThreadSearch, service: ServiceDep, tenant: TenantDep) -> list[dict[str, Any]]:
    """Filter by metadata, status, ids (and values, by equality of top-level keys)."""
    found = await service.store.search_threads(
        metadata=body.metadata,
        status=body.status,
        ids=body.ids,
        limit=body.limit if not body.values else 10_000,
        offset=body.offset if not body.values else 0,
        sort_by=body.sort_by,
        sort_order=body.sort_order,
        tenant=tenant,
    )
    if body.values:
        wanted = body.values
        found = [
            t
            for t in found
            if isinstance(t.values, dict) and all(t.values.get(k) == v for k, v in wanted.items())
        ]
        found = found[body.offset : body.offset + body.limit]
    return [t.public() for t in found]


@router.post("/count")
async def count_threads(body: ThreadCount, service: ServiceDep, tenant: TenantDep) -> int:
    """How many threads match."""
    found = await service.store.search_threads(
        metadata=body.metadata,
        status=body.status,
        ids=None,
        limit=1_000_000,
        offset=0,
        sort_by="created_at",
        sort_order="desc",
        tenant=tenant,
    )
    return len(found)


@router.post("/prune")
async def prune_threads(body: ThreadPrune, service: ServiceDep, tenant: TenantDep) -> dict[str, int]:
    """``delete``: delete the threads (runs cancelled, checkpoints gone); ``keep_latest``: keep each
    thread and its current state, drop its older checkpoints. Ids that are not ``tenant``'s threads
    are skipped (not counted), as on the LangGraph server.
    """
    owned = [t.thread_id for t in await _owned(service, body.thread_ids, tenant)]
    if body.strategy == "delete":
        for thread_id in owned:
            await service.manager.delete_thread(thread_id)
    elif owned:
        await prune_to_latest(service.checkpointer, owned)
    return {"pruned_count": len(owned)}


async def _owned(service: ServiceDep, thread_ids: list[str], tenant: str) -> list[ThreadRecord]:
    if not thread_ids:
        return []
    return await service.store.search_threads(
        metadata=None,
        status=None,
        ids=thread_ids,
        limit=len(thread_ids),
        offset=0,
        sort_by="created_at",
        sort_order="asc",
        tenant=tenant,
    )


@router.post("/{thread_id}/copy")
async def copy_thread(thread_id: str, service: ServiceDep, tenant: TenantDep) -> dict[str, Any]:
    """A new thread of ``tenant`` with the thread's metadata, state and whole checkpoint history."""
    source = await service.manager.require_thread(thread_id, tenant)
    copy_id = str(uuid.uuid4())
    await service.store.create_thread(copy_id, source.metadata, tenant)
    try:
        await copy_checkpoints(service.checkpointer, thread_id, copy_id)
    except BaseException:
        await service.manager.delete_thread(copy_id)  # no half copy left behind
        raise
    await service.store.update_thread(
        copy_id,
        values=source.values,
        interrupts=source.interrupts,
        set_values=True,
        status=ThreadStatus.INTERRUPTED if source.interrupts else ThreadStatus.IDLE,
    )
    return (await service.manager.require_thread(copy_id, tenant)).public()


@router.get("/{thread_id}")
async def get_thread(thread_id: str, service: ServiceDep, tenant: TenantDep) -> dict[str, Any]:
    """The thread with its status and last values."""
    return (await service.manager.require_thread(thread_id, tenant)).public()


@router.patch("/{thread_id}")
async def patch_thread(
    thread_id: str, body: ThreadPatch, service: ServiceDep, tenant: TenantDep
) -> dict[str, Any]:
    """Merge metadata."""
    thread = await service.manager.require_thread(thread_id, tenant)
    await service.store.update_thread(thread_id, metadata={**thread.metadata, **body.metadata})
    return await get_thread(thread_id, service, tenant)


@router.delete("/{thread_id}", status_code=204)
async def delete_thread(thread_id: str, service: ServiceDep, tenant: TenantDep) -> Response:
    """Cancel its runs, delete it, its runs and its checkpoints."""
    await _require(service, thread_id, tenant)
    await service.manager.delete_thread(thread_id)
    return Response(status_code=204)


@router.get("/{thread_id}/state")
async def get_thread_state(
    thread_id: str, service: ServiceDep, tenant: TenantDep, subgraphs: bool = Query(default=False)
) -> Any:
    """The latest checkpoint of the thread."""
    await _require(service, thread_id, tenant)
    snapshot = await service.host.graph.aget_state(_config(thread_id), subgraphs=subgraphs)
    return snapshot_to_state(snapshot)


@router.get("/{thread_id}/state/{checkpoint_id}")
async def get_thread_state_at(
    thread_id: str,
    checkpoint_id: str,
    service: ServiceDep,
    tenant: TenantDep,
    subgraphs: bool = Query(default=False),
) -> Any:
    """The state at one checkpoint."""
    await _require(service, thread_id, tenant)
    snapshot = await service.host.graph.aget_state(
        _config(thread_id, checkpoint_id=checkpoint_id), subgraphs=subgraphs
    )
    return snapshot_to_state(snapshot)


@router.post("/{thread_id}/state/checkpoint")
async def post_thread_state_at(
    thread_id: str, body: StateCheckpointRequest, service: ServiceDep, tenant: TenantDep
) -> Any:
    """The state at the checkpoint given in the body."""
    await _require(service, thread_id, tenant)
    snapshot = await service.host.graph.aget_state(
        _config(thread_id, body.checkpoint), subgraphs=body.subgraphs
    )
    return snapshot_to_state(snapshot)


@router.post("/{thread_id}/state")
async def update_thread_state(
    thread_id: str, body: StateUpdate, service: ServiceDep, tenant: TenantDep
) -> dict[str, Any]:
    """Write values as if ``as_node`` produced them (a new checkpoint; forks when a checkpoint is given).

    An unknown node or values the state's reducers refuse are the client's to fix (422); nothing is
    written then, since LangGraph applies the update before it saves the checkpoint.
    """
    await _require(service, thread_id, tenant)
    graph = service.host.graph
    if body.as_node is not None and body.as_node not in graph.nodes and body.as_node not in _SPECIAL_NODES:
        nodes = ", ".join(repr(n) for n in graph.nodes if not n.startswith("__"))
        raise InvalidStateUpdateError(
            f"as_node {body.as_node!r} is not a node of graph {service.host.graph_id!r}; use one of: {nodes}"
        )
    try:
        config = await graph.aupdate_state(
            _config(thread_id, body.checkpoint, body.checkpoint_id), body.values, as_node=body.as_node
        )
    except (InvalidUpdateError, TypeError, ValueError, KeyError) as exc:
        keys = ", ".join(repr(k) for k in body.values or {})
        raise InvalidStateUpdateError(
            f"cannot apply the update of {keys or 'no keys'} to the thread's state ({exc}); check each "
            f"value against the state schema (GET /assistants/{service.host.graph_id}/schemas)"
        ) from exc
    snapshot = await graph.aget_state(_config(thread_id))
    interrupts = interrupts_by_task(snapshot)
    await service.store.update_thread(
        thread_id,
        values=dumps_to_obj(snapshot.values),
        interrupts=interrupts,
        set_values=True,
        status=ThreadStatus.INTERRUPTED if interrupts else ThreadStatus.IDLE,
    )
    return {"checkpoint": dumps_to_obj(config.get("configurable", {}))}


@router.post("/{thread_id}/history")
async def get_thread_history(
    thread_id: str, body: HistoryRequest, service: ServiceDep, tenant: TenantDep
) -> list[Any]:
    """Past states, newest first (``before`` pages back, ``metadata`` filters)."""
    await _require(service, thread_id, tenant)
    before: RunnableConfig | None = None
    if isinstance(body.before, str):
        before = _config(thread_id, checkpoint_id=body.before)
    elif body.before is not None:
        before = _config(thread_id, body.before)
    if before is not None and await service.checkpointer.aget_tuple(before) is None:
        checkpoint_id = before["configurable"].get("checkpoint_id")
        raise CheckpointNotFoundError(f"no checkpoint {checkpoint_id!r} in thread {thread_id} to page from")
    states = []
    async for snapshot in service.host.graph.aget_state_history(
        _config(thread_id, body.checkpoint), filter=body.metadata, before=before, limit=body.limit
    ):
        states.append(snapshot_to_state(snapshot))
    return states
