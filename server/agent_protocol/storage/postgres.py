"""Running the store's work on Postgres: sync psycopg connections on a small thread pool.

Why not the async engine's ``run_sync``: a work function is sync code, and SQLAlchemy's async
engine runs it in a greenlet that switches back to the event loop for every socket wait of
every statement (``await_only``). Profiled under ``bench/server_load.py`` that machinery
(SQLAlchemy's async adapter, psycopg's async cursor, greenlet switches: about 190 loop waits per
run) was the largest part of the server's CPU on Postgres, and every wait was another turn of a
busy event loop, so a run's claim and first event queued behind everyone else's statements.

Here the same function runs on a pool thread with the sync driver: libpq waits for the server in
C without the GIL, the loop does one hand-off per transaction instead of one per statement, and
up to ``workers`` transactions are in flight at once (the pool has as many connections). Reads
run in autocommit (no ``BEGIN`` / ``ROLLBACK`` round trips; each statement of a READ COMMITTED
transaction takes its own snapshot anyway); writes are one transaction, committed on return.

One caveat, shared with any thread hand-off: a caller cancelled while its work is on a thread
does not stop that work; the transaction still commits or rolls back by itself. Every write of
the store is one whole change (a claim, an event batch, a status), so finishing it is safe.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from server.agent_protocol.storage.pool import ping_when_idle

__all__ = ["PostgresRunner"]

T = TypeVar("T")


def _read(engine: Engine, work: Callable[[Connection], T]) -> T:
    with engine.connect() as conn:
        return work(conn)


def _write(engine: Engine, work: Callable[[Connection], T]) -> T:
    with engine.begin() as conn:
        return work(conn)


class PostgresRunner:
    """Runs work functions on a Postgres URL (``postgresql+psycopg``, sync) off the event loop."""

    def __init__(self, url: str, *, workers: int = 8, idle_ping_s: float) -> None:
        engine = sa.create_engine(sa.make_url(url), pool_size=workers, max_overflow=0)
        ping_when_idle(engine, idle_ping_s)
        self._writer = engine
        self._reader = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._threads = ThreadPoolExecutor(workers, "ap-postgres")

    async def read(self, work: Callable[[Connection], T]) -> T:
        """Run ``work`` on a connection in autocommit (it only reads)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._threads, _read, self._reader, work)

    async def write(self, work: Callable[[Connection], T]) -> T:
        """Run ``work`` in one transaction (committed on return, rolled back if it raises)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._threads, _write, self._writer, work)

    async def close(self) -> None:
        """Wait for the work in flight, then close the connections; idempotent."""
        await asyncio.to_thread(self._threads.shutdown, True)
        self._writer.dispose()
