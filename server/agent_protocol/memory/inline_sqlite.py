"""LangGraph's ``SqliteStore`` with an ``abatch`` that runs on the event loop while the file is free.

Why not ``AsyncSqliteStore``: every statement of a batch (``BEGIN``, the query, the fetch, the
cursor's close, ``COMMIT``) is a hop to aiosqlite's thread and back under an asyncio lock, so the
one search a chat turn makes (``agents.memory.recall``) cost several loop turns and, under load,
about a fifth of a streamed run's server CPU (``bench/server_load.py``). A batch is a fraction of a
millisecond of CPU, which holds the GIL on any thread anyway, and a commit does not wait for the
disk (WAL, ``synchronous=NORMAL``): the same reasoning, and the same rules, as the run tables'
:class:`~server.agent_protocol.storage.sqlite.SqliteRunner` and the checkpointer's
``InlineSqliteSaver``. What must not happen on the loop is waiting: the loop's connection has no
busy timeout and takes the write lock up front (``BEGIN IMMEDIATE``) when the batch may write (a
put, or a read that refreshes TTLs), so "busy" comes before any work is done; the batch is then
rolled back and run again on the store's thread, whose connection waits. The loop's connection
never checkpoints the WAL (the run tables' runner does, on the same file).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from langgraph.store.base import Op, PutOp, Result, TTLConfig
from langgraph.store.sqlite import SqliteStore

from workspace.engine import sqlite_busy

__all__ = ["InlineSqliteStore", "open_inline_sqlite_store"]


class _LoopSqliteStore(SqliteStore):
    """The loop's side: one transaction per batch, write lock first when it may write, rolled back on failure.

    LangGraph's ``_cursor`` opens a deferred ``BEGIN`` and commits even when the batch failed
    half-way; here a busy database must leave nothing done, so the batch can run again elsewhere.
    """

    writes = False  # set per batch by InlineSqliteStore, read by _cursor (one batch at a time: no awaits)

    @contextlib.contextmanager
    def _cursor(self, *, transaction: bool = True) -> Iterator[sqlite3.Cursor]:
        with self.lock:
            if transaction:
                self.conn.execute("BEGIN IMMEDIATE" if self.writes else "BEGIN")
            cur = self.conn.cursor()
            try:
                yield cur
            except BaseException:
                if transaction and self.conn.in_transaction:
                    self.conn.rollback()
                raise
            else:
                if transaction:
                    self.conn.execute("COMMIT")
            finally:
                cur.close()


class InlineSqliteStore(SqliteStore):
    """``SqliteStore`` (its sync methods wait for a busy file, on any thread) whose ``abatch`` runs on
    the event loop when the file is free and on the store's own thread when not.

    Build with :func:`open_inline_sqlite_store`.
    """

    def __init__(
        self, conn: sqlite3.Connection, loop_conn: sqlite3.Connection, *, ttl: TTLConfig | None
    ) -> None:
        super().__init__(conn, ttl=ttl)
        self._here = _LoopSqliteStore(loop_conn, ttl=ttl)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-sqlite")
        self.offloaded = 0  # batches the file was too busy for on the loop (tests read it)

    async def _in_thread(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    async def asetup(self) -> None:
        """Create or migrate the tables (LangGraph's ``setup``) on the store's thread."""
        await self._in_thread(self.setup)
        self._here.is_setup = True  # the same file: its tables are there now

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        """``batch`` on the loop's connection; on the store's thread when another writer holds the file."""
        ops = list(ops)
        refresh = bool(self.ttl_config and self.ttl_config.get("refresh_on_read"))
        self._here.writes = refresh or any(isinstance(op, PutOp) for op in ops)
        try:
            return self._here.batch(ops)
        except sqlite3.OperationalError as exc:
            if not sqlite_busy(exc):
                raise
        self.offloaded += 1
        results: list[Result] = await self._in_thread(self.batch, ops)
        return results

    async def sweep_ttl(self) -> int:  # type: ignore[override]  # async, as the other stores' sweeps
        """Delete expired items (LangGraph's ``sweep_ttl``) on the store's thread; returns how many."""
        deleted: int = await self._in_thread(super().sweep_ttl)
        return deleted

    def close(self) -> None:
        """Finish queued work and stop the thread (the connections are closed by their opener)."""
        self._thread.shutdown(wait=True)


def _connect(path: Path, *, busy_s: float) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), timeout=busy_s, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA synchronous=NORMAL")
    if busy_s == 0:
        conn.execute("PRAGMA wal_autocheckpoint=0")
    return conn


@contextlib.asynccontextmanager
async def open_inline_sqlite_store(
    path: Path, ttl: TTLConfig | None, *, busy_timeout_s: float = 30.0
) -> AsyncIterator[InlineSqliteStore]:
    """An :class:`InlineSqliteStore` on ``path`` (set up; the file is in WAL mode), closed on exit."""
    conn = _connect(path, busy_s=busy_timeout_s)
    loop_conn = _connect(path, busy_s=0)
    store = InlineSqliteStore(conn, loop_conn, ttl=ttl)
    try:
        await store.asetup()
        yield store
    finally:
        store.close()
        loop_conn.close()
        conn.close()
