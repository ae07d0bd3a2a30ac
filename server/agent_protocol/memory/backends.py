"""Open the memory store on the server's own database: LangGraph's store, our vectors, the sweeper.

Postgres (``DATABASE_URL``): LangGraph's ``AsyncPostgresStore`` on one psycopg connection, as the
checkpointer has. SQLite: LangGraph's ``SqliteStore`` run on the event loop while the file is free
(:mod:`.inline_sqlite`) on the file of the server's threads and runs (``agent_protocol.db``; WAL,
a busy timeout on its thread's connection, so the server's other connections and processes share
it). Both get LangGraph's TTL config and their tables from their own ``setup()``
(LangGraph's migration lists, under an advisory lock on Postgres so two processes starting at once
take turns); the vectors table (:mod:`.vectors`) is migrated beside them. A task sweeps expired
items every ``ttl_sweep_minutes``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from langgraph.store.base import BaseStore, TTLConfig

from server.agent_protocol.memory.config import MemoryStoreSettings
from server.agent_protocol.memory.embeddings import embeddings_from_settings
from server.agent_protocol.memory.inline_sqlite import open_inline_sqlite_store
from server.agent_protocol.memory.semantic import SemanticStore
from server.agent_protocol.memory.vectors import MIGRATIONS
from server.agent_protocol.storage.store import ProtocolStore
from workspace.engine import libpq_url
from workspace.migrations import apply_migrations

__all__ = ["open_memory_store"]

logger = logging.getLogger(__name__)

_SETUP_LOCK_KEY = 0x73746F72  # "stor": serialises LangGraph's store setup across processes
_SQLITE_BUSY_S = 30.0


@contextlib.asynccontextmanager
async def _postgres_store(url: str, ttl: TTLConfig) -> AsyncIterator[BaseStore]:
    from langgraph.store.postgres.aio import AsyncPostgresStore
    from psycopg import AsyncConnection
    from psycopg.rows import dict_row

    conn = await AsyncConnection.connect(
        libpq_url(url), autocommit=True, prepare_threshold=0, row_factory=dict_row
    )
    try:
        store = AsyncPostgresStore(conn, ttl=ttl)
        await conn.execute("SELECT pg_advisory_lock(%s)", (_SETUP_LOCK_KEY,))
        try:
            await store.setup()
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (_SETUP_LOCK_KEY,))
        yield store
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def _sqlite_store(path: Path, ttl: TTLConfig) -> AsyncIterator[BaseStore]:
    async with open_inline_sqlite_store(path, ttl, busy_timeout_s=_SQLITE_BUSY_S) as store:
        yield store


@contextlib.asynccontextmanager
async def open_memory_store(
    settings: MemoryStoreSettings, database_url: str | None, tables: ProtocolStore
) -> AsyncIterator[SemanticStore]:
    """The memory store on the database of ``tables`` (its Postgres URL, or its SQLite file).

    Args:
        settings: TTL, limits and the embedding model.
        database_url: The server's Postgres URL; None or empty for SQLite.
        tables: The server's threads and runs tables (their database also holds the vectors).
    """
    ttl: TTLConfig = {"refresh_on_read": settings.refresh_ttl_on_read}
    if settings.default_ttl_minutes is not None:
        ttl["default_ttl"] = settings.default_ttl_minutes
    if tables.is_postgres:
        assert database_url
        opened = _postgres_store(database_url, ttl)
    else:
        opened = _sqlite_store(Path(str(tables.engine.url.database)), ttl)
    async with opened as inner:
        async with tables.engine.begin() as conn:
            await apply_migrations(conn, MIGRATIONS)
        model = embeddings_from_settings(settings)
        embeddings, dims = model if model is not None else (None, 0)
        store = SemanticStore(
            inner,
            tables,
            embeddings,
            dims,
            fields=settings.index_fields,
            candidates=settings.search_candidates,
        )
        logger.info(
            "memory store ready (%s, semantic search: %s)",
            "postgres" if tables.is_postgres else "sqlite",
            settings.embeddings,
        )
        sweeper = asyncio.create_task(
            store.run_sweeper(settings.ttl_sweep_minutes * 60), name="store-sweeper"
        )
        try:
            yield store
        finally:
            sweeper.cancel()
            await asyncio.gather(sweeper, return_exceptions=True)
