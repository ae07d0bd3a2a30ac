"""Stream events in the database, so a client of any process can follow a run executing on another.

The run's own process publishes each event to its in-memory
:class:`~server.agent_protocol.streaming.streams.RunStream` at once and appends it here; a
background task writes the buffer in one batched ``INSERT`` every ``event_flush_s`` (one
transaction for all runs, not one per event), and on Postgres announces the runs that got events
with ``NOTIFY`` (:data:`~server.agent_protocol.storage.notify.EVENTS_CHANNEL`).
A run's end is recorded in the transaction that writes its last events
(:meth:`EventLog.flush` with ``then``), so a reader that sees the run ended and then reads the
table has every event. Events of finished runs are deleted after
``run_events_retention_s``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Connection

from server.agent_protocol.status import ACTIVE_STATUSES
from server.agent_protocol.storage import statements as sql
from server.agent_protocol.storage.notify import EVENTS_CHANNEL, notify, notify_each
from server.agent_protocol.storage.raw import RawStatement
from server.agent_protocol.storage.records import RunEvent
from server.agent_protocol.storage.stateless import orphan_runs_delete
from server.agent_protocol.storage.store import ProtocolStore
from server.agent_protocol.storage.tables import events_t, runs_t

__all__ = ["EventLog"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

# An event id already stored (a run taken over from a process that only seemed dead) is skipped,
# not allowed to fail the whole batch with the other runs' events.
_SQLITE_INSERT = RawStatement(sqlite.insert(events_t).on_conflict_do_nothing())
# Postgres: a batch is one statement of four arrays, not one INSERT per event (psycopg's
# executemany sends each row as its own statement).
_PG_INSERT = RawStatement(
    sa.text(
        "INSERT INTO ap_run_events (run_id, seq, event, data) "
        "SELECT * FROM unnest(CAST(:run_id AS varchar[]), CAST(:seq AS integer[]), "
        "CAST(:event AS text[]), CAST(:data AS text[])) ON CONFLICT DO NOTHING"
    )
)


def _insert_events(conn: Connection, rows: list[dict[str, object]]) -> None:
    if conn.dialect.name == "postgresql":
        columns = {name: [r[name] for r in rows] for name in ("run_id", "seq", "event", "data")}
        _PG_INSERT.execute(conn, columns).close()
    else:
        _SQLITE_INSERT.executemany(conn, rows)


class EventLog:
    """Buffered writes and ordered reads of the ``ap_run_events`` table."""

    def __init__(
        self,
        store: ProtocolStore,
        *,
        flush_s: float,
        on_flushed: Callable[[Iterable[str]], None] | None = None,
    ) -> None:
        self._store = store
        self._flush_s = flush_s
        self._on_flushed: Callable[[Iterable[str]], None] | None = on_flushed
        self._buffer: list[dict[str, object]] = []
        self._lock = asyncio.Lock()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def on_flushed(self, callback: Callable[[Iterable[str]], None]) -> None:
        """Call ``callback`` with the run ids whose events were just written (the hubs wake their tails)."""
        self._on_flushed = callback

    def start(self) -> None:
        """Start the background writer."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="run-event-writer")

    def append(self, run_id: str, event: RunEvent) -> None:
        """Queue one event for the next batch; never blocks the run."""
        self._buffer.append(
            {"run_id": run_id, "seq": event.id, "event": event.event, "data": event.data.decode()}
        )
        if len(self._buffer) == 1:
            self._wakeup.set()

    async def flush(self, then: Callable[[Connection], T] | None = None) -> T | None:
        """Write everything buffered so far; with ``then``, run it in the same transaction.

        Why ``then``: a run's end status goes in the transaction that stores its last events, so
        no reader sees the run ended before its events are there (and it costs one commit, not two).
        If the events cannot be written they are dropped (logged) and ``then`` runs on its own.

        Returns:
            What ``then`` returned (None without it).
        """
        async with self._lock:
            rows, self._buffer = self._buffer, []
            if not rows and then is None:
                return None
            run_ids = sorted({str(r["run_id"]) for r in rows})

            def work(conn: Connection) -> T | None:
                if rows:
                    _insert_events(conn, rows)
                    notify_each(conn, EVENTS_CHANNEL, run_ids)
                return then(conn) if then is not None else None

            try:
                result = await self._store.write(work)
            except Exception:
                if not rows:
                    raise
                logger.exception("writing %d stream events failed; dropped", len(rows))
                if then is None:
                    return None
                run_ids = []
                result = await self._store.write(then)
        if self._on_flushed is not None and run_ids:
            self._on_flushed(run_ids)
        return result

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            await asyncio.sleep(self._flush_s)  # gather a batch
            await self.flush()

    async def close(self) -> None:
        """Stop the writer after a last flush; idempotent."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self.flush()

    async def read(self, run_id: str, after: int, limit: int = 1000) -> list[RunEvent]:
        """Events of a run with an id greater than ``after``, in order."""
        params = {"b_run_id": run_id, "b_after": after, "b_limit": limit}

        def work(conn: Connection) -> list[RunEvent]:
            cursor = sql.EVENTS_AFTER.execute(conn, params)
            found = [RunEvent(seq, event, data.encode()) for seq, event, data in cursor.fetchall()]
            cursor.close()
            return found

        return await self._store.read(work)

    async def last_seq(self, run_id: str) -> int:
        """Id of the last stored event of a run (0 when none)."""
        query = sa.select(sa.func.max(events_t.c.seq)).where(events_t.c.run_id == run_id)
        return await self._store.read(lambda conn: int(conn.execute(query).scalar() or 0))

    async def progress(self, run_ids: list[str]) -> dict[str, tuple[str, int]]:
        """``(status, last event id)`` of each run that still exists (two queries for all of them)."""
        found: dict[str, tuple[str, int]] = {}
        for i in range(0, len(run_ids), 500):
            chunk = run_ids[i : i + 500]
            status_q = sa.select(runs_t.c.run_id, runs_t.c.status).where(runs_t.c.run_id.in_(chunk))
            seq_q = (
                sa.select(events_t.c.run_id, sa.func.max(events_t.c.seq))
                .where(events_t.c.run_id.in_(chunk))
                .group_by(events_t.c.run_id)
            )

            def work(conn: Connection) -> tuple[dict[str, str], dict[str, int]]:
                statuses = {r[0]: r[1] for r in conn.execute(status_q).all()}  # noqa: B023
                return statuses, {r[0]: int(r[1] or 0) for r in conn.execute(seq_q).all()}  # noqa: B023

            statuses, seqs = await self._store.read(work)
            found.update({rid: (status, seqs.get(rid, 0)) for rid, status in statuses.items()})
        return found

    async def ended(self, run_id: str) -> None:
        """A run's end status is written: wake its followers here and, through ``NOTIFY``, elsewhere."""
        if self._store.is_postgres:
            await self._store.write(lambda conn: notify(conn, EVENTS_CHANNEL, run_id))
        self.wake_local(run_id)

    def wake_local(self, run_id: str) -> None:
        """Wake this process's followers of a run (its end was recorded with its events)."""
        if self._on_flushed is not None:
            self._on_flushed([run_id])

    async def delete_expired(self, retention_s: float) -> int:
        """Delete the events of runs that ended more than ``retention_s`` ago; returns rows deleted.

        Runs that ended as long ago and whose thread is gone (stateless runs) are deleted too.
        """
        ended = sa.select(runs_t.c.run_id).where(
            runs_t.c.status.not_in(ACTIVE_STATUSES), runs_t.c.ended_at < time.time() - retention_s
        )
        delete = events_t.delete().where(events_t.c.run_id.in_(ended))
        orphans = orphan_runs_delete(retention_s)  # stateless runs whose thread went when they ended

        def work(conn: Connection) -> int:
            deleted = int(conn.execute(delete).rowcount or 0)
            conn.execute(orphans)
            return deleted

        return await self._store.write(work)
