"""``SqlVersionStore``: the version store over SQLite or Postgres, one code path (SQLAlchemy Core, async).

Choices the contract leaves open:

* Writing content identical to the latest version still creates a version (with an empty diff),
  so every write is recorded with its author and message.
* A version is named by id (a 32-hex string) or by number: an ``int``, or a string of digits
  optionally prefixed with ``v`` (``"3"``, ``"v3"``), as a URL or a model would write it.
* Concurrent writers to one path take turns on the path's row in ``files`` (``SELECT ... FOR
  UPDATE`` on Postgres, ``BEGIN IMMEDIATE`` on SQLite); the first write of a new path can still race,
  which the unique ``(workspace, path, number)`` constraint catches and the write retries.
* A path is never both a file and a directory: writing ``a/b`` when ``a`` is a file (or ``a`` when
  ``a/b`` is one) raises PathConflictError, since no sandbox could materialise both. The first write
  of a path locks the workspace row (``FOR NO KEY UPDATE``, which leaves foreign-key checks of other
  writers alone) so two new clashing paths cannot slip in side by side.
* ``index_run_output`` stores log text, so it replaces NUL bytes and cuts it to a cap (head and
  tail) instead of refusing; retention and the per-tenant quota may delete it later
  (:mod:`workspace.retention`). Files and versions are never deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self, TypeVar

from sqlalchemy import exists, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from workspace.base import FileInfo, SearchHit, Version, Workspace
from workspace.content import check_content, sha256_hex, unified_diff
from workspace.engine import WRITE_OPTION, create_engine_for_url
from workspace.errors import (
    BinaryContentError,
    FileNotFoundInWorkspaceError,
    PathConflictError,
    VersionNotFoundError,
    WorkspaceError,
    WorkspaceNotFoundError,
)
from workspace.migrations import apply_migrations, current_version
from workspace.paths import MAX_PATH_LENGTH, normalise_path
from workspace.retention import RunOutputPolicy, clip_output, prune_run_outputs, save_run_output
from workspace.rows import check_name, new_id, to_version, to_workspace, version_clause
from workspace.schema import files, versions, workspaces
from workspace.search import run_search, upsert_document

__all__ = ["DEFAULT_MAX_FILE_BYTES", "SqlVersionStore"]

logger = logging.getLogger(__name__)

DEFAULT_MAX_FILE_BYTES = 1_000_000
_WRITE_ATTEMPTS = 8
_DIFF_IN_THREAD_CHARS = 100_000  # diff big files off the event loop
_T = TypeVar("_T")


class SqlVersionStore:
    """Versioned files in SQLite or Postgres; see :class:`workspace.base.VersionStore` for the contract.

    Build it with :meth:`from_url` (also usable as ``async with``), call :meth:`setup` once, and
    :meth:`close` when done.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
        max_path_length: int = MAX_PATH_LENGTH,
        run_outputs: RunOutputPolicy | None = None,
    ) -> None:
        self._engine = engine
        self.max_file_bytes = max_file_bytes
        self.max_path_length = max_path_length
        self.run_outputs = run_outputs or RunOutputPolicy()
        self.dialect: str = engine.dialect.name
        # SQLite has one writer at a time: queue this process's writers here rather than in
        # SQLite's busy handler, which polls with sleeps.
        self._sqlite_writers = asyncio.Lock() if self.dialect == "sqlite" else None
        self._closed = False

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
        max_path_length: int = MAX_PATH_LENGTH,
        run_outputs: RunOutputPolicy | None = None,
        **engine_kwargs: Any,
    ) -> Self:
        """Create a store for ``sqlite:///file.db`` or ``postgresql://...`` (async drivers are picked).

        ``engine_kwargs`` go to SQLAlchemy's ``create_async_engine`` (e.g. ``pool_size``).
        """
        engine = create_engine_for_url(url, **engine_kwargs)
        return cls(
            engine, max_file_bytes=max_file_bytes, max_path_length=max_path_length, run_outputs=run_outputs
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Dispose of the connection pool; idempotent."""
        if not self._closed:
            self._closed = True
            await self._engine.dispose()

    # -- transactions -------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _reading(self) -> AsyncIterator[AsyncConnection]:
        async with self._engine.connect() as conn:
            yield conn

    async def _in_write_tx(self, work: Callable[[AsyncConnection], Awaitable[_T]]) -> _T:
        """Run ``work`` in a write transaction, retrying when a concurrent writer took the same number."""
        for attempt in range(1, _WRITE_ATTEMPTS + 1):
            try:
                async with self._sqlite_writers or contextlib.nullcontext():
                    async with self._engine.connect() as conn:
                        await conn.execution_options(**{WRITE_OPTION: True})
                        async with conn.begin():
                            return await work(conn)
            except IntegrityError as exc:
                if attempt == _WRITE_ATTEMPTS:
                    raise WorkspaceError(f"write kept conflicting with concurrent writers: {exc}") from exc
                logger.debug("write conflict (attempt %d), retrying: %s", attempt, exc)
                await asyncio.sleep(0.001 * attempt)
        raise AssertionError("unreachable")

    async def _require_workspace(self, conn: AsyncConnection, workspace_id: str) -> None:
        found = await conn.scalar(select(exists().where(workspaces.c.id == workspace_id)))
        if not found:
            raise WorkspaceNotFoundError(f"no workspace {workspace_id!r}")

    async def _require_file(self, conn: AsyncConnection, workspace_id: str, path: str) -> None:
        """Raise the error that explains why nothing was found for ``path``."""
        await self._require_workspace(conn, workspace_id)
        found = await conn.scalar(
            select(exists().where((files.c.workspace_id == workspace_id) & (files.c.path == path)))
        )
        if not found:
            raise FileNotFoundInWorkspaceError(f"no file {path!r} in workspace {workspace_id!r}")

    # -- schema -------------------------------------------------------------------------------

    async def setup(self) -> None:
        """Create or migrate the schema; safe to call repeatedly and from several processes at once."""
        async with self._sqlite_writers or contextlib.nullcontext():
            async with self._engine.connect() as conn:
                await conn.execution_options(**{WRITE_OPTION: True})
                async with conn.begin():
                    version = await apply_migrations(conn)
        logger.info("workspace schema ready (%s, version %d)", self.dialect, version)

    async def schema_version(self) -> int:
        """Return the highest applied migration (0 before :meth:`setup`)."""
        async with self._reading() as conn:
            if not await conn.run_sync(lambda c: c.dialect.has_table(c, "schema_migrations")):
                return 0
            return await current_version(conn)

    # -- workspaces ---------------------------------------------------------------------------

    async def create_workspace(self, name: str, tenant: str = "default") -> Workspace:
        """Create an empty workspace owned by ``tenant``."""
        ws = Workspace(
            id=new_id(),
            name=check_name("name", name),
            tenant=check_name("tenant", tenant),
            created_at=datetime.now(UTC),
        )

        async def work(conn: AsyncConnection) -> Workspace:
            await conn.execute(
                insert(workspaces).values(id=ws.id, name=ws.name, tenant=ws.tenant, created_at=ws.created_at)
            )
            return ws

        return await self._in_write_tx(work)

    async def get_workspace(self, workspace_id: str, tenant: str | None = None) -> Workspace:
        """Return the workspace; WorkspaceNotFoundError also when it belongs to another tenant."""
        query = select(workspaces).where(workspaces.c.id == workspace_id)
        if tenant is not None:
            query = query.where(workspaces.c.tenant == tenant)
        async with self._reading() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            raise WorkspaceNotFoundError(f"no workspace {workspace_id!r}")
        return to_workspace(row)

    async def list_workspaces(self, tenant: str = "default") -> list[Workspace]:
        """Return the tenant's workspaces, oldest first."""
        query = (
            select(workspaces)
            .where(workspaces.c.tenant == tenant)
            .order_by(workspaces.c.created_at, workspaces.c.id)
        )
        async with self._reading() as conn:
            return [to_workspace(row) for row in (await conn.execute(query)).all()]

    # -- files --------------------------------------------------------------------------------

    async def _write_in(
        self,
        conn: AsyncConnection,
        workspace_id: str,
        path: str,
        content: str,
        data: bytes,
        author: str,
        message: str,
    ) -> Version:
        """Append a version of ``path`` inside the caller's write transaction."""
        # Lock the head row alone: with a join, Postgres' re-check after waiting on the lock would
        # pair the updated row with the stale joined row, drop it, and report no head at all.
        head_query = (
            select(files.c.version_id, files.c.number)
            .where((files.c.workspace_id == workspace_id) & (files.c.path == path))
            .with_for_update()
        )
        head = (await conn.execute(head_query)).first()
        if head is None:  # a head row implies its workspace exists (cascading foreign key)
            await self._check_new_path(conn, workspace_id, path)
            parent_id, number, diff = None, 1, ""
        else:
            parent_id, number = head.version_id, head.number + 1
            old = await conn.scalar(select(versions.c.content).where(versions.c.id == parent_id))
            assert old is not None
            if len(old) + len(content) > _DIFF_IN_THREAD_CHARS:
                diff = await asyncio.to_thread(unified_diff, path, old, content)
            else:
                diff = unified_diff(path, old, content)
        version = Version(
            id=new_id(),
            workspace_id=workspace_id,
            path=path,
            number=number,
            content=content,
            diff=diff,
            parent_id=parent_id,
            author=author,
            message=message,
            created_at=datetime.now(UTC),
            size=len(data),
            sha256=sha256_hex(data),
        )
        await conn.execute(insert(versions).values(**version.__dict__))
        head_values = {
            "version_id": version.id,
            "number": number,
            "size": version.size,
            "updated_at": version.created_at,
        }
        if head is None:
            await conn.execute(insert(files).values(workspace_id=workspace_id, path=path, **head_values))
        else:
            await conn.execute(
                update(files)
                .where((files.c.workspace_id == workspace_id) & (files.c.path == path))
                .values(**head_values)
            )
        await upsert_document(
            conn,
            workspace_id=workspace_id,
            kind="file",
            run_id="",
            path=path,
            version_id=version.id,
            body=content,
            size=version.size,
            created_at=version.created_at,
            is_new=head is None,
        )
        return version

    async def _check_new_path(self, conn: AsyncConnection, workspace_id: str, path: str) -> None:
        """Lock the workspace for new paths, then refuse ``path`` if a file is its ancestor or below it."""
        locked = await conn.scalar(
            select(workspaces.c.id).where(workspaces.c.id == workspace_id).with_for_update(key_share=True)
        )
        if locked is None:
            raise WorkspaceNotFoundError(f"no workspace {workspace_id!r}")
        parts = path.split("/")
        ancestors = ["/".join(parts[:i]) for i in range(1, len(parts))]
        below = path + "/"
        clash = await conn.scalar(
            select(files.c.path)
            .where(
                (files.c.workspace_id == workspace_id)
                & (files.c.path.in_(ancestors) | (func.substr(files.c.path, 1, len(below)) == below))
            )
            .order_by(files.c.path)
            .limit(1)
        )
        if clash is None:
            return
        if clash in ancestors:
            raise PathConflictError(
                f"cannot write {path!r}: {clash!r} is a file, so it cannot also be a directory; "
                f"write elsewhere or pick another name"
            )
        raise PathConflictError(
            f"cannot write {path!r}: it is a directory holding {clash!r}; pick another name"
        )

    async def write(
        self, workspace_id: str, path: str, content: str, *, author: str = "user", message: str = ""
    ) -> Version:
        """Store a new version of ``path`` and return it (identical content still makes a version)."""
        path = normalise_path(path, max_length=self.max_path_length)
        data = check_content(content, self.max_file_bytes)

        async def work(conn: AsyncConnection) -> Version:
            return await self._write_in(conn, workspace_id, path, content, data, author, message)

        version = await self._in_write_tx(work)
        logger.debug("wrote %s v%d in workspace %s", path, version.number, workspace_id)
        return version

    async def _read_in(
        self, conn: AsyncConnection, workspace_id: str, path: str, spec: str | int | None
    ) -> Version:
        if spec is None:
            query = (
                select(versions)
                .join(files, files.c.version_id == versions.c.id)
                .where((files.c.workspace_id == workspace_id) & (files.c.path == path))
            )
        else:
            query = select(versions).where(
                (versions.c.workspace_id == workspace_id) & (versions.c.path == path) & version_clause(spec)
            )
        row = (await conn.execute(query)).first()
        if row is None:
            await self._require_file(conn, workspace_id, path)
            raise VersionNotFoundError(f"no version {spec!r} of {path!r}")
        return to_version(row)

    async def read(self, workspace_id: str, path: str, version: str | int | None = None) -> Version:
        """Return the latest version of ``path``, or the one named by id or number."""
        path = normalise_path(path, max_length=self.max_path_length)
        async with self._reading() as conn:
            return await self._read_in(conn, workspace_id, path, version)

    async def list_files(self, workspace_id: str) -> list[FileInfo]:
        """Return the latest version of every file, sorted by path."""
        query = select(files).where(files.c.workspace_id == workspace_id).order_by(files.c.path)
        async with self._reading() as conn:
            rows = (await conn.execute(query)).all()
            if not rows:
                await self._require_workspace(conn, workspace_id)
        return [
            FileInfo(
                path=r.path, version_id=r.version_id, number=r.number, size=r.size, updated_at=r.updated_at
            )
            for r in rows
        ]

    async def history(self, workspace_id: str, path: str) -> list[Version]:
        """Return every version of ``path``, oldest first."""
        path = normalise_path(path, max_length=self.max_path_length)
        query = (
            select(versions)
            .where((versions.c.workspace_id == workspace_id) & (versions.c.path == path))
            .order_by(versions.c.number)
        )
        async with self._reading() as conn:
            rows = (await conn.execute(query)).all()
            if not rows:
                await self._require_file(conn, workspace_id, path)
        return [to_version(row) for row in rows]

    async def diff(self, workspace_id: str, path: str, a: str | int, b: str | int) -> str:
        """Return the unified diff from version ``a`` to version ``b`` ("" when equal)."""
        path = normalise_path(path, max_length=self.max_path_length)
        async with self._reading() as conn:
            old = await self._read_in(conn, workspace_id, path, a)
            new = await self._read_in(conn, workspace_id, path, b)
        if len(old.content) + len(new.content) > _DIFF_IN_THREAD_CHARS:
            return await asyncio.to_thread(unified_diff, path, old.content, new.content)
        return unified_diff(path, old.content, new.content)

    async def rollback(
        self, workspace_id: str, path: str, version: str | int, *, author: str = "user"
    ) -> Version:
        """Write a new version whose content equals ``version``; message ``rollback to vN``."""
        path = normalise_path(path, max_length=self.max_path_length)

        async def work(conn: AsyncConnection) -> Version:
            target = await self._read_in(conn, workspace_id, path, version)
            data = target.content.encode("utf-8")
            message = f"rollback to v{target.number}"
            return await self._write_in(conn, workspace_id, path, target.content, data, author, message)

        return await self._in_write_tx(work)

    # -- search -------------------------------------------------------------------------------

    async def index_run_output(self, workspace_id: str, run_id: str, path: str, text: str) -> None:
        """Make a run's output searchable (head and tail within the cap; quota: oldest out first)."""
        path = normalise_path(path, max_length=self.max_path_length)
        run_id = check_name("run_id", run_id)
        if not isinstance(text, str):
            raise BinaryContentError(f"run output must be text (str), got {type(text).__name__}")
        body = clip_output(text.replace("\x00", "\ufffd"), self.run_outputs.cap())
        quota = self.run_outputs.quota_bytes
        await self._in_write_tx(
            lambda conn: save_run_output(conn, workspace_id, run_id, path, body, quota=quota)
        )

    async def prune_run_outputs(self, now: datetime | None = None) -> int:
        """Delete run outputs past the retention or over a (lowered) tenant quota; returns how many."""
        return await prune_run_outputs(self._in_write_tx, self.run_outputs, now)

    async def search(self, workspace_id: str, query: str, limit: int = 10) -> list[SearchHit]:
        """Full-text search the latest files and run outputs of a workspace, best first."""
        limit = max(1, min(int(limit), 100))
        async with self._reading() as conn:
            await self._require_workspace(conn, workspace_id)
            return await run_search(conn, workspace_id, query, limit)
