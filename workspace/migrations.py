"""Schema migrations: one append-only list per dialect; position in the list = version number.

Never edit or reorder an entry that has shipped: append a new one. ``apply_migrations`` records each
applied version in its set's version table and runs only newer ones, inside one transaction. On
Postgres a transaction-scoped advisory lock makes two processes calling ``setup()`` at once take
turns (the second finds everything applied); on SQLite ``BEGIN IMMEDIATE`` does the same. A
database already at a newer version than the code knows is left alone (an older release must not
"migrate" a newer schema).

Why the runner lives here and takes a :class:`MigrationSet`: every table set of the project (the
workspace's, the server's Agent Protocol tables, its API keys) needs the same lock and guard, and
``server`` may import ``workspace`` but not the reverse.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import Table, func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from workspace.schema import schema_migrations

__all__ = [
    "MIGRATIONS",
    "PG_TSVECTOR_CHARS",
    "WORKSPACE_MIGRATIONS",
    "MigrationSet",
    "apply_migrations",
    "current_version",
    "latest_version",
]

logger = logging.getLogger(__name__)

# Postgres refuses a tsvector over 1 MB; only this many leading characters of a document are indexed there.
PG_TSVECTOR_CHARS = 262_144
_ADVISORY_LOCK_KEY = 0x61676E74  # "agnt": any constant shared by every process of this app

_SQLITE: list[list[str]] = [
    # 1: workspaces, versions, file heads, full-text search (FTS5 over an external-content table).
    [
        """CREATE TABLE workspaces (
            id TEXT PRIMARY KEY, name TEXT NOT NULL, tenant TEXT NOT NULL, created_at TEXT NOT NULL)""",
        "CREATE INDEX ix_workspaces_tenant ON workspaces (tenant, created_at)",
        """CREATE TABLE versions (
            id TEXT PRIMARY KEY,
            workspace_id TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
            path TEXT NOT NULL, number INTEGER NOT NULL, content TEXT NOT NULL, diff TEXT NOT NULL,
            parent_id TEXT, author TEXT NOT NULL, message TEXT NOT NULL, created_at TEXT NOT NULL,
            size INTEGER NOT NULL, sha256 TEXT NOT NULL,
            CONSTRAINT uq_versions_path_number UNIQUE (workspace_id, path, number))""",
        """CREATE TABLE files (
            workspace_id TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
            path TEXT NOT NULL, version_id TEXT NOT NULL, number INTEGER NOT NULL,
            size INTEGER NOT NULL, updated_at TEXT NOT NULL,
            PRIMARY KEY (workspace_id, path))""",
        """CREATE TABLE search_documents (
            id INTEGER PRIMARY KEY,
            workspace_id TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
            kind TEXT NOT NULL, run_id TEXT NOT NULL, path TEXT NOT NULL, version_id TEXT, body TEXT NOT NULL,
            CONSTRAINT uq_search_documents UNIQUE (workspace_id, kind, run_id, path))""",
        """CREATE VIRTUAL TABLE search_fts USING fts5(
            path, body, content='search_documents', content_rowid='id',
            tokenize='unicode61 remove_diacritics 0')""",
        """CREATE TRIGGER search_documents_ai AFTER INSERT ON search_documents BEGIN
            INSERT INTO search_fts (rowid, path, body) VALUES (new.id, new.path, new.body);
        END""",
        """CREATE TRIGGER search_documents_ad AFTER DELETE ON search_documents BEGIN
            INSERT INTO search_fts (search_fts, rowid, path, body)
                VALUES ('delete', old.id, old.path, old.body);
        END""",
        """CREATE TRIGGER search_documents_au AFTER UPDATE ON search_documents BEGIN
            INSERT INTO search_fts (search_fts, rowid, path, body)
                VALUES ('delete', old.id, old.path, old.body);
            INSERT INTO search_fts (rowid, path, body) VALUES (new.id, new.path, new.body);
        END""",
    ],
    # 2: size and time of each document, for run output retention and per-tenant quotas.
    [
        "ALTER TABLE search_documents ADD COLUMN size INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE search_documents ADD COLUMN created_at TEXT NOT NULL "
        "DEFAULT '1970-01-01 00:00:00.000000'",
        # Re-index only when the text changes (the backfill below then costs no FTS work).
        "DROP TRIGGER search_documents_au",
        """CREATE TRIGGER search_documents_au AFTER UPDATE OF path, body ON search_documents BEGIN
            INSERT INTO search_fts (search_fts, rowid, path, body)
                VALUES ('delete', old.id, old.path, old.body);
            INSERT INTO search_fts (rowid, path, body) VALUES (new.id, new.path, new.body);
        END""",
        "UPDATE search_documents SET size = length(CAST(body AS BLOB)), "
        "created_at = strftime('%Y-%m-%d %H:%M:%S', 'now') || '.000000'",
        "CREATE INDEX ix_search_documents_age ON search_documents (kind, created_at)",
    ],
]

_POSTGRES: list[list[str]] = [
    # 1: workspaces, versions, file heads, full-text search (stored tsvector + GIN).
    [
        """CREATE TABLE workspaces (
            id TEXT PRIMARY KEY, name TEXT NOT NULL, tenant TEXT NOT NULL,
            created_at TIMESTAMPTZ NOT NULL)""",
        "CREATE INDEX ix_workspaces_tenant ON workspaces (tenant, created_at)",
        """CREATE TABLE versions (
            id TEXT PRIMARY KEY,
            workspace_id TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
            path TEXT NOT NULL, number INTEGER NOT NULL, content TEXT NOT NULL, diff TEXT NOT NULL,
            parent_id TEXT, author TEXT NOT NULL, message TEXT NOT NULL, created_at TIMESTAMPTZ NOT NULL,
            size INTEGER NOT NULL, sha256 TEXT NOT NULL,
            CONSTRAINT uq_versions_path_number UNIQUE (workspace_id, path, number))""",
        """CREATE TABLE files (
            workspace_id TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
            path TEXT NOT NULL, version_id TEXT NOT NULL, number INTEGER NOT NULL,
            size INTEGER NOT NULL, updated_at TIMESTAMPTZ NOT NULL,
            PRIMARY KEY (workspace_id, path))""",
        f"""CREATE TABLE search_documents (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            workspace_id TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
            kind TEXT NOT NULL, run_id TEXT NOT NULL, path TEXT NOT NULL, version_id TEXT, body TEXT NOT NULL,
            tsv TSVECTOR GENERATED ALWAYS AS (to_tsvector('simple'::regconfig, regexp_replace(
                left(path || ' ' || body, {PG_TSVECTOR_CHARS}), '[[:punct:]]+', ' ', 'g'))) STORED,
            CONSTRAINT uq_search_documents UNIQUE (workspace_id, kind, run_id, path))""",
        "CREATE INDEX ix_search_documents_tsv ON search_documents USING GIN (tsv)",
    ],
    # 2: size and time of each document, for run output retention and per-tenant quotas.
    [
        "ALTER TABLE search_documents ADD COLUMN size INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE search_documents ADD COLUMN created_at TIMESTAMPTZ NOT NULL DEFAULT now()",
        "UPDATE search_documents SET size = octet_length(body)",
        "ALTER TABLE search_documents ALTER COLUMN size DROP DEFAULT, ALTER COLUMN created_at DROP DEFAULT",
        "CREATE INDEX ix_search_documents_age ON search_documents (kind, created_at)",
    ],
]

MIGRATIONS: dict[str, list[list[str]]] = {"sqlite": _SQLITE, "postgresql": _POSTGRES}


@dataclass(frozen=True)
class MigrationSet:
    """One table set: its append-only statement lists by dialect and the table of applied versions.

    ``version_table`` has ``version INTEGER PRIMARY KEY`` and ``applied_at``: ``stamp`` makes its
    value from the time (an ISO-8601 string by default), ``applied_at_sql`` is its DDL type by
    dialect, used when the table is created.
    """

    name: str
    version_table: Table
    steps: Mapping[str, Sequence[Sequence[str]]]
    applied_at_sql: Mapping[str, str] = field(
        default_factory=lambda: {"sqlite": "VARCHAR(40)", "postgresql": "VARCHAR(40)"}
    )
    stamp: Callable[[datetime], object] = datetime.isoformat

    def latest(self, dialect: str) -> int:
        """The version this code expects for ``dialect``."""
        return len(self.steps[dialect])


def _as_datetime(when: datetime) -> datetime:
    return when


WORKSPACE_MIGRATIONS = MigrationSet(
    "workspace", schema_migrations, MIGRATIONS, {"sqlite": "TEXT", "postgresql": "TIMESTAMPTZ"}, _as_datetime
)


def latest_version(dialect: str) -> int:
    """Return the workspace schema version this code expects for ``dialect``."""
    return WORKSPACE_MIGRATIONS.latest(dialect)


async def current_version(conn: AsyncConnection, migrations: MigrationSet = WORKSPACE_MIGRATIONS) -> int:
    """Return the highest applied version of a set (0 when none)."""
    table = migrations.version_table
    result = await conn.execute(select(func.coalesce(func.max(table.c.version), 0)))
    return int(result.scalar_one())


async def _take_turns(conn: AsyncConnection) -> None:
    """Serialise concurrent set-ups: an advisory lock on Postgres, the write lock up front on SQLite.

    Why the SQLite branch: an engine that leaves ``BEGIN`` to the driver starts no transaction
    before the first write, so two processes could both find version 0 and both insert version 1.
    """
    if conn.dialect.name == "postgresql":
        await conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_ADVISORY_LOCK_KEY})")
        return
    raw = await conn.get_raw_connection()
    if not getattr(raw.driver_connection, "in_transaction", True):  # BEGIN IMMEDIATE already, or not
        await conn.exec_driver_sql("BEGIN IMMEDIATE")


async def apply_migrations(conn: AsyncConnection, migrations: MigrationSet = WORKSPACE_MIGRATIONS) -> int:
    """Apply a set's migrations newer than its recorded version; return the resulting version.

    Must run inside a transaction on ``conn`` (a failure applies nothing).
    """
    dialect = conn.dialect.name
    await _take_turns(conn)
    table = migrations.version_table
    await conn.exec_driver_sql(
        f"CREATE TABLE IF NOT EXISTS {table.name} "
        f"(version INTEGER PRIMARY KEY, applied_at {migrations.applied_at_sql[dialect]} NOT NULL)"
    )
    applied = await current_version(conn, migrations)
    wanted = migrations.steps[dialect]
    if applied > len(wanted):
        logger.warning(
            "%s schema is at version %d, newer than this code (%d); left as it is",
            migrations.name,
            applied,
            len(wanted),
        )
        return applied
    for version, statements in enumerate(wanted, start=1):
        if version <= applied:
            continue
        logger.info("applying %s %s schema migration %d", migrations.name, dialect, version)
        for statement in statements:
            await conn.exec_driver_sql(statement)
        stamp = migrations.stamp(datetime.now(UTC))
        await conn.execute(insert(table).values(version=version, applied_at=stamp))
    return len(wanted)
