"""Threads and runs in the database (SQLite by default, Postgres with ``DATABASE_URL``).

One code path over both dialects with SQLAlchemy Core async. JSON columns are stored as text so
the schema is the same everywhere. :meth:`ProtocolStore.setup` applies ``tables.MIGRATIONS`` with
the project's one migration runner (:func:`workspace.migrations.apply_migrations`: advisory lock,
newer-schema guard). Graph state itself lives in the checkpointer, not here. The run queue
(:mod:`.queue`) and the stream events (:mod:`.events`) share this store's engine.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from server.agent_protocol.errors import ThreadExistsError
from server.agent_protocol.serde import dumpb
from server.agent_protocol.status import ACTIVE_STATUSES, RunStatus, ThreadStatus
from server.agent_protocol.storage.records import RunRecord, ThreadRecord, run_from_row, thread_from_row
from server.agent_protocol.storage.tables import MIGRATIONS, events_t, runs_t, threads_t
from workspace.engine import enable_wal, normalise_url
from workspace.migrations import apply_migrations

__all__ = ["ProtocolStore", "async_url"]

logger = logging.getLogger(__name__)


def _now() -> str:
    return datetime.now(UTC).isoformat()


def async_url(database_url: str | None, data_dir: Path) -> str:
    """The async SQLAlchemy URL of the server's tables: the URL normalised, else SQLite in ``data_dir``."""
    if database_url:
        return normalise_url(database_url)
    data_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite+aiosqlite:///{data_dir / 'agent_protocol.db'}"


def _text(obj: Any) -> str:
    return dumpb(obj).decode()


class ProtocolStore:
    """Threads and runs over one async engine. Build with :meth:`from_url`; call :meth:`setup` once."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        # SQLite has one writer at a time and its busy handler sleeps up to 100 ms per retry: queueing
        # writers here instead keeps hundreds of concurrent runs from stalling each other.
        self._write_lock = asyncio.Lock() if engine.dialect.name == "sqlite" else None

    @property
    def engine(self) -> AsyncEngine:
        """The engine (the run queue and the event log share it)."""
        return self._engine

    @property
    def is_postgres(self) -> bool:
        """Postgres (row locks, LISTEN / NOTIFY) rather than SQLite."""
        return self._engine.dialect.name == "postgresql"

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction (serialised in-process on SQLite)."""
        if self._write_lock is None:
            async with self._engine.begin() as conn:
                yield conn
            return
        async with self._write_lock, self._engine.begin() as conn:
            yield conn

    @classmethod
    def from_url(cls, url: str) -> ProtocolStore:
        """Create the engine (SQLite gets WAL and a busy timeout so concurrent runs do not fail)."""
        if url.startswith("sqlite"):
            engine = create_async_engine(url, connect_args={"timeout": 30})

            @sa.event.listens_for(engine.sync_engine, "connect")
            def _pragmas(dbapi_conn: Any, _record: Any) -> None:
                cur = dbapi_conn.cursor()
                enable_wal(cur)  # two processes may open a new file at once
                cur.execute("PRAGMA synchronous=NORMAL")
                cur.close()

        else:
            engine = create_async_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)
        return cls(engine)

    async def setup(self) -> None:
        """Apply the migrations newer than the recorded version (safe from several processes at once)."""
        async with self.write() as conn:
            version = await apply_migrations(conn, MIGRATIONS)
        logger.info("agent protocol schema ready (version %d)", version)

    async def close(self) -> None:
        """Dispose of the connection pool; idempotent."""
        await self._engine.dispose()

    # threads -------------------------------------------------------------------------------------

    async def create_thread(
        self, thread_id: str, metadata: dict[str, Any], tenant: str = "default"
    ) -> ThreadRecord:
        """Insert a new idle thread of ``tenant``.

        Raises:
            ThreadExistsError: the id is taken (also when a concurrent create won the race).
        """
        now = _now()
        try:
            async with self.write() as conn:
                await conn.execute(
                    threads_t.insert().values(
                        thread_id=thread_id,
                        tenant=tenant,
                        created_at=now,
                        updated_at=now,
                        metadata=_text(metadata),
                        status=ThreadStatus.IDLE,
                        state_values=None,
                        interrupts="{}",
                    )
                )
        except IntegrityError as exc:
            raise ThreadExistsError(f"thread {thread_id} already exists") from exc
        return ThreadRecord(
            thread_id=thread_id,
            created_at=now,
            updated_at=now,
            metadata=metadata,
            status=ThreadStatus.IDLE,
            values=None,
            interrupts={},
            tenant=tenant,
        )

    async def get_thread(self, thread_id: str, tenant: str | None = None) -> ThreadRecord | None:
        """Return the thread or None (also None when it belongs to another tenant than ``tenant``)."""
        query = threads_t.select().where(threads_t.c.thread_id == thread_id)
        if tenant is not None:
            query = query.where(threads_t.c.tenant == tenant)
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return thread_from_row(row) if row else None

    async def update_thread(
        self,
        thread_id: str,
        *,
        status: ThreadStatus | None = None,
        values: Any = None,
        interrupts: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        set_values: bool = False,
        first_values: Any = None,
    ) -> None:
        """Update the given columns and ``updated_at``.

        ``first_values`` become the values only when the thread has none yet (a first run's input,
        shown while it runs, as clients list threads by their first message).
        """
        fields: dict[str, Any] = {"updated_at": _now()}
        if status is not None:
            fields["status"] = status
        if set_values:
            fields["state_values"] = _text(values)
        elif first_values is not None:
            column = threads_t.c.state_values
            empty = sa.or_(column.is_(None), column == "null")
            fields["state_values"] = sa.case((empty, _text(first_values)), else_=column)
        if interrupts is not None:
            fields["interrupts"] = _text(interrupts)
        if metadata is not None:
            fields["metadata"] = _text(metadata)
        async with self.write() as conn:
            await conn.execute(threads_t.update().where(threads_t.c.thread_id == thread_id).values(**fields))

    async def delete_thread(self, thread_id: str) -> bool:
        """Delete a thread and its runs; False when it did not exist."""
        async with self.write() as conn:
            thread_runs = sa.select(runs_t.c.run_id).where(runs_t.c.thread_id == thread_id)
            await conn.execute(events_t.delete().where(events_t.c.run_id.in_(thread_runs)))
            await conn.execute(runs_t.delete().where(runs_t.c.thread_id == thread_id))
            res = await conn.execute(threads_t.delete().where(threads_t.c.thread_id == thread_id))
        return bool(res.rowcount)

    async def search_threads(
        self,
        *,
        metadata: dict[str, Any] | None,
        status: str | None,
        ids: Sequence[str] | None,
        limit: int,
        offset: int,
        sort_by: str,
        sort_order: str,
        tenant: str | None = None,
    ) -> list[ThreadRecord]:
        """Filter by status / ids in SQL and by metadata containment in Python (portable across dialects)."""
        column = (
            threads_t.c[sort_by]
            if sort_by in ("thread_id", "created_at", "updated_at", "status")
            else (threads_t.c.created_at)
        )
        query = threads_t.select().order_by(column.asc() if sort_order == "asc" else column.desc())
        if tenant is not None:
            query = query.where(threads_t.c.tenant == tenant)
        if status:
            query = query.where(threads_t.c.status == status)
        if ids:
            query = query.where(threads_t.c.thread_id.in_(list(ids)))
        if not metadata:
            query = query.limit(limit).offset(offset)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        found = [thread_from_row(r) for r in rows]
        if metadata:
            found = [t for t in found if all(t.metadata.get(k) == v for k, v in metadata.items())]
            found = found[offset : offset + limit]
        return found

    # runs ----------------------------------------------------------------------------------------

    async def create_run(
        self,
        *,
        run_id: str,
        thread_id: str,
        assistant_id: str,
        metadata: dict[str, Any],
        multitask_strategy: str,
        kwargs: dict[str, Any],
        tenant: str = "default",
        worker_id: str | None = None,
        lease_until: float | None = None,
    ) -> RunRecord:
        """Insert a pending run; with no ``worker_id`` it waits in the queue for any process to claim it."""
        now = _now()
        async with self.write() as conn:
            await conn.execute(
                runs_t.insert().values(
                    run_id=run_id,
                    tenant=tenant,
                    worker_id=worker_id,
                    lease_until=lease_until,
                    attempts=0,
                    thread_id=thread_id,
                    assistant_id=assistant_id,
                    created_at=now,
                    updated_at=now,
                    status=RunStatus.PENDING,
                    metadata=_text(metadata),
                    multitask_strategy=multitask_strategy,
                    kwargs=_text(kwargs),
                    error=None,
                )
            )
        return RunRecord(
            run_id=run_id,
            thread_id=thread_id,
            assistant_id=assistant_id,
            created_at=now,
            updated_at=now,
            status=RunStatus.PENDING,
            metadata=metadata,
            multitask_strategy=multitask_strategy,
            kwargs=kwargs,
            error=None,
            tenant=tenant,
        )

    async def get_run(self, run_id: str, thread_id: str | None = None) -> RunRecord | None:
        """Return the run (scoped to ``thread_id`` when given) or None."""
        query = runs_t.select().where(runs_t.c.run_id == run_id)
        if thread_id is not None:
            query = query.where(runs_t.c.thread_id == thread_id)
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return run_from_row(row) if row else None

    async def list_runs(
        self, thread_id: str, *, limit: int, offset: int, status: str | None = None
    ) -> list[RunRecord]:
        """Newest first."""
        query = runs_t.select().where(runs_t.c.thread_id == thread_id)
        if status:
            query = query.where(runs_t.c.status == status)
        query = query.order_by(runs_t.c.created_at.desc(), runs_t.c.run_id.desc()).limit(limit).offset(offset)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [run_from_row(r) for r in rows]

    async def active_runs(self, thread_id: str) -> list[RunRecord]:
        """Pending or running runs of a thread, oldest first."""
        query = (
            runs_t.select()
            .where(runs_t.c.thread_id == thread_id, runs_t.c.status.in_(ACTIVE_STATUSES))
            .order_by(runs_t.c.created_at.asc())
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [run_from_row(r) for r in rows]

    async def set_run_status(self, run_id: str, status: RunStatus, error: str | None = None) -> None:
        """Record a status change (an end status also stamps ``ended_at`` for the event retention)."""
        ended = None if status in ACTIVE_STATUSES else time.time()
        async with self.write() as conn:
            await conn.execute(
                runs_t.update()
                .where(runs_t.c.run_id == run_id)
                .values(status=status, error=error, updated_at=_now(), ended_at=ended)
            )

    async def delete_run(self, run_id: str, thread_id: str) -> bool:
        """Delete one run row; False when it did not exist."""
        async with self.write() as conn:
            res = await conn.execute(
                runs_t.delete().where(runs_t.c.run_id == run_id, runs_t.c.thread_id == thread_id)
            )
            if res.rowcount:
                await conn.execute(events_t.delete().where(events_t.c.run_id == run_id))
        return bool(res.rowcount)
