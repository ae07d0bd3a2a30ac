"""The inserts of a new thread and a new run, with their records, for any transaction.

The store's own ``create_thread`` / ``create_run`` run one each; a cron's fire runs both inside the
transaction that claims the fire (:mod:`.crons`). Each insert is a work function running the
statement compiled once (:data:`~.statements.INSERT_RUN`), not a Core insert built per call.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Connection

from server.agent_protocol.serde import dumpb
from server.agent_protocol.status import RunStatus, ThreadStatus
from server.agent_protocol.storage import statements as sql
from server.agent_protocol.storage.raw import RawStatement
from server.agent_protocol.storage.records import RunRecord, ThreadRecord

__all__ = ["Insert", "new_run", "new_thread"]


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _text(obj: Any) -> str:
    return dumpb(obj).decode()


Insert = Callable[[Connection], None]
"""Runs one insert on the transaction's connection."""


def _insert(statement: RawStatement, params: dict[str, Any]) -> Insert:
    def work(conn: Connection) -> None:
        statement.execute(conn, params).close()

    return work


def new_thread(thread_id: str, metadata: dict[str, Any], tenant: str) -> tuple[Insert, ThreadRecord]:
    """The insert of a new idle thread and its record (to run inside a larger transaction)."""
    now = _now()
    params = dict(
        thread_id=thread_id,
        tenant=tenant,
        created_at=now,
        updated_at=now,
        metadata=_text(metadata),
        status=ThreadStatus.IDLE,
        state_values=None,
        interrupts="{}",
    )
    insert = _insert(sql.INSERT_THREAD, params)
    record = ThreadRecord(
        thread_id=thread_id,
        created_at=now,
        updated_at=now,
        metadata=metadata,
        status=ThreadStatus.IDLE,
        values=None,
        interrupts={},
        tenant=tenant,
    )
    return insert, record


def new_run(
    *,
    run_id: str,
    thread_id: str,
    assistant_id: str,
    metadata: dict[str, Any],
    multitask_strategy: str,
    kwargs: dict[str, Any],
    tenant: str,
    worker_id: str | None = None,
    lease_until: float | None = None,
    trace_parent: str | None = None,
) -> tuple[Insert, RunRecord]:
    """The insert of a pending run and its record (to run inside a larger transaction)."""
    now = _now()
    params = dict(
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
    if trace_parent:
        insert = _insert(sql.INSERT_TRACED_RUN, {**params, "trace_parent": trace_parent})
    else:
        insert = _insert(sql.INSERT_RUN, params)
    record = RunRecord(
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
        trace_parent=trace_parent,
    )
    return insert, record
