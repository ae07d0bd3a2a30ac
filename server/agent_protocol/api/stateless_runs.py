"""Stateless runs: ``/runs`` (background), ``/runs/stream``, ``/runs/wait`` and ``/runs/batch``.

Each run gets a thread of its own, made for it and deleted when it ends (``on_completion="delete"``,
the default) or kept (``"keep"``: then it is an ordinary thread of the tenant). The run goes through
the same queue, executor and worker as a thread's run, so restart safety, queue position,
cancellation and the event format are the same; the response headers name the run's thread, so a
client can follow or cancel it there while it runs.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Request, Response
from sse_starlette import EventSourceResponse

from server.agent_protocol.api.deps import ServiceDep
from server.agent_protocol.api.json_body import JSONBodyRoute
from server.agent_protocol.schemas import RunCreate
from server.agent_protocol.streaming.sse import event_stream_response, run_headers, wait_response
from server.deps import TenantDep
from server.middleware import received_at

__all__ = ["MAX_BATCH", "router"]

router = APIRouter(prefix="/runs", tags=["agent-protocol"], route_class=JSONBodyRoute)

MAX_BATCH = 100


def _cancels(service: ServiceDep, body: RunCreate) -> bool:
    return (body.on_disconnect or service.settings.default_on_disconnect) == "cancel"


@router.post("")
async def create_stateless_run(
    body: RunCreate, service: ServiceDep, tenant: TenantDep, response: Response
) -> dict[str, Any]:
    """Start a background run on a thread of its own; returns it at once (``pending``)."""
    record, _ = await service.manager.create_stateless_run(body, tenant=tenant)
    response.headers["Content-Location"] = f"/threads/{record.thread_id}/runs/{record.run_id}"
    return record.public()


@router.post("/batch")
async def create_stateless_run_batch(
    body: Annotated[list[RunCreate], Body(max_length=MAX_BATCH)], service: ServiceDep, tenant: TenantDep
) -> list[dict[str, Any]]:
    """Start several background runs, each on a thread of its own.

    Every run is checked before any is created: one bad run (an unknown assistant, a context the
    operator refuses) fails the batch with nothing queued.
    """
    records = await service.manager.create_stateless_batch(body, tenant=tenant)
    return [r.public() for r in records]


@router.post("/stream")
async def stream_stateless_run(
    body: RunCreate, service: ServiceDep, tenant: TenantDep, request: Request
) -> EventSourceResponse:
    """Start a run on a thread of its own and stream its events (as ``/threads/{id}/runs/stream``)."""
    manager = service.manager
    record, sub = await manager.create_stateless_run(body, tenant=tenant, subscribe=True)
    assert sub is not None
    run_id = record.run_id
    return event_stream_response(
        sub,
        headers=run_headers(record.thread_id, run_id, "stream"),
        on_disconnect=manager.on_disconnect(run_id, cancel=_cancels(service, body), who="client"),
        heartbeat_s=service.settings.heartbeat_s,
        first=lambda: manager.queued_event(run_id),
        coalesce_s=service.settings.stream_coalesce_s,
        received_at=received_at(request.scope),
    )


@router.post("/wait")
async def wait_stateless_run(body: RunCreate, service: ServiceDep, tenant: TenantDep) -> Response:
    """Start a run on a thread of its own and answer with its final values when it ends."""
    manager = service.manager
    record, _ = await manager.create_stateless_run(body, tenant=tenant)
    thread_id, run_id = record.thread_id, record.run_id
    return wait_response(
        lambda: manager.wait(thread_id, run_id),
        headers=run_headers(thread_id, run_id, "join"),
        on_disconnect=manager.on_disconnect(run_id, cancel=_cancels(service, body), who="client"),
        heartbeat_s=service.settings.heartbeat_s,
    )
