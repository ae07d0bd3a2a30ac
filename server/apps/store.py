"""Hosted apps in the database, beside threads and runs (SQLite by default, Postgres with ``DATABASE_URL``).

Why in the database: an app outlives the process that started it; after a restart a permanent or
unexpired app is started again on its next request from the versions pinned here. Only the
SHA-256 of an app's access token is stored. Migrations: an append-only list, versions recorded in
``hosted_app_migrations``, applied by the project's one runner (:mod:`workspace.migrations`).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from workspace.migrations import MigrationSet, apply_migrations

__all__ = ["AppRecord", "AppStore"]

logger = logging.getLogger(__name__)

MIGRATIONS: list[list[str]] = [
    [
        """CREATE TABLE IF NOT EXISTS hosted_apps (
            id VARCHAR(32) PRIMARY KEY,
            tenant VARCHAR(64) NOT NULL,
            workspace_id VARCHAR(64) NOT NULL,
            name VARCHAR(200) NOT NULL,
            spec TEXT NOT NULL,
            token_hash VARCHAR(64) NOT NULL,
            permanent INTEGER NOT NULL,
            public INTEGER NOT NULL,
            stopped INTEGER NOT NULL,
            memory_mb INTEGER NOT NULL,
            expires_at DOUBLE PRECISION,
            created_at DOUBLE PRECISION NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS hosted_apps_tenant ON hosted_apps (tenant)",
    ],
]

_meta = sa.MetaData()
_migrations_t = sa.Table(
    "hosted_app_migrations",
    _meta,
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("applied_at", sa.Float, nullable=False),
)
_MIGRATION_SET = MigrationSet(
    "hosted apps",
    _migrations_t,
    {"sqlite": MIGRATIONS, "postgresql": MIGRATIONS},
    {"sqlite": "DOUBLE PRECISION", "postgresql": "DOUBLE PRECISION"},
    lambda when: when.timestamp(),
)
apps_t = sa.Table(
    "hosted_apps",
    _meta,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("tenant", sa.String(64)),
    sa.Column("workspace_id", sa.String(64)),
    sa.Column("name", sa.String(200)),
    sa.Column("spec", sa.Text),
    sa.Column("token_hash", sa.String(64)),
    sa.Column("permanent", sa.Integer),
    sa.Column("public", sa.Integer),
    sa.Column("stopped", sa.Integer),
    sa.Column("memory_mb", sa.Integer),
    sa.Column("expires_at", sa.Float, nullable=True),
    sa.Column("created_at", sa.Float),
)


@dataclass(frozen=True, kw_only=True)
class AppRecord:
    """One hosted app. ``spec`` holds what starts it: pinned files, entry or command, port, limits."""

    id: str
    tenant: str
    workspace_id: str
    name: str
    token_hash: str
    permanent: bool
    public: bool
    stopped: bool
    memory_mb: int
    expires_at: float | None
    created_at: float
    spec: dict[str, Any] = field(default_factory=dict)

    def expired(self, now: float | None = None) -> bool:
        """True for an ephemeral app past its TTL."""
        return not self.permanent and self.expires_at is not None and self.expires_at <= (now or time.time())


def _record(row: sa.Row[Any]) -> AppRecord:
    m = row._mapping
    return AppRecord(
        id=m["id"],
        tenant=m["tenant"],
        workspace_id=m["workspace_id"],
        name=m["name"],
        token_hash=m["token_hash"],
        permanent=bool(m["permanent"]),
        public=bool(m["public"]),
        stopped=bool(m["stopped"]),
        memory_mb=m["memory_mb"],
        expires_at=m["expires_at"],
        created_at=m["created_at"],
        spec=json.loads(m["spec"]),
    )


class AppStore:
    """Hosted app rows. Build with :meth:`from_url`; call :meth:`setup` once."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    @classmethod
    def from_url(cls, url: str) -> AppStore:
        """An engine for an async SQLAlchemy URL (see ``server.agent_protocol.storage.async_url``)."""
        if url.startswith("sqlite"):
            return cls(create_async_engine(url, connect_args={"timeout": 30}))
        return cls(create_async_engine(url, pool_size=2, max_overflow=4, pool_pre_ping=True))

    async def setup(self) -> None:
        """Apply the migrations newer than the recorded version (the project's one runner: advisory
        lock, newer-schema guard, safe from several processes at once)."""
        async with self._engine.begin() as conn:
            await apply_migrations(conn, _MIGRATION_SET)

    async def close(self) -> None:
        """Dispose of the connection pool; idempotent."""
        await self._engine.dispose()

    async def add(self, record: AppRecord) -> None:
        """Insert a new app."""
        values = {k: v for k, v in record.__dict__.items() if k != "spec"}
        async with self._engine.begin() as conn:
            await conn.execute(apps_t.insert().values(**values, spec=json.dumps(record.spec)))

    async def get(self, app_id: str) -> AppRecord | None:
        """The app with this id (any tenant: callers check ownership), or None."""
        async with self._engine.connect() as conn:
            row = (await conn.execute(apps_t.select().where(apps_t.c.id == app_id))).first()
        return _record(row) if row else None

    async def list(self, tenant: str | None = None) -> list[AppRecord]:
        """Apps, oldest first; one tenant's when given."""
        query = apps_t.select().order_by(apps_t.c.created_at)
        if tenant is not None:
            query = query.where(apps_t.c.tenant == tenant)
        async with self._engine.connect() as conn:
            return [_record(r) for r in (await conn.execute(query)).all()]

    async def update(self, app_id: str, **values: Any) -> None:
        """Change columns of one app (``stopped``, ``expires_at``, ``public``, ``token_hash``)."""
        async with self._engine.begin() as conn:
            await conn.execute(apps_t.update().where(apps_t.c.id == app_id).values(**values))

    async def delete(self, app_id: str) -> None:
        """Remove one app."""
        async with self._engine.begin() as conn:
            await conn.execute(apps_t.delete().where(apps_t.c.id == app_id))
