"""Crons: ``/runs/crons`` (stateless), ``/threads/{id}/runs/crons``, search, count, get, patch, delete.

Shapes as the LangGraph server's (what ``langgraph-sdk``'s ``client.crons`` reads): a ``Cron``
from create, get and patch, a list from search (``X-Pagination-Next`` when there is a next page),
a number from count, 204 from delete. Every cron belongs to the tenant that made it: another
tenant's answers 404 and never shows in a search.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from server.agent_protocol.api.deps import ServiceDep
from server.agent_protocol.api.json_body import JSONBodyRoute
from server.agent_protocol.api.paging import one_page
from server.agent_protocol.crons.schemas import CronCount, CronCreate, CronPatch, CronSearch, ThreadCronCreate
from server.deps import TenantDep

__all__ = ["router"]

router = APIRouter(tags=["agent-protocol"], route_class=JSONBodyRoute)


@router.post("/runs/crons")
async def create_cron(body: CronCreate, service: ServiceDep, tenant: TenantDep) -> dict[str, Any]:
    """A cron whose every fire runs on a thread of its own (deleted after, or kept)."""
    return (await service.crons.create(body, tenant)).public()


@router.post("/threads/{thread_id}/runs/crons")
async def create_thread_cron(
    thread_id: str, body: ThreadCronCreate, service: ServiceDep, tenant: TenantDep
) -> dict[str, Any]:
    """A cron whose fires run on the thread, one after another (or as its multitask strategy says)."""
    return (await service.crons.create(body, tenant, thread_id)).public()


@router.post("/runs/crons/search")
async def search_crons(
    body: CronSearch, service: ServiceDep, tenant: TenantDep, response: Response
) -> list[dict[str, Any]]:
    """``tenant``'s crons matching the filters, one page."""
    found = await service.crons.search(tenant, body)
    return one_page(found, offset=body.offset, limit=body.limit, select=body.select, response=response)


@router.post("/runs/crons/count")
async def count_crons(body: CronCount, service: ServiceDep, tenant: TenantDep) -> int:
    """How many of ``tenant``'s crons match the filters."""
    return await service.crons.count(tenant, body)


@router.get("/runs/crons/{cron_id}")
async def get_cron(cron_id: str, service: ServiceDep, tenant: TenantDep) -> dict[str, Any]:
    """The cron (404 for another tenant's)."""
    return (await service.crons.get(cron_id, tenant)).public()


@router.patch("/runs/crons/{cron_id}")
async def patch_cron(cron_id: str, body: CronPatch, service: ServiceDep, tenant: TenantDep) -> dict[str, Any]:
    """Change the fields sent (``end_time: null`` clears the end); the run part is checked again."""
    return (await service.crons.patch(cron_id, tenant, body)).public()


@router.delete("/runs/crons/{cron_id}", status_code=204)
async def delete_cron(cron_id: str, service: ServiceDep, tenant: TenantDep) -> Response:
    """Delete the cron; the runs it made stay."""
    await service.crons.delete(cron_id, tenant)
    return Response(status_code=204)
