"""Tenants: who a request acts for, and a version store that only sees that tenant's workspaces.

Every workspace carries its tenant (``workspace.base.Workspace.tenant``). Instead of asking each
route (and each tool the agent graph calls) to remember the check, the server hands out a
:class:`TenantStore`: a :class:`~workspace.base.VersionStore` that creates workspaces for its tenant
and answers :class:`~workspace.errors.WorkspaceNotFoundError` (404, never 403) for anyone else's,
so another tenant cannot even learn that an id exists.
"""

from __future__ import annotations

from dataclasses import dataclass

from workspace.base import FileInfo, SearchHit, Version, VersionStore, Workspace

__all__ = ["Principal", "TenantStore"]


@dataclass(frozen=True, kw_only=True)
class Principal:
    """The caller of one request: its tenant, and the id of the key used (never the key itself).

    ``key_id`` names the rate-limit bucket and appears in logs.
    """

    tenant: str
    key_id: str


class TenantStore:
    """A view of a shared version store restricted to one tenant's workspaces.

    ``close`` and ``setup`` do nothing: the shared store belongs to the server's lifespan.
    """

    def __init__(self, store: VersionStore, tenant: str) -> None:
        self._store = store
        self.tenant = tenant
        self._owned: set[str] = set()  # workspaces already checked (a workspace never changes tenant)

    @property
    def inner(self) -> VersionStore:
        """The shared, unscoped store (for the server's own bookkeeping only)."""
        return self._store

    async def _check(self, workspace_id: str) -> None:
        if workspace_id not in self._owned:
            await self._store.get_workspace(workspace_id, self.tenant)
            self._owned.add(workspace_id)

    async def setup(self) -> None:
        """No-op: the shared store is migrated by the server's lifespan."""

    async def close(self) -> None:
        """No-op: the shared store is closed by the server's lifespan."""

    async def create_workspace(self, name: str, tenant: str | None = None) -> Workspace:
        """Create a workspace owned by this view's tenant (``tenant`` is ignored)."""
        ws = await self._store.create_workspace(name, self.tenant)
        self._owned.add(ws.id)
        return ws

    async def get_workspace(self, workspace_id: str, tenant: str | None = None) -> Workspace:
        """The workspace if this tenant owns it; WorkspaceNotFoundError otherwise."""
        ws = await self._store.get_workspace(workspace_id, self.tenant)
        self._owned.add(ws.id)
        return ws

    async def list_workspaces(self, tenant: str | None = None) -> list[Workspace]:
        """This tenant's workspaces, oldest first."""
        return await self._store.list_workspaces(self.tenant)

    async def write(
        self, workspace_id: str, path: str, content: str, *, author: str = "user", message: str = ""
    ) -> Version:
        """Store a new version (after checking the workspace's tenant)."""
        await self._check(workspace_id)
        return await self._store.write(workspace_id, path, content, author=author, message=message)

    async def read(self, workspace_id: str, path: str, version: str | int | None = None) -> Version:
        """Read a version (after checking the workspace's tenant)."""
        await self._check(workspace_id)
        return await self._store.read(workspace_id, path, version)

    async def list_files(self, workspace_id: str) -> list[FileInfo]:
        """The latest version of each file (after checking the workspace's tenant)."""
        await self._check(workspace_id)
        return await self._store.list_files(workspace_id)

    async def history(self, workspace_id: str, path: str) -> list[Version]:
        """All versions of a path (after checking the workspace's tenant)."""
        await self._check(workspace_id)
        return await self._store.history(workspace_id, path)

    async def diff(self, workspace_id: str, path: str, a: str | int, b: str | int) -> str:
        """Unified diff between two versions (after checking the workspace's tenant)."""
        await self._check(workspace_id)
        return await self._store.diff(workspace_id, path, a, b)

    async def rollback(
        self, workspace_id: str, path: str, version: str | int, *, author: str = "user"
    ) -> Version:
        """Write a new version equal to ``version`` (after checking the workspace's tenant)."""
        await self._check(workspace_id)
        return await self._store.rollback(workspace_id, path, version, author=author)

    async def search(self, workspace_id: str, query: str, limit: int = 10) -> list[SearchHit]:
        """Full-text search in one workspace (after checking the workspace's tenant)."""
        await self._check(workspace_id)
        return await self._store.search(workspace_id, query, limit)

    async def index_run_output(self, workspace_id: str, run_id: str, path: str, text: str) -> None:
        """Index a run's output (after checking the workspace's tenant)."""
        await self._check(workspace_id)
        await self._store.index_run_output(workspace_id, run_id, path, text)
