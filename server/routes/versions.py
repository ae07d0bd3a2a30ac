"""Version history of a file: list, one version, diff between two, rollback."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from server.deps import StoreDep, require_json
from server.routes.files import parse_version
from server.schemas import DiffPublic, RollbackCreate, VersionPublic, VersionSpec, VersionSummary

__all__ = ["router"]

router = APIRouter(prefix="/workspaces/{workspace_id}", tags=["versions"])


@router.get("/history/{path:path}", response_model=list[VersionSummary])
async def list_versions(workspace_id: str, path: str, store: StoreDep) -> list[VersionSummary]:
    """All versions of ``path``, oldest first (404 when the file does not exist)."""
    await store.get_workspace(workspace_id)
    history = await store.history(workspace_id, path)
    if not history:
        # Reading the latest raises the store's own not-found error for the path.
        await store.read(workspace_id, path)
    return [VersionSummary.from_version(v) for v in history]


@router.get("/versions/{version}/{path:path}", response_model=VersionPublic)
async def get_version(workspace_id: str, version: VersionSpec, path: str, store: StoreDep) -> VersionPublic:
    """One version of ``path`` by number or id."""
    await store.get_workspace(workspace_id)
    return VersionPublic.from_version(await store.read(workspace_id, path, parse_version(version)))


@router.get("/diff/{path:path}", response_model=DiffPublic)
async def diff_versions(
    workspace_id: str,
    path: str,
    store: StoreDep,
    from_: Annotated[VersionSpec, Query(alias="from", description="Version number or id")],
    to: Annotated[VersionSpec, Query(description="Version number or id")],
) -> DiffPublic:
    """Unified diff of ``path`` from version ``from`` to version ``to``."""
    await store.get_workspace(workspace_id)
    text = await store.diff(workspace_id, path, _required(parse_version(from_)), _required(parse_version(to)))
    return DiffPublic(path=path, from_version=from_, to_version=to, diff=text)


@router.post("/rollback/{path:path}", response_model=VersionPublic, dependencies=[Depends(require_json)])
async def rollback_file(workspace_id: str, path: str, body: RollbackCreate, store: StoreDep) -> VersionPublic:
    """Write a new version of ``path`` equal to ``version`` (history is kept)."""
    await store.get_workspace(workspace_id)
    version = await store.rollback(
        workspace_id, path, _required(parse_version(body.version)), author=body.author
    )
    return VersionPublic.from_version(version)


def _required(version: str | int | None) -> str | int:
    assert version is not None  # the query parameters are required
    return version
