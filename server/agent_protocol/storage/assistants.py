"""Assistants of tenants in the database: every change is a new version, one of them is active.

``ap_assistants`` holds who owns an assistant and which version is active (``/latest`` moves the
pointer); ``ap_assistant_versions`` holds each version's graph, config, context, metadata, name and
description, never changed once written. Reading an assistant joins the two. Each operation is one
transaction of the :class:`~server.agent_protocol.storage.store.ProtocolStore`; a patch locks the
assistant's row on Postgres (``FOR UPDATE``) so concurrent patches get consecutive versions
(SQLite has one writer). Ownership is checked in the statements themselves: another tenant's
assistant reads as missing.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from server.agent_protocol.errors import AssistantExistsError, AssistantNotFoundError
from server.agent_protocol.serde import dumpb, loads
from server.agent_protocol.status import ACTIVE_STATUSES
from server.agent_protocol.storage.store import ProtocolStore
from server.agent_protocol.storage.tables import assistant_versions_t, assistants_t, runs_t

__all__ = ["AssistantRecord", "AssistantStore", "AssistantVersionFields"]

_a, _v = assistants_t, assistant_versions_t


@dataclass(frozen=True, kw_only=True)
class AssistantVersionFields:
    """What one version pins: the graph, its config and context, and how people find it."""

    graph_id: str
    config: dict[str, Any]
    context: dict[str, Any]
    metadata: dict[str, Any]
    name: str
    description: str | None = None


@dataclass(frozen=True, kw_only=True)
class AssistantRecord:
    """One version of an assistant (the active one, unless read from the version list)."""

    assistant_id: str
    tenant: str
    version: int
    fields: AssistantVersionFields
    created_at: str
    updated_at: str

    @property
    def graph_id(self) -> str:
        """The graph the assistant runs."""
        return self.fields.graph_id

    @property
    def context(self) -> dict[str, Any]:
        """The assistant's context (already checked against the operator's policy when stored)."""
        return self.fields.context

    @property
    def config(self) -> dict[str, Any]:
        """The assistant's config (tags, recursion limit)."""
        return self.fields.config

    @property
    def metadata(self) -> dict[str, Any]:
        """The assistant's metadata."""
        return self.fields.metadata

    @property
    def name(self) -> str:
        """The assistant's name."""
        return self.fields.name

    def public(self) -> dict[str, Any]:
        """The Agent Protocol ``Assistant`` shape."""
        return {**self.version_public(), "updated_at": self.updated_at}

    def version_public(self) -> dict[str, Any]:
        """The Agent Protocol ``AssistantVersion`` shape."""
        f = self.fields
        return {
            "assistant_id": self.assistant_id,
            "graph_id": f.graph_id,
            "config": f.config,
            "context": f.context,
            "created_at": self.created_at,
            "metadata": f.metadata,
            "version": self.version,
            "name": f.name,
            "description": f.description,
        }


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _text(obj: Any) -> str:
    return dumpb(obj).decode()


def _version_row(assistant_id: str, version: int, fields: AssistantVersionFields, at: str) -> dict[str, Any]:
    return {
        "assistant_id": assistant_id,
        "version": version,
        "graph_id": fields.graph_id,
        "config": _text(fields.config),
        "context": _text(fields.context),
        "metadata": _text(fields.metadata),
        "name": fields.name,
        "description": fields.description,
        "created_at": at,
    }


def _fields(m: Any) -> AssistantVersionFields:
    return AssistantVersionFields(
        graph_id=m["graph_id"],
        config=loads(m["config"]) or {},
        context=loads(m["context"]) or {},
        metadata=loads(m["metadata"]) or {},
        name=m["name"],
        description=m["description"],
    )


_ACTIVE = sa.select(
    _a.c.assistant_id,
    _a.c.tenant,
    _a.c.version,
    _a.c.created_at,
    _a.c.updated_at,
    _v.c.graph_id,
    _v.c.config,
    _v.c.context,
    _v.c.metadata,
    _v.c.name,
    _v.c.description,
).join(_v, sa.and_(_v.c.assistant_id == _a.c.assistant_id, _v.c.version == _a.c.version))


def _active(conn: Connection, assistant_id: str, tenant: str) -> AssistantRecord | None:
    row = conn.execute(_ACTIVE.where(_a.c.assistant_id == assistant_id, _a.c.tenant == tenant)).first()
    return _record(row._mapping) if row is not None else None


def _record(m: Any) -> AssistantRecord:
    return AssistantRecord(
        assistant_id=m["assistant_id"],
        tenant=m["tenant"],
        version=m["version"],
        fields=_fields(m),
        created_at=m["created_at"],
        updated_at=m["updated_at"],
    )


class AssistantStore:
    """Create, read, version and delete assistants of tenants, over the protocol's store."""

    def __init__(self, store: ProtocolStore) -> None:
        self._store = store

    async def create(self, assistant_id: str, tenant: str, fields: AssistantVersionFields) -> AssistantRecord:
        """Insert an assistant at version 1.

        Raises:
            AssistantExistsError: the id is taken (by this tenant or another).
        """
        now = _now()

        def work(conn: Connection) -> None:
            conn.execute(
                _a.insert().values(
                    assistant_id=assistant_id,
                    tenant=tenant,
                    graph_id=fields.graph_id,
                    version=1,
                    created_at=now,
                    updated_at=now,
                )
            )
            conn.execute(_v.insert().values(**_version_row(assistant_id, 1, fields, now)))

        try:
            await self._store.write(work)
        except IntegrityError as exc:
            raise AssistantExistsError(f"assistant {assistant_id} already exists") from exc
        return AssistantRecord(
            assistant_id=assistant_id, tenant=tenant, version=1, fields=fields, created_at=now, updated_at=now
        )

    async def exists(self, assistant_id: str) -> bool:
        """Whether any tenant has an assistant with this id (ids are global)."""
        query = sa.select(_a.c.assistant_id).where(_a.c.assistant_id == assistant_id)
        return await self._store.read(lambda conn: conn.execute(query).first() is not None)

    async def get(self, assistant_id: str, tenant: str) -> AssistantRecord | None:
        """The active version of ``tenant``'s assistant, or None (also for another tenant's)."""
        return await self._store.read(lambda conn: _active(conn, assistant_id, tenant))

    async def add_version(
        self, assistant_id: str, tenant: str, change: dict[str, Any]
    ) -> AssistantRecord | None:
        """Write a new version from the active one with ``change`` applied, and make it active.

        ``change`` maps :class:`AssistantVersionFields` names to new values (``metadata`` is merged
        into the active version's). Returns None when ``tenant`` has no such assistant.
        """
        locked = self._store.is_postgres

        def work(conn: Connection) -> AssistantRecord | None:
            owner = sa.select(_a.c.assistant_id).where(
                _a.c.assistant_id == assistant_id, _a.c.tenant == tenant
            )
            if conn.execute(owner.with_for_update() if locked else owner).first() is None:
                return None
            current = _active(conn, assistant_id, tenant)
            assert current is not None
            latest = conn.execute(
                sa.select(sa.func.max(_v.c.version)).where(_v.c.assistant_id == assistant_id)
            )
            version = int(latest.scalar() or 0) + 1
            update = dict(change)
            if "metadata" in update:
                update["metadata"] = {**current.metadata, **update["metadata"]}
            fields = replace(current.fields, **update)
            now = _now()
            conn.execute(_v.insert().values(**_version_row(assistant_id, version, fields, now)))
            conn.execute(
                _a.update()
                .where(_a.c.assistant_id == assistant_id)
                .values(version=version, graph_id=fields.graph_id, updated_at=now)
            )
            return replace(current, version=version, fields=fields, updated_at=now)

        return await self._store.write(work)

    async def set_latest(self, assistant_id: str, tenant: str, version: int) -> AssistantRecord | None:
        """Make ``version`` the active one; None when ``tenant`` has no such assistant.

        Raises:
            AssistantNotFoundError: the assistant has no such version.
        """

        def work(conn: Connection) -> AssistantRecord | None:
            if _active(conn, assistant_id, tenant) is None:
                return None
            known = sa.select(_v.c.graph_id).where(_v.c.assistant_id == assistant_id, _v.c.version == version)
            row = conn.execute(known).first()
            if row is None:
                raise AssistantNotFoundError(
                    f"assistant {assistant_id} has no version {version}; list them with "
                    f"POST /assistants/{assistant_id}/versions"
                )
            conn.execute(
                _a.update()
                .where(_a.c.assistant_id == assistant_id)
                .values(version=version, graph_id=row.graph_id, updated_at=_now())
            )
            return _active(conn, assistant_id, tenant)

        return await self._store.write(work)

    async def versions(self, assistant_id: str, tenant: str) -> list[AssistantRecord] | None:
        """Every version, newest first; None when ``tenant`` has no such assistant."""

        def work(conn: Connection) -> list[AssistantRecord] | None:
            owner = conn.execute(
                sa.select(_a.c.assistant_id).where(_a.c.assistant_id == assistant_id, _a.c.tenant == tenant)
            ).first()
            if owner is None:
                return None
            rows = conn.execute(
                _v.select().where(_v.c.assistant_id == assistant_id).order_by(_v.c.version.desc())
            ).all()
            return [
                AssistantRecord(
                    assistant_id=assistant_id,
                    tenant=tenant,
                    version=r.version,
                    fields=_fields(r._mapping),
                    created_at=r.created_at,
                    updated_at=r.created_at,
                )
                for r in rows
            ]

        return await self._store.read(work)

    async def delete(self, assistant_id: str, tenant: str) -> bool:
        """Delete the assistant and all its versions; False when ``tenant`` has none with that id."""

        def work(conn: Connection) -> bool:
            gone = conn.execute(_a.delete().where(_a.c.assistant_id == assistant_id, _a.c.tenant == tenant))
            if not gone.rowcount:
                return False
            conn.execute(_v.delete().where(_v.c.assistant_id == assistant_id))
            return True

        return await self._store.write(work)

    async def of_tenant(self, tenant: str, graph_id: str | None = None) -> list[AssistantRecord]:
        """The active versions of all ``tenant``'s assistants (of one graph when given), newest first."""
        query = _ACTIVE.where(_a.c.tenant == tenant).order_by(_a.c.created_at.desc())
        if graph_id is not None:
            query = query.where(_a.c.graph_id == graph_id)
        return await self._store.read(lambda conn: [_record(r._mapping) for r in conn.execute(query).all()])

    async def active_run_ids(self, assistant_id: str, tenant: str) -> list[str]:
        """Ids of ``tenant``'s pending or running runs of the assistant (to cancel before deleting it)."""
        query = sa.select(runs_t.c.run_id).where(
            runs_t.c.assistant_id == assistant_id,
            runs_t.c.tenant == tenant,
            runs_t.c.status.in_(ACTIVE_STATUSES),
        )
        return await self._store.read(lambda conn: [r.run_id for r in conn.execute(query).all()])
