"""The SQL of a run's hot path, built once with bind parameters and run on the driver's cursor.

Why: building a SQLAlchemy Core statement (coercing every clause, then deriving its cache key)
costs about as much Python time as running it on SQLite; a run executes a dozen of these, some
in every claim of the queue. Each constant here is built at import, compiled once per dialect and
executed with its parameters by :class:`~.raw.RawStatement` (names start with ``b_``, as
SQLAlchemy keeps column names for ``SET`` values; an insert's are its column names).
"""

from __future__ import annotations

import functools
from typing import Any

import sqlalchemy as sa

from server.agent_protocol.status import ACTIVE_STATUSES, RunStatus
from server.agent_protocol.storage.raw import RawStatement
from server.agent_protocol.storage.tables import events_t, runs_t, threads_t

__all__ = [
    "ACTIVE_RUNS",
    "CLAIM",
    "EVENTS_AFTER",
    "INSERT_RUN",
    "INSERT_THREAD",
    "INSERT_TRACED_RUN",
    "QUEUE_POSITION",
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


def _is_active(column: sa.ColumnElement[Any]) -> sa.ColumnElement[bool]:
    """``column IN ('pending', 'running')`` in the SQL (expanding parameters cannot be compiled once)."""
    return column.in_([sa.literal_column(f"'{status.value}'") for status in ACTIVE_STATUSES])


def _first_of_thread() -> sa.ColumnElement[bool]:
    """No older active run on the same thread (creation order, run id breaking ties)."""
    older = runs_t.alias("older")
    return ~sa.exists().where(
        older.c.thread_id == runs_t.c.thread_id,
        _is_active(older.c.status),
        sa.or_(
            older.c.created_at < runs_t.c.created_at,
            sa.and_(older.c.created_at == runs_t.c.created_at, older.c.run_id < runs_t.c.run_id),
        ),
    )


_ACTIVE = _is_active(runs_t.c.status)
_NOW = sa.bindparam("b_now", type_=sa.Float)


@functools.cache
def claimable(*, one: bool, locked: bool) -> RawStatement:
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
    return RawStatement(query.with_for_update(skip_locked=True, of=runs_t) if locked else query)


CLAIM = RawStatement(
    runs_t.update()
    .where(runs_t.c.run_id == sa.bindparam("b_run_id"), _ACTIVE, lease_free(_NOW))
    .values(worker_id=sa.bindparam("b_worker_id"), lease_until=sa.bindparam("b_until", type_=sa.Float))
)
"""Take one run if still claimable: ``b_run_id``, ``b_now``, ``b_worker_id``, ``b_until``."""

START_ATTEMPT = RawStatement(
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

RUN_STATUS = RawStatement(
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

_THREAD = threads_t.select().where(threads_t.c.thread_id == sa.bindparam("b_thread_id"))
THREAD = RawStatement(_THREAD)
THREAD_OF_TENANT = RawStatement(_THREAD.where(threads_t.c.tenant == sa.bindparam("b_tenant")))
_RUN = runs_t.select().where(runs_t.c.run_id == sa.bindparam("b_run_id"))
RUN = RawStatement(_RUN)
RUN_OF_THREAD = RawStatement(_RUN.where(runs_t.c.thread_id == sa.bindparam("b_thread_id")))
ACTIVE_RUNS = RawStatement(
    runs_t.select()
    .where(runs_t.c.thread_id == sa.bindparam("b_thread_id"), _ACTIVE)
    .order_by(runs_t.c.created_at.asc())
)


def _insert(table: sa.Table, columns: tuple[str, ...]) -> RawStatement:
    """An insert of ``columns`` only (by their names): the others keep their defaults, and a
    database whose schema predates a later column still takes it (as the Core inserts did)."""
    return RawStatement(table.insert().values({name: sa.bindparam(name) for name in columns}))


_THREAD_COLUMNS = (
    "thread_id", "tenant", "created_at", "updated_at", "metadata", "status", "state_values", "interrupts"
)  # fmt: skip
_RUN_COLUMNS = (
    "run_id", "tenant", "worker_id", "lease_until", "attempts", "thread_id", "assistant_id",
    "created_at", "updated_at", "status", "metadata", "multitask_strategy", "kwargs", "error",
)  # fmt: skip
INSERT_THREAD = _insert(threads_t, _THREAD_COLUMNS)
"""A new thread."""
INSERT_RUN = _insert(runs_t, _RUN_COLUMNS)
"""A new run without a trace parent (``trace_parent`` is new in schema v5: not named unless set)."""
INSERT_TRACED_RUN = _insert(runs_t, (*_RUN_COLUMNS, "trace_parent"))
"""A new run with a trace parent."""

_mine = runs_t.alias("mine")
QUEUE_POSITION = RawStatement(
    sa.select(
        sa.select(sa.func.count())
        .select_from(runs_t)
        .where(
            runs_t.c.status == RunStatus.PENDING.value,
            sa.or_(
                runs_t.c.created_at < _mine.c.created_at,
                sa.and_(runs_t.c.created_at == _mine.c.created_at, runs_t.c.run_id < _mine.c.run_id),
            ),
        )
        .scalar_subquery()
    ).where(_mine.c.run_id == sa.bindparam("b_run_id"), _mine.c.status == RunStatus.PENDING.value)
)
"""Pending runs created before the pending run ``b_run_id`` (no row when it is not pending)."""

EVENTS_AFTER = RawStatement(
    sa.select(events_t.c.seq, events_t.c.event, events_t.c.data)
    .where(events_t.c.run_id == sa.bindparam("b_run_id"), events_t.c.seq > sa.bindparam("b_after"))
    .order_by(events_t.c.seq.asc())
    .limit(sa.bindparam("b_limit", type_=sa.Integer))
)
"""A run's stored events after ``b_after``, in order, at most ``b_limit``."""


@functools.cache
def thread_update(columns: frozenset[str], first_values: bool) -> RawStatement:
    """``UPDATE ap_threads`` of ``columns`` (each from ``b_<column>``) where ``b_thread_id``.

    With ``first_values``, ``state_values`` becomes ``b_first_values`` only while the thread has none.
    """
    fields: dict[str, Any] = {name: sa.bindparam("b_" + name) for name in sorted(columns)}
    if first_values:
        column = threads_t.c.state_values
        empty = sa.or_(column.is_(None), column == "null")
        fields["state_values"] = sa.case((empty, sa.bindparam("b_first_values")), else_=column)
    return RawStatement(
        threads_t.update().where(threads_t.c.thread_id == sa.bindparam("b_thread_id")).values(**fields)
    )
