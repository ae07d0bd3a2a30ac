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
from server.agent_protocol.api.run_responses import new_run_stream, new_run_wait
from server.agent_protocol.schemas import RunCreate
from server.deps import TenantDep

__all__ = ["MAX_BATCH", "router"]

router = APIRouter(prefix="/runs", tags=["agent-protocol"], route_class=JSONBodyRoute)

MAX_BATCH = 100


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
    record, sub = await service.manager.create_stateless_run(body, tenant=tenant, subscribe=True)
    assert sub is not None
    return new_run_stream(service, record, sub, body, request)


@router.post("/wait")
async def wait_stateless_run(body: RunCreate, service: ServiceDep, tenant: TenantDep) -> Response:
    """Start a run on a thread of its own and answer with its final values when it ends."""
    record, _ = await service.manager.create_stateless_run(body, tenant=tenant)
    return new_run_wait(service, record, body)
