"""The temporary thread of a stateless run: dropped when the run ends, its run row kept a while.

Why the run row outlives its thread: a client of another process may still be waiting on the run
(``/runs/wait``) or reading its events, so the run's end, its result (the thread's last values,
which are gone with the thread) and its events stay until the event retention
(``run_events_retention_s``) has passed; then the sweep deletes them. No client can reach such a
run through the API meanwhile: every run route needs its thread.
"""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from server.agent_protocol.serde import dumpb
from server.agent_protocol.status import ACTIVE_STATUSES
from server.agent_protocol.storage.store import Work
from server.agent_protocol.storage.tables import runs_t, threads_t

__all__ = ["drop_temporary_thread", "orphan_runs_delete"]


def drop_temporary_thread(run_id: str, thread_id: str, result: Any) -> Work[None]:
    """The work that keeps the run's result on its row and deletes its thread's row.

    Runs in the transaction that records the run's end; the checkpoints are deleted after it.
    """
    keep = runs_t.update().where(runs_t.c.run_id == run_id).values(result=dumpb(result).decode())
    drop = threads_t.delete().where(threads_t.c.thread_id == thread_id)

    def work(conn: Connection) -> None:
        conn.execute(keep)
        conn.execute(drop)

    return work


def orphan_runs_delete(retention_s: float) -> sa.Delete:
    """Delete runs that ended more than ``retention_s`` ago and whose thread no longer exists."""
    thread = sa.select(threads_t.c.thread_id).where(threads_t.c.thread_id == runs_t.c.thread_id)
    return runs_t.delete().where(
        runs_t.c.status.not_in(ACTIVE_STATUSES),
        runs_t.c.ended_at < time.time() - retention_s,
        ~sa.exists(thread),
    )
