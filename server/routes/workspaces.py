"""Workspaces: create, list, get."""

from __future__ import annotations

from fastapi import APIRouter, status

from server.deps import StoreDep
from server.schemas import WorkspaceCreate, WorkspacePublic

__all__ = ["router"]

router = APIRouter(prefix="/workspaces", tags=["workspaces"])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=WorkspacePublic)
async def create_workspace(body: WorkspaceCreate, store: StoreDep) -> WorkspacePublic:
    """Create an empty workspace."""
    return WorkspacePublic.from_workspace(await store.create_workspace(body.name))


@router.get("", response_model=list[WorkspacePublic])
async def list_workspaces(store: StoreDep) -> list[WorkspacePublic]:
    """List the workspaces."""
    return [WorkspacePublic.from_workspace(ws) for ws in await store.list_workspaces()]


@router.get("/{workspace_id}", response_model=WorkspacePublic)
async def get_workspace(workspace_id: str, store: StoreDep) -> WorkspacePublic:
    """Get one workspace (404 when unknown)."""
    return WorkspacePublic.from_workspace(await store.get_workspace(workspace_id))
