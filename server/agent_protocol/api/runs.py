"""Runs of a thread: create (background), stream, wait, get, list, join, rejoin a stream, cancel, delete.

Every handler talks to the run manager only. A client that leaves a stream or a wait before the
end cancels the run when it asked for it (``on_disconnect="cancel"`` on creation,
``cancel_on_disconnect`` on a join): :meth:`RunManager.on_disconnect` decides, in one place.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response
from sse_starlette import EventSourceResponse

from server.agent_protocol.api.deps import ServiceDep
from server.agent_protocol.api.json_body import JSONBodyRoute
from server.agent_protocol.api.run_responses import new_run_stream, new_run_wait
from server.agent_protocol.schemas import EventId, RunCreate
from server.agent_protocol.status import CancelAction
from server.agent_protocol.streaming.sse import event_stream_response, run_headers, wait_response
from server.deps import TenantDep
from server.middleware import received_at
from server.schemas import MAX_INT64

__all__ = ["router"]

router = APIRouter(prefix="/threads/{thread_id}/runs", tags=["agent-protocol"], route_class=JSONBodyRoute)


def _truthy(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true", "yes")


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
    thread_id: str, body: RunCreate, service: ServiceDep, tenant: TenantDep, request: Request
) -> EventSourceResponse:
    """Start a run and stream its events (SSE); a disconnect cancels it if ``on_disconnect="cancel"``.

    The headers (run id in ``Content-Location``) go out at once; a run that waits in the queue
    opens its stream with a ``metadata`` event giving its queue position.
    """
    record, sub = await service.manager.create_run(thread_id, body, tenant=tenant, subscribe=True)
    assert sub is not None
    return new_run_stream(service, record, sub, body, request)


@router.post("/wait")
async def wait_run(thread_id: str, body: RunCreate, service: ServiceDep, tenant: TenantDep) -> Response:
    """Start a run and answer with its final values when it ends."""
    record, _ = await service.manager.create_run(thread_id, body, tenant=tenant)
    return new_run_wait(service, record, body)


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
    manager = service.manager
    runs = await manager.list_runs(thread_id, tenant=tenant, limit=limit, offset=offset, status=status)
    return [r.public() for r in runs]


@router.get("/{run_id}")
async def get_run(thread_id: str, run_id: str, service: ServiceDep, tenant: TenantDep) -> dict[str, Any]:
    """One run with its status."""
    return (await service.manager.get_run(thread_id, run_id, tenant=tenant)).public()


@router.delete("/{run_id}", status_code=204)
async def delete_run(thread_id: str, run_id: str, service: ServiceDep, tenant: TenantDep) -> Response:
    """Delete a finished run (an active one is cancelled first)."""
    await service.manager.delete_run(thread_id, run_id, tenant=tenant)
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
    manager = service.manager
    await manager.get_run(thread_id, run_id, tenant=tenant)
    return wait_response(
        lambda: manager.wait(thread_id, run_id),
        headers=run_headers(thread_id, run_id, "join"),
        on_disconnect=manager.on_disconnect(run_id, cancel=_truthy(cancel_on_disconnect), who="join client"),
        heartbeat_s=service.settings.heartbeat_s,
    )


@router.get("/{run_id}/stream")
async def join_run_stream(
    thread_id: str,
    run_id: str,
    service: ServiceDep,
    tenant: TenantDep,
    request: Request,
    cancel_on_disconnect: Annotated[str | None, Query()] = None,
    stream_mode: Annotated[list[str] | None, Query()] = None,
    last_event_id: Annotated[EventId, Header()] = None,
) -> EventSourceResponse:
    """Rejoin a run's stream: new events (after ``Last-Event-ID`` if given) until the run ends."""
    manager = service.manager
    await manager.get_run(thread_id, run_id, tenant=tenant)
    modes = [m for m in stream_mode or [] if m] or None  # the SDK sends "stream_mode=" for "all"
    sub = await manager.subscribe(run_id, modes=modes, last_event_id=last_event_id)
    cancel = _truthy(cancel_on_disconnect)
    return event_stream_response(
        sub,
        headers=run_headers(thread_id, run_id, "stream"),
        on_disconnect=manager.on_disconnect(run_id, cancel=cancel, who="stream client"),
        heartbeat_s=service.settings.heartbeat_s,
        coalesce_s=service.settings.stream_coalesce_s,
        received_at=received_at(request.scope),
    )


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
    manager = service.manager
    await manager.get_run(thread_id, run_id, tenant=tenant)
    waited = _truthy(wait)
    await manager.cancel(run_id, action=CancelAction.parse(action), wait=waited)
    return Response(status_code=204 if waited else 202)
