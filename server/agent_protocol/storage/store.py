"""Threads and runs in the database (SQLite by default, Postgres with ``DATABASE_URL``).

One code path over both dialects with SQLAlchemy Core: every operation is a plain function of a
(sync) ``Connection``, handed to :meth:`ProtocolStore.read` or :meth:`ProtocolStore.write`, which
run it as one transaction. Why functions rather than awaiting each statement: on SQLite each
awaited statement was a hop to a driver thread and back through the event loop, and writes held
a lock across all of them, so under load every write waited several loop turns per statement.
On SQLite the function runs on the event loop while the database is free, else on a thread
(:mod:`.sqlite` says why and when); on Postgres on a pool thread with the sync driver
(:mod:`.postgres` says why not the async engine, which is kept for migrations). The
statements of a run's hot path are built once (:mod:`.statements`). JSON columns are stored as
text so the schema is the same everywhere. :meth:`ProtocolStore.setup` applies
``tables.MIGRATIONS`` with the project's one migration runner
(:func:`workspace.migrations.apply_migrations`: advisory lock, newer-schema guard). Graph state
itself lives in the checkpointer, not here. The run queue (:mod:`.queue`) and the stream events
(:mod:`.events`) go through the same two methods.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from server.agent_protocol.errors import ThreadExistsError
from server.agent_protocol.serde import dumpb
from server.agent_protocol.status import ACTIVE_STATUSES, RunStatus, ThreadStatus
from server.agent_protocol.storage import statements as sql
from server.agent_protocol.storage.inserts import new_run, new_thread
from server.agent_protocol.storage.pool import IDLE_PING_S, ping_when_idle
from server.agent_protocol.storage.postgres import PostgresRunner
from server.agent_protocol.storage.records import RunRecord, ThreadRecord, run_from_row, thread_from_row
from server.agent_protocol.storage.sqlite import SqliteRunner
from server.agent_protocol.storage.tables import MIGRATIONS, crons_t, events_t, runs_t, threads_t
from workspace.engine import enable_wal, normalise_url
from workspace.migrations import apply_migrations

__all__ = [
    "ProtocolStore",
    "Work",
    "async_url",
    "delete_run_work",
    "run_status_update",
    "thread_update",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")
Work = Callable[[Connection], T]

_SQLITE_BUSY_S = 30.0


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


def thread_update(
    thread_id: str,
    *,
    status: ThreadStatus | None = None,
    values: Any = None,
    interrupts: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
    set_values: bool = False,
    first_values: Any = None,
) -> Work[None]:
    """The work of :meth:`ProtocolStore.update_thread` (to run inside a larger transaction)."""
    params: dict[str, Any] = {"b_thread_id": thread_id, "b_updated_at": _now()}
    if status is not None:
        params["b_status"] = status
    if set_values:
        params["b_state_values"] = _text(values)
    if interrupts is not None:
        params["b_interrupts"] = _text(interrupts)
    if metadata is not None:
        params["b_metadata"] = _text(metadata)
    first = not set_values and first_values is not None
    columns = frozenset(k[2:] for k in params if k != "b_thread_id")
    if first:
        params["b_first_values"] = _text(first_values)
    update = sql.thread_update(columns, first)

    def work(conn: Connection) -> None:
        update.execute(conn, params).close()

    return work


def run_status_update(run_id: str, status: RunStatus, error: str | None = None) -> Work[None]:
    """The work recording a status change (an end status also stamps ``ended_at``)."""
    params = {
        "b_run_id": run_id,
        "b_status": status,
        "b_error": error,
        "b_updated_at": _now(),
        "b_ended_at": None if status in ACTIVE_STATUSES else time.time(),
    }

    def work(conn: Connection) -> None:
        sql.RUN_STATUS.execute(conn, params).close()

    return work


def delete_run_work(run_id: str, thread_id: str) -> Work[bool]:
    """The work of :meth:`ProtocolStore.delete_run` (to run inside a larger transaction)."""

    def work(conn: Connection) -> bool:
        res = conn.execute(runs_t.delete().where(runs_t.c.run_id == run_id, runs_t.c.thread_id == thread_id))
        if res.rowcount:
            conn.execute(events_t.delete().where(events_t.c.run_id == run_id))
        return bool(res.rowcount)

    return work


class ProtocolStore:
    """Threads and runs over one database. Build with :meth:`from_url`; call :meth:`setup` once."""

    def __init__(self, engine: AsyncEngine, runner: SqliteRunner | PostgresRunner) -> None:
        self._engine = engine
        self._runner = runner

    @property
    def engine(self) -> AsyncEngine:
        """The async engine (migrations; tests inspect the schema through it)."""
        return self._engine

    @property
    def is_postgres(self) -> bool:
        """Postgres (row locks, LISTEN / NOTIFY) rather than SQLite."""
        return self._engine.dialect.name == "postgresql"

    async def read(self, work: Work[T]) -> T:
        """Run ``work(conn)`` on a connection that only reads; returns its result."""
        return await self._runner.read(work)

    async def write(self, work: Work[T]) -> T:
        """Run ``work(conn)`` in one write transaction (committed on return, rolled back if it raises)."""
        return await self._runner.write(work)

    @classmethod
    def from_url(cls, url: str, *, idle_ping_s: float = IDLE_PING_S) -> ProtocolStore:
        """Create the engines (SQLite: WAL, ``synchronous=NORMAL``, a busy timeout).

        Args:
            url: Async SQLAlchemy URL (:func:`async_url`).
            idle_ping_s: Postgres: a pooled connection idle longer than this is pinged before use
                (see :func:`~.pool.ping_when_idle`).
        """
        if url.startswith("sqlite"):
            engine = create_async_engine(url, connect_args={"timeout": _SQLITE_BUSY_S})

            @sa.event.listens_for(engine.sync_engine, "connect")
            def _pragmas(dbapi_conn: Any, _record: Any) -> None:
                cur = dbapi_conn.cursor()
                enable_wal(cur)
                cur.execute("PRAGMA synchronous=NORMAL")
                cur.close()

            return cls(engine, SqliteRunner(url, busy_timeout_s=_SQLITE_BUSY_S))
        # The async engine only applies migrations (and tests read through it): a small pool.
        engine = create_async_engine(url, pool_size=2, max_overflow=4)
        ping_when_idle(engine, idle_ping_s)
        return cls(engine, PostgresRunner(url, idle_ping_s=idle_ping_s))

    async def setup(self) -> None:
        """Apply the migrations newer than the recorded version (safe from several processes at once)."""
        async with self._engine.begin() as conn:
            version = await apply_migrations(conn, MIGRATIONS)
        logger.info("agent protocol schema ready (version %d)", version)

    async def close(self) -> None:
        """Stop the runner's threads and dispose of the connection pools; idempotent."""
        await self._runner.close()
        await self._engine.dispose()

    # threads -------------------------------------------------------------------------------------

    async def create_thread(
        self, thread_id: str, metadata: dict[str, Any], tenant: str = "default"
    ) -> ThreadRecord:
        """Insert a new idle thread of ``tenant``.

        Raises:
            ThreadExistsError: the id is taken (also when a concurrent create won the race).
        """
        insert, record = new_thread(thread_id, metadata, tenant)
        try:
            await self.write(insert)
        except IntegrityError as exc:
            raise ThreadExistsError(f"thread {thread_id} already exists") from exc
        return record

    async def get_thread(self, thread_id: str, tenant: str | None = None) -> ThreadRecord | None:
        """Return the thread or None (also None when it belongs to another tenant than ``tenant``)."""
        return await self.read(lambda conn: _get_thread(conn, thread_id, tenant))

    async def thread_with_active_runs(
        self, thread_id: str, tenant: str
    ) -> tuple[ThreadRecord | None, list[RunRecord]]:
        """The thread if ``tenant`` owns it, and its pending or running runs (oldest first), in one read."""

        def work(conn: Connection) -> tuple[ThreadRecord | None, list[RunRecord]]:
            thread = _get_thread(conn, thread_id, tenant)
            return thread, (_active_runs(conn, thread_id) if thread is not None else [])

        return await self.read(work)

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
        await self.write(
            thread_update(
                thread_id,
                status=status,
                values=values,
                interrupts=interrupts,
                metadata=metadata,
                set_values=set_values,
                first_values=first_values,
            )
        )

    async def delete_thread(self, thread_id: str) -> bool:
        """Delete a thread and its runs; False when it did not exist."""

        def work(conn: Connection) -> bool:
            thread_runs = sa.select(runs_t.c.run_id).where(runs_t.c.thread_id == thread_id)
            conn.execute(events_t.delete().where(events_t.c.run_id.in_(thread_runs)))
            conn.execute(runs_t.delete().where(runs_t.c.thread_id == thread_id))
            conn.execute(crons_t.delete().where(crons_t.c.thread_id == thread_id))  # its crons go with it
            return bool(conn.execute(threads_t.delete().where(threads_t.c.thread_id == thread_id)).rowcount)

        return await self.write(work)

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
        found = await self.read(lambda conn: [thread_from_row(r) for r in conn.execute(query).all()])
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
        trace_parent: str | None = None,
    ) -> RunRecord:
        """Insert a pending run; with no ``worker_id`` it waits in the queue for any process to claim it."""
        insert, record = new_run(
            run_id=run_id,
            thread_id=thread_id,
            assistant_id=assistant_id,
            metadata=metadata,
            multitask_strategy=multitask_strategy,
            kwargs=kwargs,
            tenant=tenant,
            worker_id=worker_id,
            lease_until=lease_until,
            trace_parent=trace_parent,
        )
        await self.write(insert)
        return record

    async def get_run(self, run_id: str, thread_id: str | None = None) -> RunRecord | None:
        """Return the run (scoped to ``thread_id`` when given) or None."""
        return await self.read(lambda conn: _get_run(conn, run_id, thread_id))

    async def get_owned_run(
        self, run_id: str, thread_id: str, tenant: str
    ) -> tuple[ThreadRecord | None, RunRecord | None]:
        """The thread if ``tenant`` owns it, and the run of that thread, in one read."""

        def work(conn: Connection) -> tuple[ThreadRecord | None, RunRecord | None]:
            thread = _get_thread(conn, thread_id, tenant)
            return thread, (_get_run(conn, run_id, thread_id) if thread is not None else None)

        return await self.read(work)

    async def list_runs(
        self, thread_id: str, *, limit: int, offset: int, status: str | None = None
    ) -> list[RunRecord]:
        """Newest first."""
        query = runs_t.select().where(runs_t.c.thread_id == thread_id)
        if status:
            query = query.where(runs_t.c.status == status)
        query = query.order_by(runs_t.c.created_at.desc(), runs_t.c.run_id.desc()).limit(limit).offset(offset)
        return await self.read(lambda conn: [run_from_row(r) for r in conn.execute(query).all()])

    async def active_runs(self, thread_id: str) -> list[RunRecord]:
        """Pending or running runs of a thread, oldest first."""
        return await self.read(lambda conn: _active_runs(conn, thread_id))

    async def set_run_status(self, run_id: str, status: RunStatus, error: str | None = None) -> None:
        """Record a status change (an end status also stamps ``ended_at`` for the event retention)."""
        await self.write(run_status_update(run_id, status, error))

    async def delete_run(self, run_id: str, thread_id: str) -> bool:
        """Delete one run row (and its events); False when it did not exist."""
        return await self.write(delete_run_work(run_id, thread_id))


def _get_thread(conn: Connection, thread_id: str, tenant: str | None) -> ThreadRecord | None:
    if tenant is None:
        row = sql.THREAD.first(conn, {"b_thread_id": thread_id})
    else:
        row = sql.THREAD_OF_TENANT.first(conn, {"b_thread_id": thread_id, "b_tenant": tenant})
    return thread_from_row(row) if row else None


def _get_run(conn: Connection, run_id: str, thread_id: str | None) -> RunRecord | None:
    if thread_id is None:
        row = sql.RUN.first(conn, {"b_run_id": run_id})
    else:
        row = sql.RUN_OF_THREAD.first(conn, {"b_run_id": run_id, "b_thread_id": thread_id})
    return run_from_row(row) if row else None


def _active_runs(conn: Connection, thread_id: str) -> list[RunRecord]:
    return [run_from_row(r) for r in sql.ACTIVE_RUNS.rows(conn, {"b_thread_id": thread_id})]
