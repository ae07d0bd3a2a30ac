"""Files of a workspace: write a new version, read one, list the latest of each."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from server.deps import StoreDep, require_json
from server.schemas import FileInfoPublic, FileWrite, VersionPublic, VersionSpec

__all__ = ["parse_version", "router"]

router = APIRouter(prefix="/workspaces/{workspace_id}/files", tags=["files"])


def parse_version(version: str | int | None) -> str | int | None:
    """A version is a number (``3``) or a version id; ASCII digits mean a number (``"²"`` is an id)."""
    if isinstance(version, str) and version.isascii() and version.isdigit():
        return int(version)
    return version


@router.get("", response_model=list[FileInfoPublic])
async def list_files(workspace_id: str, store: StoreDep) -> list[FileInfoPublic]:
    """List every file with its latest version (no content)."""
    await store.get_workspace(workspace_id)
    return [FileInfoPublic.from_info(info) for info in await store.list_files(workspace_id)]


@router.put("/{path:path}", response_model=VersionPublic, dependencies=[Depends(require_json)])
async def write_file(workspace_id: str, path: str, body: FileWrite, store: StoreDep) -> VersionPublic:
    """Store ``content`` as a new version of ``path`` (creating the file if needed)."""
    await store.get_workspace(workspace_id)
    version = await store.write(workspace_id, path, body.content, author=body.author, message=body.message)
    return VersionPublic.from_version(version)


@router.get("/{path:path}", response_model=VersionPublic)
async def read_file(
    workspace_id: str,
    path: str,
    store: StoreDep,
    version: Annotated[
        VersionSpec | None, Query(description="Version number or id; latest when omitted")
    ] = None,
) -> VersionPublic:
    """Read the latest version of ``path``, or the given ``version``."""
    await store.get_workspace(workspace_id)
    return VersionPublic.from_version(await store.read(workspace_id, path, parse_version(version)))
