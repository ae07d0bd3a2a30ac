"""The SQL of a run's hot path, built once with bind parameters.

Why: building a SQLAlchemy Core statement (coercing every clause, then deriving its cache key)
costs about as much Python time as running it on SQLite; a run executes a dozen of these, some
in every claim of the queue. Each constant here is built at import and executed with its
parameters (names start with ``b_``, as SQLAlchemy keeps column names for ``SET`` values).
"""

from __future__ import annotations

import functools
from typing import Any

import sqlalchemy as sa

from server.agent_protocol.status import ACTIVE_STATUSES
from server.agent_protocol.storage.tables import runs_t, threads_t

__all__ = [
    "ACTIVE_RUNS",
    "CLAIM",
    "RUN",
    "RUN_OF_THREAD",
    "RUN_STATUS",
    "START_ATTEMPT",
    "THREAD",
    "THREAD_OF_TENANT",
    "claimable",
    "lease_free",
    "thread_update",
]


def lease_free(now: Any) -> sa.ColumnElement[bool]:
    """No owner, or an owner whose lease ran out (``now``: a value or a bind parameter)."""
    return sa.or_(runs_t.c.worker_id.is_(None), runs_t.c.lease_until.is_(None), runs_t.c.lease_until < now)


def _first_of_thread() -> sa.ColumnElement[bool]:
    """No older active run on the same thread (creation order, run id breaking ties)."""
    older = runs_t.alias("older")
    return ~sa.exists().where(
        older.c.thread_id == runs_t.c.thread_id,
        older.c.status.in_(ACTIVE_STATUSES),
        sa.or_(
            older.c.created_at < runs_t.c.created_at,
            sa.and_(older.c.created_at == runs_t.c.created_at, older.c.run_id < runs_t.c.run_id),
        ),
    )


_ACTIVE = runs_t.c.status.in_(ACTIVE_STATUSES)
_NOW = sa.bindparam("b_now", type_=sa.Float)


@functools.cache
def claimable(*, one: bool, locked: bool) -> sa.Select[Any]:
    """Claimable runs, oldest first: ``b_now``, ``b_limit`` (and ``b_run_id`` when ``one``).

    Args:
        one: Only the run ``b_run_id``.
        locked: ``FOR UPDATE SKIP LOCKED`` (Postgres).
    """
    cond = [_ACTIVE, lease_free(_NOW), _first_of_thread()]
    if one:
        cond.append(runs_t.c.run_id == sa.bindparam("b_run_id"))
    query = (
        runs_t.select()
        .where(*cond)
        .order_by(runs_t.c.created_at.asc())
        .limit(sa.bindparam("b_limit", type_=sa.Integer))
    )
    return query.with_for_update(skip_locked=True, of=runs_t) if locked else query


CLAIM = (
    runs_t.update()
    .where(runs_t.c.run_id == sa.bindparam("b_run_id"), _ACTIVE, lease_free(_NOW))
    .values(worker_id=sa.bindparam("b_worker_id"), lease_until=sa.bindparam("b_until", type_=sa.Float))
)
"""Take one run if still claimable: ``b_run_id``, ``b_now``, ``b_worker_id``, ``b_until``."""

START_ATTEMPT = (
    runs_t.update()
    .where(runs_t.c.run_id == sa.bindparam("b_run_id"))
    .values(
        status=sa.bindparam("b_status"),
        error=None,
        attempts=runs_t.c.attempts + 1,
        updated_at=sa.bindparam("b_updated_at"),
    )
    .returning(runs_t.c.attempts)
)
"""Mark a run running and count the attempt: ``b_run_id``, ``b_status``, ``b_updated_at``."""

RUN_STATUS = (
    runs_t.update()
    .where(runs_t.c.run_id == sa.bindparam("b_run_id"))
    .values(
        status=sa.bindparam("b_status"),
        error=sa.bindparam("b_error"),
        updated_at=sa.bindparam("b_updated_at"),
        ended_at=sa.bindparam("b_ended_at", type_=sa.Float),
    )
)
"""Record a status: ``b_run_id``, ``b_status``, ``b_error``, ``b_updated_at``, ``b_ended_at``."""

THREAD = threads_t.select().where(threads_t.c.thread_id == sa.bindparam("b_thread_id"))
THREAD_OF_TENANT = THREAD.where(threads_t.c.tenant == sa.bindparam("b_tenant"))
RUN = runs_t.select().where(runs_t.c.run_id == sa.bindparam("b_run_id"))
RUN_OF_THREAD = RUN.where(runs_t.c.thread_id == sa.bindparam("b_thread_id"))
ACTIVE_RUNS = (
    runs_t.select()
    .where(runs_t.c.thread_id == sa.bindparam("b_thread_id"), _ACTIVE)
    .order_by(runs_t.c.created_at.asc())
)


@functools.cache
def thread_update(columns: frozenset[str], first_values: bool) -> sa.Update:
    """``UPDATE ap_threads`` of ``columns`` (each from ``b_<column>``) where ``b_thread_id``.

    With ``first_values``, ``state_values`` becomes ``b_first_values`` only while the thread has none.
    """
    fields: dict[str, Any] = {name: sa.bindparam("b_" + name) for name in sorted(columns)}
    if first_values:
        column = threads_t.c.state_values
        empty = sa.or_(column.is_(None), column == "null")
        fields["state_values"] = sa.case((empty, sa.bindparam("b_first_values")), else_=column)
    return threads_t.update().where(threads_t.c.thread_id == sa.bindparam("b_thread_id")).values(**fields)
