"""Table definitions used to build queries (the DDL itself lives in :mod:`workspace.migrations`).

``files`` holds the head (latest version) of every path: it makes ``list_files`` cheap and gives
writers one row to lock, so concurrent writes to a path take turns instead of racing for a number.
``search_documents`` holds the text that full-text search sees (latest file content, run outputs);
each dialect adds its own index over it (FTS5 table on SQLite, tsvector + GIN on Postgres). Its
``size`` and ``created_at`` drive run output retention and quotas (:mod:`workspace.retention`); a
document's tenant is its workspace's.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Column, DateTime, Dialect, Integer, MetaData, Table, Text, TypeDecorator

__all__ = [
    "UtcDateTime",
    "files",
    "metadata",
    "schema_migrations",
    "search_documents",
    "versions",
    "workspaces",
]


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp that is always stored as UTC and read back timezone-aware (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: pass a timezone-aware value")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = MetaData()

schema_migrations = Table(
    "schema_migrations",
    metadata,
    Column("version", Integer, primary_key=True),
    Column("applied_at", UtcDateTime, nullable=False),
)

workspaces = Table(
    "workspaces",
    metadata,
    Column("id", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("tenant", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
)

versions = Table(
    "versions",
    metadata,
    Column("id", Text, primary_key=True),
    Column("workspace_id", Text, nullable=False),
    Column("path", Text, nullable=False),
    Column("number", Integer, nullable=False),
    Column("content", Text, nullable=False),
    Column("diff", Text, nullable=False),
    Column("parent_id", Text),
    Column("author", Text, nullable=False),
    Column("message", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("size", Integer, nullable=False),
    Column("sha256", Text, nullable=False),
)

files = Table(
    "files",
    metadata,
    Column("workspace_id", Text, primary_key=True),
    Column("path", Text, primary_key=True),
    Column("version_id", Text, nullable=False),
    Column("number", Integer, nullable=False),
    Column("size", Integer, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

search_documents = Table(
    "search_documents",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("workspace_id", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("run_id", Text, nullable=False),  # "" for files
    Column("path", Text, nullable=False),
    Column("version_id", Text),
    Column("body", Text, nullable=False),
    Column("size", Integer, nullable=False),  # UTF-8 bytes of body (run output quotas count these)
    Column("created_at", UtcDateTime, nullable=False),  # when indexed (run output retention)
)
