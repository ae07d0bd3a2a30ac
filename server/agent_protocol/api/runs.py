"""Runs of a thread: create (background), stream, wait, get, list, join, rejoin a stream, cancel, delete."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Response
from sse_starlette import EventSourceResponse

from server.agent_protocol.deps import ServiceDep
from server.agent_protocol.errors import ThreadNotFoundError
from server.agent_protocol.schemas import EventId, RunCreate
from server.agent_protocol.sse import event_stream_response, run_headers, wait_response
from server.deps import TenantDep
from server.schemas import MAX_INT64

__all__ = ["router"]

router = APIRouter(prefix="/threads/{thread_id}/runs", tags=["agent-protocol"])


def _truthy(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true", "yes")


async def _require_thread(service: ServiceDep, thread_id: str, tenant: str) -> None:
    """404 unless the thread belongs to ``tenant``; a run is reached only through its thread."""
    if await service.store.get_thread(thread_id, tenant) is None:
        raise ThreadNotFoundError(f"thread {thread_id} not found")


@router.post("")
async def create_run(
    thread_id: str, body: RunCreate, service: ServiceDep, tenant: TenantDep, response: Response
) -> dict[str, Any]:
    """Start a background run; returns it at once (``pending``)."""
    record, _ = await service.manager.create_run(thread_id, body, tenant=tenant)
    response.headers["Content-Location"] = f"/threads/{thread_id}/runs/{record.run_id}"
    return record.public()


@router.post("/stream")
async def stream_run(
    thread_id: str, body: RunCreate, service: ServiceDep, tenant: TenantDep
) -> EventSourceResponse:
    """Start a run and stream its events (SSE); a disconnect cancels it if ``on_disconnect="cancel"``."""
    record, sub = await service.manager.create_run(thread_id, body, tenant=tenant, subscribe=True)
    run_id = record.run_id
    cancel = (body.on_disconnect or service.settings.default_on_disconnect) == "cancel"
    manager = service.manager
    return event_stream_response(
        sub,
        headers=run_headers(thread_id, run_id, "stream"),
        on_disconnect=(lambda: manager.request_cancel(run_id, "client disconnected")) if cancel else None,
        heartbeat_s=service.settings.heartbeat_s,
    )


@router.post("/wait")
async def wait_run(thread_id: str, body: RunCreate, service: ServiceDep, tenant: TenantDep) -> Response:
    """Start a run and answer with its final values when it ends."""
    record, _ = await service.manager.create_run(thread_id, body, tenant=tenant)
    run_id = record.run_id
    manager = service.manager
    cancel = (body.on_disconnect or service.settings.default_on_disconnect) == "cancel"
    return wait_response(
        lambda: manager.wait(thread_id, run_id),
        headers=run_headers(thread_id, run_id, "join"),
        on_disconnect=(lambda: manager.request_cancel(run_id, "client disconnected")) if cancel else None,
        heartbeat_s=service.settings.heartbeat_s,
    )


@router.get("")
async def list_runs(
    thread_id: str,
    service: ServiceDep,
    tenant: TenantDep,
    limit: int = Query(default=10, ge=1, le=1000),
    offset: int = Query(default=0, ge=0, le=MAX_INT64),
    status: str | None = Query(default=None),
) -> list[dict[str, Any]]:
    """Runs of the thread, newest first."""
    await _require_thread(service, thread_id, tenant)
    runs = await service.store.list_runs(thread_id, limit=limit, offset=offset, status=status)
    return [r.public() for r in runs]


@router.get("/{run_id}")
async def get_run(thread_id: str, run_id: str, service: ServiceDep, tenant: TenantDep) -> dict[str, Any]:
    """One run with its status."""
    await _require_thread(service, thread_id, tenant)
    return (await service.manager.get_run(thread_id, run_id)).public()


@router.delete("/{run_id}", status_code=204)
async def delete_run(thread_id: str, run_id: str, service: ServiceDep, tenant: TenantDep) -> Response:
    """Delete a finished run (an active one is cancelled first)."""
    await _require_thread(service, thread_id, tenant)
    await service.manager.get_run(thread_id, run_id)
    await service.manager.cancel(run_id, wait=True)
    await service.store.delete_run(run_id, thread_id)
    return Response(status_code=204)


@router.get("/{run_id}/join")
async def join_run(
    thread_id: str,
    run_id: str,
    service: ServiceDep,
    tenant: TenantDep,
    cancel_on_disconnect: str | None = Query(default=None),
) -> Response:
    """Wait for the run to end; answer with the thread's final values."""
    await _require_thread(service, thread_id, tenant)
    manager = service.manager
    await manager.get_run(thread_id, run_id)
    return wait_response(
        lambda: manager.wait(thread_id, run_id),
        headers=run_headers(thread_id, run_id, "join"),
        on_disconnect=(lambda: manager.request_cancel(run_id, "join client disconnected"))
        if _truthy(cancel_on_disconnect) else None,
        heartbeat_s=service.settings.heartbeat_s,
    )  # fmt: skip


@router.get("/{run_id}/stream")
async def join_run_stream(
    thread_id: str,
    run_id: str,
    service: ServiceDep,
    tenant: TenantDep,
    cancel_on_disconnect: Annotated[str | None, Query()] = None,
    stream_mode: Annotated[list[str] | None, Query()] = None,
    last_event_id: Annotated[EventId, Header()] = None,
) -> EventSourceResponse:
    """Rejoin a run's stream: new events (after ``Last-Event-ID`` if given) until the run ends."""
    await _require_thread(service, thread_id, tenant)
    manager = service.manager
    await manager.get_run(thread_id, run_id)
    modes = [m for m in stream_mode or [] if m] or None  # the SDK sends "stream_mode=" for "all"
    sub = await manager.subscribe(run_id, modes=modes, last_event_id=last_event_id)

    return event_stream_response(
        sub,
        headers=run_headers(thread_id, run_id, "stream"),
        on_disconnect=(lambda: manager.request_cancel(run_id, "stream client disconnected"))
        if _truthy(cancel_on_disconnect) else None,
        heartbeat_s=service.settings.heartbeat_s,
    )  # fmt: skip


@router.post("/{run_id}/cancel")
async def cancel_run(
    thread_id: str,
    run_id: str,
    service: ServiceDep,
    tenant: TenantDep,
    wait: str | None = Query(default=None),
    action: str = Query(default="interrupt"),
) -> Response:
    """Cancel a pending or running run (no-op for a finished one); ``wait=1`` returns once it stopped."""
    await _require_thread(service, thread_id, tenant)
    manager = service.manager
    await manager.get_run(thread_id, run_id)
    act = action if action in ("interrupt", "rollback") else "interrupt"
    if _truthy(wait):
        await manager.cancel(run_id, action=act, wait=True)
        return Response(status_code=204)
    await manager.cancel(run_id, action=act, wait=False)
    return Response(status_code=202)
