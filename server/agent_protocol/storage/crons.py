"""Crons in the database: their rows, and the fire, which claims a cron and queues its run at once.

A fire is one transaction: a compare-and-set on the cron's ``next_run_at`` (``UPDATE ... SET
next_run_at = <next> WHERE cron_id = ? AND next_run_at = <seen>``) and, only when that changed a
row, the run's insert (and, for a stateless cron, its thread's) and a ``NOTIFY`` to the run queue.
Two processes that saw the same due cron both try; on Postgres the second ``UPDATE`` waits for the
first's row lock and then finds ``next_run_at`` moved (no row), on SQLite writers take turns
(``BEGIN IMMEDIATE``): either way one run per scheduled fire, and never a claimed fire without
its run or a run without its claim.

Ownership is checked in the statements: another tenant's cron reads as missing. The per-tenant
cap is counted in the transaction that inserts (on Postgres under a per-tenant advisory lock, so
two concurrent creates cannot both pass it).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from server.agent_protocol.errors import CronLimitError
from server.agent_protocol.serde import dumpb, loads
from server.agent_protocol.storage import statements as sql
from server.agent_protocol.storage.inserts import new_run, new_thread
from server.agent_protocol.storage.notify import QUEUE_CHANNEL, notify
from server.agent_protocol.storage.records import RunRecord, run_from_row
from server.agent_protocol.storage.store import ProtocolStore
from server.agent_protocol.storage.tables import crons_t

__all__ = ["CronRecord", "CronStore", "FireOutcome", "FireRun"]

_c = crons_t
_SORTABLE = {
    "cron_id": _c.c.cron_id,
    "assistant_id": _c.c.assistant_id,
    "thread_id": _c.c.thread_id,
    "created_at": _c.c.created_at,
    "updated_at": _c.c.updated_at,
    "next_run_date": _c.c.next_run_at,
    "end_time": _c.c.end_at,
}


def _iso(epoch: float | None) -> str | None:
    return datetime.fromtimestamp(epoch, UTC).isoformat() if epoch is not None else None


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _text(obj: Any) -> str:
    return dumpb(obj).decode()


@dataclass(frozen=True, kw_only=True)
class CronRecord:
    """One cron: its schedule, the run it makes (``payload``), and when it fires next."""

    cron_id: str
    tenant: str
    assistant_id: str
    thread_id: str | None
    on_run_completed: str | None
    schedule: str
    timezone: str | None
    end_at: float | None
    payload: dict[str, Any]
    metadata: dict[str, Any]
    enabled: bool
    next_run_at: float | None
    created_at: str
    updated_at: str

    def public(self) -> dict[str, Any]:
        """The LangGraph server's ``Cron`` shape."""
        return {
            "cron_id": self.cron_id,
            "assistant_id": self.assistant_id,
            "thread_id": self.thread_id,
            "on_run_completed": self.on_run_completed,
            "end_time": _iso(self.end_at),
            "schedule": self.schedule,
            "timezone": self.timezone,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "payload": self.payload,
            "user_id": None,
            "next_run_date": _iso(self.next_run_at),
            "metadata": self.metadata,
            "enabled": self.enabled,
        }

    def row(self) -> dict[str, Any]:
        """The record as column values."""
        return {
            "cron_id": self.cron_id,
            "tenant": self.tenant,
            "assistant_id": self.assistant_id,
            "thread_id": self.thread_id,
            "on_run_completed": self.on_run_completed,
            "schedule": self.schedule,
            "timezone": self.timezone,
            "end_at": self.end_at,
            "payload": _text(self.payload),
            "metadata": _text(self.metadata),
            "enabled": self.enabled,
            "next_run_at": self.next_run_at,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


def _record(m: Any) -> CronRecord:
    return CronRecord(
        cron_id=m["cron_id"],
        tenant=m["tenant"],
        assistant_id=m["assistant_id"],
        thread_id=m["thread_id"],
        on_run_completed=m["on_run_completed"],
        schedule=m["schedule"],
        timezone=m["timezone"],
        end_at=m["end_at"],
        payload=loads(m["payload"]) or {},
        metadata=loads(m["metadata"]) or {},
        enabled=bool(m["enabled"]),
        next_run_at=m["next_run_at"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
    )


@dataclass(frozen=True, kw_only=True)
class FireRun:
    """The run one fire makes, built and checked before the fire's transaction."""

    run_id: str
    thread_id: str
    kwargs: dict[str, Any]
    metadata: dict[str, Any]
    multitask_strategy: str
    thread_metadata: dict[str, Any] | None = None  # a stateless cron: the thread made for the run


@dataclass(frozen=True)
class FireOutcome:
    """What a fire did: ``fired`` (``run``; ``active``: the thread's runs it found running), ``taken``
    (another process fired it first), ``busy`` (``reject`` on a busy thread: skipped), ``gone``
    (its thread was deleted: the cron with it)."""

    what: str
    run: RunRecord | None = None
    active: list[str] = field(default_factory=list)


def _tenant_lock_key(tenant: str) -> int:
    digest = hashlib.sha256(b"ap_crons:" + tenant.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class CronStore:
    """Crons of every tenant, each operation one transaction of the :class:`ProtocolStore`."""

    def __init__(self, store: ProtocolStore) -> None:
        self._store = store

    async def create(self, record: CronRecord, max_per_tenant: int) -> CronRecord:
        """Insert a cron. Raises CronLimitError when its tenant already has ``max_per_tenant``."""
        count = sa.select(sa.func.count()).select_from(_c).where(_c.c.tenant == record.tenant)

        def work(conn: Connection) -> None:
            if conn.dialect.name == "postgresql":
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_tenant_lock_key(record.tenant))))
            if int(conn.execute(count).scalar() or 0) >= max_per_tenant:
                raise CronLimitError(
                    f"tenant has {max_per_tenant} crons, the most this server allows "
                    "(AGENTIC_CRON_MAX_PER_TENANT): delete one first"
                )
            conn.execute(_c.insert().values(**record.row()))

        await self._store.write(work)
        return record

    async def get(self, cron_id: str, tenant: str) -> CronRecord | None:
        """The cron if ``tenant`` owns it."""
        query = _c.select().where(_c.c.cron_id == cron_id, _c.c.tenant == tenant)
        return await self._store.read(lambda conn: _first(conn, query))

    async def update(
        self, cron_id: str, tenant: str, change: Callable[[CronRecord], dict[str, Any]]
    ) -> CronRecord | None:
        """Apply ``change`` (the record's new column values, from its current ones) in one transaction.

        The row is locked on Postgres while ``change`` runs, so concurrent patches apply in turn.
        Returns the updated cron, None when ``tenant`` has none with that id.
        """
        query = _c.select().where(_c.c.cron_id == cron_id, _c.c.tenant == tenant)

        def work(conn: Connection) -> CronRecord | None:
            locked = query.with_for_update() if conn.dialect.name == "postgresql" else query
            current = _first(conn, locked)
            if current is None:
                return None
            new = replace(current, **change(current), updated_at=_now())
            conn.execute(_c.update().where(_c.c.cron_id == cron_id).values(**new.row()))
            return new

        return await self._store.write(work)

    async def delete(self, cron_id: str, tenant: str) -> bool:
        """Delete the cron; False when ``tenant`` has none with that id."""
        delete = _c.delete().where(_c.c.cron_id == cron_id, _c.c.tenant == tenant)
        return await self._store.write(lambda conn: bool(conn.execute(delete).rowcount))

    def _filtered(
        self,
        query: Any,
        tenant: str,
        assistant_id: str | None,
        thread_id: str | None,
        enabled: bool | None = None,
    ) -> Any:
        query = query.where(_c.c.tenant == tenant)
        if assistant_id is not None:
            query = query.where(_c.c.assistant_id == assistant_id)
        if thread_id is not None:
            query = query.where(_c.c.thread_id == thread_id)
        if enabled is not None:
            query = query.where(_c.c.enabled == enabled)
        return query

    async def search(
        self,
        tenant: str,
        *,
        assistant_id: str | None = None,
        thread_id: str | None = None,
        enabled: bool | None = None,
        sort_by: str = "created_at",
        descending: bool = True,
    ) -> list[CronRecord]:
        """``tenant``'s crons matching the filters, sorted (metadata is filtered by the caller)."""
        column = _SORTABLE.get(sort_by, _c.c.created_at)
        query = self._filtered(_c.select(), tenant, assistant_id, thread_id, enabled).order_by(
            column.desc() if descending else column.asc(), _c.c.cron_id
        )
        return await self._store.read(lambda conn: [_record(r._mapping) for r in conn.execute(query).all()])

    async def due(self, now: float, limit: int) -> list[CronRecord]:
        """Enabled crons whose next fire is at or before ``now``, earliest first (any tenant)."""
        query = (
            _c.select()
            .where(_c.c.enabled.is_(True), _c.c.next_run_at <= now)
            .order_by(_c.c.next_run_at)
            .limit(limit)
        )
        return await self._store.read(lambda conn: [_record(r._mapping) for r in conn.execute(query).all()])

    async def earliest(self) -> float | None:
        """The earliest next fire of any enabled cron (None: none scheduled)."""
        query = sa.select(sa.func.min(_c.c.next_run_at)).where(_c.c.enabled.is_(True))
        value = await self._store.read(lambda conn: conn.execute(query).scalar())
        return float(value) if value is not None else None

    async def skip(self, cron: CronRecord, next_at: float | None) -> bool:
        """Move a fire on without a run (it could not be made); False when another process fired it."""
        return await self._store.write(lambda conn: _claim(conn, cron, next_at))

    async def fire(
        self, cron: CronRecord, next_at: float | None, run: FireRun, *, reject_if_busy: bool
    ) -> FireOutcome:
        """Claim the fire seen at ``cron.next_run_at`` and queue its run, in one transaction."""

        def work(conn: Connection) -> FireOutcome:
            if not _claim(conn, cron, next_at):
                return FireOutcome("taken")
            active: list[str] = []
            if run.thread_metadata is not None:
                insert_thread, _ = new_thread(run.thread_id, run.thread_metadata, cron.tenant)
                insert_thread(conn)
            else:
                params = {"b_thread_id": run.thread_id, "b_tenant": cron.tenant}
                if sql.THREAD_OF_TENANT.first(conn, params) is None:
                    conn.execute(_c.delete().where(_c.c.cron_id == cron.cron_id))
                    return FireOutcome("gone")
                rows = sql.ACTIVE_RUNS.rows(conn, {"b_thread_id": run.thread_id})
                active = [run_from_row(r).run_id for r in rows]
                if active and reject_if_busy:
                    return FireOutcome("busy")
            insert_run, record = new_run(
                run_id=run.run_id,
                thread_id=run.thread_id,
                assistant_id=cron.assistant_id,
                metadata=run.metadata,
                multitask_strategy=run.multitask_strategy,
                kwargs=run.kwargs,
                tenant=cron.tenant,
            )
            insert_run(conn)
            notify(conn, QUEUE_CHANNEL)
            return FireOutcome("fired", record, active)

        return await self._store.write(work)

    async def count(self, tenant: str, *, assistant_id: str | None, thread_id: str | None) -> int:
        """How many crons ``tenant`` has matching the filters (metadata is filtered by the caller)."""
        query = self._filtered(sa.select(sa.func.count()).select_from(_c), tenant, assistant_id, thread_id)
        return await self._store.read(lambda conn: int(conn.execute(query).scalar() or 0))


def _first(conn: Connection, query: Any) -> CronRecord | None:
    row = conn.execute(query).first()
    return _record(row._mapping) if row is not None else None


def _claim(conn: Connection, cron: CronRecord, next_at: float | None) -> bool:
    """The compare-and-set: move ``next_run_at`` from what was seen; True when this transaction did."""
    result = conn.execute(
        _c.update()
        .where(_c.c.cron_id == cron.cron_id, _c.c.next_run_at == cron.next_run_at, _c.c.enabled.is_(True))
        .values(next_run_at=next_at)
    )
    return bool(result.rowcount)
