"""The contract of a versioned file store.

Every write creates a new immutable :class:`Version` (content, unified diff to its parent,
timestamp, author, message). History is never rewritten: ``rollback`` writes a new version whose
content equals an older one. All operations are scoped to one workspace and are transactional:
a failed call stores nothing.

Paths are normalised (``a//b/./c`` -> ``a/b/c``); ``..``, absolute paths, NUL bytes and content
over the size cap raise :class:`workspace.errors.InvalidPathError` /
:class:`workspace.errors.FileTooLargeError`. Content is text (UTF-8); binary content raises
:class:`workspace.errors.BinaryContentError`.

Implementations: ``workspace.sql.SqlVersionStore`` over SQLite (default) and Postgres.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

__all__ = ["FileInfo", "SearchHit", "Version", "VersionStore", "Workspace"]


@dataclass(frozen=True, kw_only=True)
class Workspace:
    """A named set of files belonging to one tenant."""

    id: str
    name: str
    tenant: str
    created_at: datetime


@dataclass(frozen=True, kw_only=True)
class Version:
    """One immutable version of one file. ``number`` counts from 1 per path."""

    id: str
    workspace_id: str
    path: str
    number: int
    content: str
    diff: str  # unified diff from the parent version ("" for the first)
    parent_id: str | None
    author: str
    message: str
    created_at: datetime
    size: int
    sha256: str


@dataclass(frozen=True, kw_only=True)
class FileInfo:
    """The latest version of a file, without its content."""

    path: str
    version_id: str
    number: int
    size: int
    updated_at: datetime


@dataclass(frozen=True, kw_only=True)
class SearchHit:
    """One full-text search result: the latest version of a file, or an indexed run output.

    ``rank`` is higher for better matches and comparable only within one result list.
    """

    kind: str  # "file" or "run_output"
    path: str
    version_id: str | None  # set for files
    run_id: str | None  # set for run outputs
    snippet: str  # matched terms wrapped in ** **
    rank: float


@runtime_checkable
class VersionStore(Protocol):
    """Versioned files, per workspace. See the module docstring for the contract."""

    async def setup(self) -> None:
        """Create or migrate the schema (runs only migrations newer than the recorded ones)."""
        ...

    async def create_workspace(self, name: str, tenant: str = "default") -> Workspace: ...

    async def get_workspace(self, workspace_id: str, tenant: str | None = None) -> Workspace:
        """Raises WorkspaceNotFoundError (also when it belongs to another tenant)."""
        ...

    async def list_workspaces(self, tenant: str = "default") -> list[Workspace]: ...

    async def write(
        self, workspace_id: str, path: str, content: str, *, author: str = "user", message: str = ""
    ) -> Version:
        """Store a new version of ``path``; returns it."""
        ...

    async def read(self, workspace_id: str, path: str, version: str | int | None = None) -> Version:
        """The latest version, or one by id or by number."""
        ...

    async def list_files(self, workspace_id: str) -> list[FileInfo]: ...

    async def history(self, workspace_id: str, path: str) -> list[Version]:
        """All versions of a path, oldest first."""
        ...

    async def diff(self, workspace_id: str, path: str, a: str | int, b: str | int) -> str:
        """Unified diff from version ``a`` to version ``b``."""
        ...

    async def rollback(
        self, workspace_id: str, path: str, version: str | int, *, author: str = "user"
    ) -> Version:
        """Write a new version equal to ``version``."""
        ...

    async def search(self, workspace_id: str, query: str, limit: int = 10) -> list[SearchHit]:
        """Full-text search over the latest version of each file and the indexed run outputs."""
        ...

    async def index_run_output(self, workspace_id: str, run_id: str, path: str, text: str) -> None:
        """Make a run's output (``path`` such as ``stdout``) searchable; replaces an earlier one.

        Unlike files, run output is not kept forever: it may be cut to a cap (head and tail kept),
        and deleted later by age or to keep the tenant within its quota (oldest first).
        """
        ...

    async def close(self) -> None:
        """Release connections; idempotent."""
        ...
