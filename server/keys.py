"""API keys mapped to tenants: from the environment, and created by ``agentic keys`` in the database.

Design (the simplest sound one): a key is 32 random bytes (``agk_`` + URL-safe base64), shown once
at creation. The database keeps only its SHA-256 and a short public ``key_id``; a plain hash is
enough because the key is random (nothing to brute-force, unlike passwords), and it lets a request
find its key with one indexed lookup. Revoking sets ``revoked_at``; it takes effect on the next
request. Keys from ``AGENTIC_API_KEYS`` (``key`` or ``tenant:key``) are compared in constant time.

The table lives in the same database as threads and runs (SQLite in the data dir, or Postgres),
with its own append-only migration list, applied by the project's one runner
(:func:`workspace.migrations.apply_migrations`).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from server.tenancy import Principal
from workspace.migrations import MigrationSet, apply_migrations

__all__ = ["ApiKeyInfo", "KeyRing", "KeyStore", "hash_key", "new_key"]

logger = logging.getLogger(__name__)

KEY_PREFIX = "agk_"

_STEPS: list[list[str]] = [
    [
        """CREATE TABLE IF NOT EXISTS api_keys (
            key_id VARCHAR(16) PRIMARY KEY,
            tenant VARCHAR(64) NOT NULL,
            key_hash VARCHAR(64) NOT NULL UNIQUE,
            created_at VARCHAR(40) NOT NULL,
            revoked_at VARCHAR(40)
        )""",
        "CREATE INDEX IF NOT EXISTS api_keys_tenant ON api_keys (tenant)",
    ],
]

_meta = sa.MetaData()
_migrations_t = sa.Table(
    "server_migrations",
    _meta,
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("applied_at", sa.String(40), nullable=False),
)
MIGRATIONS = MigrationSet("server", _migrations_t, {"sqlite": _STEPS, "postgresql": _STEPS})
keys_t = sa.Table(
    "api_keys",
    _meta,
    sa.Column("key_id", sa.String(16), primary_key=True),
    sa.Column("tenant", sa.String(64)),
    sa.Column("key_hash", sa.String(64)),
    sa.Column("created_at", sa.String(40)),
    sa.Column("revoked_at", sa.String(40)),
)


def hash_key(key: str) -> str:
    """The stored form of a key."""
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    """A fresh random key."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def _now() -> str:
    return datetime.now(UTC).isoformat()


@dataclass(frozen=True, kw_only=True)
class ApiKeyInfo:
    """A stored key without its secret."""

    key_id: str
    tenant: str
    created_at: str
    revoked_at: str | None


def _info(row: sa.Row[Any]) -> ApiKeyInfo:
    m = row._mapping
    return ApiKeyInfo(
        key_id=m["key_id"], tenant=m["tenant"], created_at=m["created_at"], revoked_at=m["revoked_at"]
    )


class KeyStore:
    """Hashed API keys in the database. Build with :meth:`from_url`; call :meth:`setup` once."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    @classmethod
    def from_url(cls, url: str) -> KeyStore:
        """An engine for an async SQLAlchemy URL (see ``server.agent_protocol.storage.async_url``)."""
        if url.startswith("sqlite"):
            return cls(create_async_engine(url, connect_args={"timeout": 30}))
        return cls(create_async_engine(url, pool_size=2, max_overflow=4, pool_pre_ping=True))

    async def setup(self) -> None:
        """Apply the migrations newer than the recorded version (safe from several processes at once)."""
        async with self._engine.begin() as conn:
            await apply_migrations(conn, MIGRATIONS)

    async def close(self) -> None:
        """Dispose of the connection pool; idempotent."""
        await self._engine.dispose()

    async def create_key(self, tenant: str) -> tuple[ApiKeyInfo, str]:
        """Create a key for ``tenant``; returns its info and the key (the only time it is visible)."""
        key = new_key()
        info = ApiKeyInfo(key_id=secrets.token_hex(6), tenant=tenant, created_at=_now(), revoked_at=None)
        async with self._engine.begin() as conn:
            await conn.execute(
                keys_t.insert().values(
                    key_id=info.key_id,
                    tenant=tenant,
                    key_hash=hash_key(key),
                    created_at=info.created_at,
                    revoked_at=None,
                )
            )
        return info, key

    async def list_keys(self, tenant: str | None = None) -> list[ApiKeyInfo]:
        """Keys (revoked ones too), oldest first; one tenant's when given."""
        query = keys_t.select().order_by(keys_t.c.created_at, keys_t.c.key_id)
        if tenant is not None:
            query = query.where(keys_t.c.tenant == tenant)
        async with self._engine.connect() as conn:
            return [_info(r) for r in (await conn.execute(query)).all()]

    async def revoke_keys(self, tenant: str, key_id: str | None = None) -> int:
        """Revoke the tenant's keys (or only ``key_id``); returns how many were revoked now."""
        query = keys_t.update().where(keys_t.c.tenant == tenant, keys_t.c.revoked_at.is_(None))
        if key_id is not None:
            query = query.where(keys_t.c.key_id == key_id)
        async with self._engine.begin() as conn:
            result = await conn.execute(query.values(revoked_at=_now()))
        return int(result.rowcount)

    async def lookup(self, key: str) -> ApiKeyInfo | None:
        """The active key with this secret, or None."""
        query = keys_t.select().where(keys_t.c.key_hash == hash_key(key), keys_t.c.revoked_at.is_(None))
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return _info(row) if row else None

    async def count_active(self) -> int:
        """How many keys are not revoked."""
        query = sa.select(sa.func.count()).select_from(keys_t).where(keys_t.c.revoked_at.is_(None))
        async with self._engine.connect() as conn:
            return int((await conn.execute(query)).scalar() or 0)


class KeyRing:
    """Answers "which tenant does this key belong to?" from the environment's keys and the database's.

    Authentication is on when any key exists; whether the database holds one is re-read at most
    every ``enabled_ttl_s`` seconds, so a key created while the server runs turns auth on.
    """

    def __init__(
        self, static: list[tuple[str, str]], store: KeyStore | None = None, *, enabled_ttl_s: float = 5.0
    ) -> None:
        self._static = [(tenant, key.encode(), "env-" + hash_key(key)[:8]) for tenant, key in static]
        self._store = store
        self._ttl = enabled_ttl_s
        self._enabled: tuple[float, bool] | None = None

    async def enabled(self) -> bool:
        """True when at least one key (environment or database) exists."""
        if self._static:
            return True
        if self._store is None:
            return False
        now = time.monotonic()
        if self._enabled is None or now - self._enabled[0] > self._ttl:
            try:
                self._enabled = (now, await self._store.count_active() > 0)
            except Exception as exc:  # an unreadable key table must not turn auth off
                logger.error("cannot read the api_keys table: %s", exc)
                return True
        return self._enabled[1]

    async def authenticate(self, supplied: str) -> Principal | None:
        """The principal of a key, or None when it is unknown or revoked."""
        found: Principal | None = None
        # Compare against every key so the time taken does not tell which one nearly matched.
        for tenant, key, key_id in self._static:
            if hmac.compare_digest(supplied.encode(), key):
                found = Principal(tenant=tenant, key_id=key_id)
        if found is not None or self._store is None or not supplied.startswith(KEY_PREFIX):
            return found
        info = await self._store.lookup(supplied)
        return Principal(tenant=info.tenant, key_id=info.key_id) if info else None
