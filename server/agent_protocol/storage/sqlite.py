"""Running the store's work on SQLite: on the event loop while the database is free, else on a thread.

Why on the loop: a transaction here is a tenth of a millisecond or so of CPU, nearly all of it
Python that holds the GIL whichever thread runs it, and a commit does not wait for the disk (WAL
with ``synchronous=NORMAL``). Sending it to a thread instead costs two wake-ups and a GIL
hand-over each way, and a thread that gives the GIL up around every SQLite call waits for it
again behind a busy event loop (up to the switch interval each time), so under load a write
took tens of milliseconds and every run's claim, start and end queued behind it.

On the loop the transaction is framed on the driver connection itself (``BEGIN`` / ``COMMIT`` /
``ROLLBACK`` through ``sqlite3``), not through SQLAlchemy's ``begin`` event and transaction
objects: that framing cost more Python time than the statements of most transactions, which run
on the driver's cursor anyway (:mod:`.raw`). Statements still run through SQLAlchemy join the same
transaction (its own begin is a no-op on SQLite) and its commit or rollback ends it.

What must never happen on the loop is waiting: the loop's connection has no busy timeout, so
when another connection holds the write lock (another process on the same file, or another
store of this one) SQLite answers "busy" at once and the same work is run again on the thread,
whose connection waits up to ``busy_timeout_s``. The loop's connection never checkpoints the WAL
itself (a checkpoint syncs the file); every ``checkpoint_every`` commits the thread does a
passive checkpoint instead.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError

from workspace.engine import enable_wal, sqlite_busy

__all__ = ["SqliteRunner"]

logger = logging.getLogger(__name__)

T = TypeVar("T")
_WRITE = "ap_write"  # execution option: this transaction writes (BEGIN IMMEDIATE)


def _engine(
    url: str, *, busy_s: float, autocheckpoint: bool, pool: type[sa.pool.Pool], framed: bool
) -> Engine:
    """An engine on the file; ``framed``: SQLAlchemy's ``begin`` emits ``BEGIN`` (else the caller does)."""
    parsed = sa.make_url(url).set(drivername="sqlite")
    engine = sa.create_engine(
        parsed, connect_args={"timeout": busy_s, "check_same_thread": False}, poolclass=pool
    )

    @sa.event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # no implicit BEGIN from the driver: _begin emits it
        cur = dbapi_conn.cursor()
        if busy_s > 0:
            enable_wal(cur)  # a no-op once set up; waits if another process is switching a new file
        cur.execute("PRAGMA synchronous=NORMAL")
        if not autocheckpoint:
            cur.execute("PRAGMA wal_autocheckpoint=0")
        cur.close()

    if not framed:
        return engine

    @sa.event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        # A writer takes the write lock up front: "busy" then comes before any work is done, and
        # a read lock is never upgraded half-way (which SQLite cannot wait for).
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(_WRITE) else "BEGIN")

    return engine


def _busy(exc: OperationalError | sqlite3.OperationalError) -> bool:
    return sqlite_busy(exc.orig if isinstance(exc, OperationalError) else exc)


def _run(engine: Engine, work: Callable[[Connection], T], write: bool) -> T:
    with engine.connect() as conn:
        if write:
            conn = conn.execution_options(**{_WRITE: True})
        with conn.begin():
            return work(conn)


def _run_on(conn: Connection, work: Callable[[Connection], T], write: bool) -> T:
    """One transaction framed on the driver connection (the loop's engine has no ``begin`` hook)."""
    raw = conn.connection.dbapi_connection
    assert raw is not None
    raw.execute("BEGIN IMMEDIATE" if write else "BEGIN")
    try:
        result = work(conn)
    except BaseException:
        if conn.in_transaction():
            conn.rollback()  # SQLAlchemy's rollback is the driver's: it ends the BEGIN above too
        else:
            raw.rollback()
        raise
    if conn.in_transaction():
        conn.commit()
    else:
        raw.commit()
    return result


class SqliteRunner:
    """Runs work functions on the file of an SQLAlchemy SQLite URL (sync driver)."""

    def __init__(self, url: str, *, busy_timeout_s: float = 30.0, checkpoint_every: int = 1000) -> None:
        # The store's setup() has put the file in WAL mode (persistent) before any work comes.
        self._there = _engine(
            url, busy_s=busy_timeout_s, autocheckpoint=True, pool=sa.pool.QueuePool, framed=True
        )
        self._here = _engine(url, busy_s=0, autocheckpoint=False, pool=sa.pool.StaticPool, framed=False)
        # One connection kept open for the loop: work there never awaits, so it is used by one
        # piece of work at a time (and a pool check-out per transaction would cost as much as it).
        self._conn: Connection | None = None
        self._thread = ThreadPoolExecutor(1, "ap-sqlite")
        self._checkpoint_every = checkpoint_every
        self._commits = 0
        self.offloaded = 0  # work the database was too busy for on the loop (tests and metrics read it)

    async def read(self, work: Callable[[Connection], T]) -> T:
        """Run ``work`` in a read transaction."""
        return await self._do(work, write=False)

    async def write(self, work: Callable[[Connection], T]) -> T:
        """Run ``work`` in a write transaction (committed on return, rolled back if it raises)."""
        result = await self._do(work, write=True)
        self._commits += 1
        if self._commits >= self._checkpoint_every:
            self._commits = 0
            self._thread.submit(self._checkpoint)
        return result

    async def _do(self, work: Callable[[Connection], T], *, write: bool) -> T:
        if self._conn is None:
            self._conn = self._here.connect()
        try:
            return _run_on(self._conn, work, write)
        except (OperationalError, sqlite3.OperationalError) as exc:
            self._drop_connection()  # whatever state the failure left it in
            if not _busy(exc):
                raise
        except BaseException:
            if self._conn is not None and self._conn.in_transaction():
                self._drop_connection()
            raise
        self.offloaded += 1
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, _run, self._there, work, write)

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # closing a broken connection: nothing more to do
                logger.debug("closing the loop's SQLite connection failed", exc_info=True)

    def _checkpoint(self) -> None:
        try:
            with self._there.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
        except Exception:  # the next one catches up; SQLite also checkpoints on the last close
            logger.warning("checkpointing the WAL of the agent protocol database failed", exc_info=True)

    async def close(self) -> None:
        """Checkpoint, stop the thread, close both engines; idempotent."""
        await asyncio.to_thread(self._thread.shutdown, True)
        self._drop_connection()
        self._checkpoint()
        self._here.dispose()
        self._there.dispose()
