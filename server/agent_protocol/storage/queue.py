"""The run queue in the database: claims, leases and cancel requests shared by all server processes.

A run is created ``pending`` with no owner. Any process claims it by writing its ``worker_id`` and
a lease; the same claim takes over a run whose lease ran out (its process died). A run is
claimable only when it is the oldest active run of its thread, so runs of a thread execute one at
a time in creation order (``multitask_strategy="enqueue"``) wherever they execute.

On Postgres the candidates are locked with ``FOR UPDATE SKIP LOCKED`` (concurrent claimers get
different runs without waiting) and every change other processes care about is announced with
``NOTIFY`` (:mod:`.notify`) in the same transaction. On SQLite the
conditional ``UPDATE`` is the atomic claim and processes poll.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from server.agent_protocol.status import ACTIVE_STATUSES, CancelAction, RunStatus, ThreadStatus
from server.agent_protocol.storage import statements as sql
from server.agent_protocol.storage.notify import CANCEL_CHANNEL, QUEUE_CHANNEL, notify
from server.agent_protocol.storage.records import RunRecord, run_from_row
from server.agent_protocol.storage.store import ProtocolStore, thread_update
from server.agent_protocol.storage.tables import runs_t

__all__ = ["RunQueue"]


class RunQueue:
    """Claims, lease renewals and cancel requests, each one transaction of the store."""

    def __init__(self, store: ProtocolStore) -> None:
        self._store = store

    async def claim(
        self, worker_id: str, now: float, until: float, limit: int, run_id: str | None = None
    ) -> list[RunRecord]:
        """Claim up to ``limit`` claimable runs, oldest first (only ``run_id`` when given).

        Returns:
            The claimed runs as they were *before* the claim: a ``worker_id`` there is the process
            that had it (dead, since its lease ran out); None means a fresh run from the queue.
        """
        if limit <= 0:
            return []
        query = sql.claimable(one=run_id is not None, locked=self._store.is_postgres)
        params: dict[str, Any] = {"b_now": now, "b_limit": limit}
        if run_id is not None:
            params["b_run_id"] = run_id

        def work(conn: Connection) -> list[RunRecord]:
            claimed: list[RunRecord] = []
            for row in query.rows(conn, params):
                taken = {
                    "b_run_id": row["run_id"],
                    "b_now": now,
                    "b_worker_id": worker_id,
                    "b_until": until,
                }
                if sql.CLAIM.rowcount(conn, taken):
                    claimed.append(run_from_row(row))
            return claimed

        return await self._store.write(work)

    async def claim_to_cancel(
        self, run_id: str, worker_id: str, now: float, until: float, action: CancelAction
    ) -> RunRecord | None:
        """Claim a run nobody executes (whatever its place in the thread) to end it as cancelled."""
        free = (runs_t.c.run_id == run_id, runs_t.c.status.in_(ACTIVE_STATUSES), sql.lease_free(now))

        def work(conn: Connection) -> RunRecord | None:
            row = conn.execute(runs_t.select().where(*free)).first()
            if row is None:
                return None
            result = conn.execute(
                runs_t.update()
                .where(*free)
                .values(worker_id=worker_id, lease_until=until, cancel_action=action)
            )
            return run_from_row(row) if result.rowcount else None

        return await self._store.write(work)

    async def request_cancel(self, run_id: str, action: CancelAction) -> bool:
        """Ask the owner of an active run to cancel it; False when the run is not active."""

        def work(conn: Connection) -> bool:
            result = conn.execute(
                runs_t.update()
                .where(runs_t.c.run_id == run_id, runs_t.c.status.in_(ACTIVE_STATUSES))
                .values(cancel_action=sa.func.coalesce(runs_t.c.cancel_action, action))
            )
            if result.rowcount:
                notify(conn, CANCEL_CHANNEL, run_id)
            return bool(result.rowcount)

        return await self._store.write(work)

    async def cancel_requests(self, worker_id: str) -> list[tuple[str, CancelAction]]:
        """``(run_id, action)`` of this worker's active runs that another process asked to cancel."""
        query = sa.select(runs_t.c.run_id, runs_t.c.cancel_action).where(
            runs_t.c.worker_id == worker_id,
            runs_t.c.status.in_(ACTIVE_STATUSES),
            runs_t.c.cancel_action.is_not(None),
        )
        return await self._store.read(
            lambda conn: [(r.run_id, CancelAction(r.cancel_action)) for r in conn.execute(query).all()]
        )

    async def cancel_action(self, run_id: str) -> CancelAction | None:
        """The cancel requested for one run, if any."""
        query = sa.select(runs_t.c.cancel_action).where(runs_t.c.run_id == run_id)
        value = await self._store.read(lambda conn: conn.execute(query).scalar())
        return CancelAction(value) if value else None

    async def start_attempt(self, run_id: str, thread_id: str | None = None, first_values: Any = None) -> int:
        """Mark the run running and count the attempt; returns the attempt number (1 for the first).

        With ``thread_id``, the thread is marked busy in the same transaction (``first_values``
        become its values when it has none yet, see :meth:`ProtocolStore.update_thread`).
        """
        params = {
            "b_run_id": run_id,
            "b_status": RunStatus.RUNNING,
            "b_updated_at": datetime.now(UTC).isoformat(),
        }
        busy = (
            thread_update(thread_id, status=ThreadStatus.BUSY, first_values=first_values)
            if thread_id is not None
            else None
        )

        def work(conn: Connection) -> int:
            attempts = sql.START_ATTEMPT.scalar(conn, params)
            if busy is not None:
                busy(conn)
            return int(attempts or 1)

        return await self._store.write(work)

    async def renew_leases(self, worker_id: str, run_ids: Sequence[str], until: float) -> set[str]:
        """Extend the lease of this worker's active runs; returns the ids still this worker's."""
        if not run_ids:
            return set()
        update = (
            runs_t.update()
            .where(
                runs_t.c.run_id.in_(list(run_ids)),
                runs_t.c.worker_id == worker_id,
                runs_t.c.status.in_(ACTIVE_STATUSES),
            )
            .values(lease_until=until)
            .returning(runs_t.c.run_id)
        )
        return await self._store.write(lambda conn: {row.run_id for row in conn.execute(update).all()})

    async def hand_back(self, run_id: str, worker_id: str) -> bool:
        """Put a run this process stops executing (graceful shutdown) back in the queue.

        It keeps its status: a ``running`` run is resumed from its last checkpoint by whoever claims
        it next. The attempt is given back too: only crashes count towards ``run_max_attempts``.
        """
        update = (
            runs_t.update()
            .where(
                runs_t.c.run_id == run_id,
                runs_t.c.worker_id == worker_id,
                runs_t.c.status.in_(ACTIVE_STATUSES),
            )
            .values(
                worker_id=None,
                lease_until=None,
                attempts=sa.case((runs_t.c.attempts > 0, runs_t.c.attempts - 1), else_=0),
                updated_at=datetime.now(UTC).isoformat(),
            )
        )

        def work(conn: Connection) -> bool:
            result = conn.execute(update)
            if result.rowcount:
                notify(conn, QUEUE_CHANNEL)
            return bool(result.rowcount)

        return await self._store.write(work)

    async def announce(self) -> None:
        """Tell every process to look at the queue (a run was queued or a slot freed); Postgres only."""
        if not self._store.is_postgres:
            return
        await self._store.write(lambda conn: notify(conn, QUEUE_CHANNEL))

    async def pending_count(self) -> int:
        """Runs waiting in the database (the queue-depth gauge)."""
        query = sa.select(sa.func.count()).select_from(runs_t).where(runs_t.c.status == RunStatus.PENDING)
        return await self._store.read(lambda conn: int(conn.execute(query).scalar() or 0))

    async def position(self, run_id: str) -> int | None:
        """Pending runs created before this pending one (0: it is next); None when it is not pending."""

        def work(conn: Connection) -> int | None:
            row = sql.QUEUE_POSITION.first(conn, {"b_run_id": run_id})
            return None if row is None else int(next(iter(row.values())) or 0)

        return await self._store.read(work)
