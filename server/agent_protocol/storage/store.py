"""Threads and runs in the database (SQLite by default, Postgres with ``DATABASE_URL``).

One code path over both dialects with SQLAlchemy Core async. JSON columns are stored as text so
the schema is the same everywhere. Migrations (``tables.MIGRATIONS``) are an append-only list:
position + 1 is the version, applied versions are recorded in ``agent_protocol_migrations``, and
:meth:`setup` runs only the newer ones. Graph state itself lives in the checkpointer, not here.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from server.agent_protocol.errors import ThreadExistsError
from server.agent_protocol.serde import dumpb, loads
from server.agent_protocol.tables import MIGRATIONS, events_t, migrations_t, runs_t, threads_t
from workspace.engine import enable_wal

__all__ = ["ACTIVE_STATUSES", "ProtocolStore", "RunRecord", "ThreadRecord", "async_url", "run_from_row"]

logger = logging.getLogger(__name__)

ACTIVE_STATUSES = ("pending", "running")


def _now() -> str:
    return datetime.now(UTC).isoformat()


def async_url(database_url: str | None, data_dir: Path) -> str:
    """Map a user-facing URL to its async SQLAlchemy driver (psycopg 3 / aiosqlite)."""
    if not database_url:
        data_dir.mkdir(parents=True, exist_ok=True)
        return f"sqlite+aiosqlite:///{data_dir / 'agent_protocol.db'}"
    for prefix in ("postgresql://", "postgres://"):
        if database_url.startswith(prefix):
            return "postgresql+psycopg://" + database_url[len(prefix) :]
    if database_url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + database_url[len("sqlite:///") :]
    return database_url


@dataclass(frozen=True, kw_only=True)
class ThreadRecord:
    """One thread row; ``values`` is the last state a run left (the checkpointer holds the truth)."""

    thread_id: str
    created_at: str
    updated_at: str
    metadata: dict[str, Any]
    status: str
    values: Any
    interrupts: dict[str, Any]
    tenant: str = "default"

    def public(self) -> dict[str, Any]:
        """The Agent Protocol ``Thread`` shape."""
        return {
            "thread_id": self.thread_id,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "metadata": self.metadata,
            "status": self.status,
            "values": self.values,
            "interrupts": self.interrupts,
        }


@dataclass(frozen=True, kw_only=True)
class RunRecord:
    """One run row; ``kwargs`` keeps the request (input, command, config, stream modes...)."""

    run_id: str
    thread_id: str
    assistant_id: str
    created_at: str
    updated_at: str
    status: str
    metadata: dict[str, Any]
    multitask_strategy: str
    kwargs: dict[str, Any]
    error: str | None
    tenant: str = "default"
    attempts: int = 0
    worker_id: str | None = None  # the process that claimed it (when it was read)
    cancel_action: str | None = None  # a cancel asked for while another process executes it

    def public(self) -> dict[str, Any]:
        """The Agent Protocol ``Run`` shape (plus ``error``, the reason, for a failed run)."""
        return {
            "run_id": self.run_id,
            "thread_id": self.thread_id,
            "assistant_id": self.assistant_id,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "status": self.status,
            "metadata": self.metadata,
            "multitask_strategy": self.multitask_strategy,
            "kwargs": self.kwargs,
            **({"error": self.error} if self.error else {}),
        }


def _thread(row: sa.Row[Any]) -> ThreadRecord:
    m = row._mapping
    return ThreadRecord(
        thread_id=m["thread_id"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
        metadata=loads(m["metadata"]) or {},
        status=m["status"],
        values=loads(m["state_values"]),
        interrupts=loads(m["interrupts"]) or {},
        tenant=m["tenant"],
    )


def run_from_row(row: sa.Row[Any]) -> RunRecord:
    """A :class:`RunRecord` from an ``ap_runs`` row."""
    m = row._mapping
    return RunRecord(
        run_id=m["run_id"],
        thread_id=m["thread_id"],
        assistant_id=m["assistant_id"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
        status=m["status"],
        metadata=loads(m["metadata"]) or {},
        multitask_strategy=m["multitask_strategy"],
        kwargs=loads(m["kwargs"]) or {},
        error=m["error"],
        tenant=m["tenant"],
        attempts=m["attempts"] or 0,
        worker_id=m["worker_id"],
        cancel_action=m["cancel_action"],
    )


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
        """Apply the migrations newer than the recorded version."""
        async with self.write() as conn:
            await conn.run_sync(lambda c: migrations_t.create(c, checkfirst=True))
            current = (await conn.execute(sa.select(sa.func.max(migrations_t.c.version)))).scalar() or 0
            for version, statements in enumerate(MIGRATIONS, start=1):
                if version <= current:
                    continue
                for stmt in statements:
                    await conn.execute(sa.text(stmt))
                await conn.execute(migrations_t.insert().values(version=version, applied_at=_now()))
                logger.info("agent protocol schema migrated to version %d", version)

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
                        status="idle",
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
            status="idle",
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
        return _thread(row) if row else None

    async def update_thread(
        self,
        thread_id: str,
        *,
        status: str | None = None,
        values: Any = None,
        interrupts: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        set_values: bool = False,
    ) -> None:
        """Update the given columns and ``updated_at``."""
        fields: dict[str, Any] = {"updated_at": _now()}
        if status is not None:
            fields["status"] = status
        if set_values:
            fields["state_values"] = _text(values)
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
        found = [_thread(r) for r in rows]
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
                    status="pending",
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
            status="pending",
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

    async def set_run_status(self, run_id: str, status: str, error: str | None = None) -> None:
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
