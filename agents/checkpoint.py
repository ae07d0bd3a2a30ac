"""Checkpointers for the agent graph: Postgres with ``DATABASE_URL``, SQLite under the data dir otherwise.

Checkpoints hold the graph state, which references file versions (never contents), so resuming or
forking from any checkpoint sees exactly the files that checkpoint referenced.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from langgraph.checkpoint.base import BaseCheckpointSaver

from agents.settings import GraphSettings

__all__ = ["open_checkpointer", "open_postgres_checkpointer", "open_sqlite_checkpointer"]

logger = logging.getLogger(__name__)


@contextlib.asynccontextmanager
async def open_postgres_checkpointer(url: str) -> AsyncIterator[BaseCheckpointSaver[str]]:
    """An ``AsyncPostgresSaver`` on one psycopg connection, its tables set up."""
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
    from psycopg import AsyncConnection
    from psycopg.rows import dict_row

    from workspace.engine import libpq_url  # the project's one URL normaliser

    conn = await AsyncConnection.connect(
        libpq_url(url), autocommit=True, prepare_threshold=0, row_factory=dict_row
    )
    try:
        saver = AsyncPostgresSaver(conn)
        await saver.setup()
        yield saver
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def open_sqlite_checkpointer(path: Path) -> AsyncIterator[BaseCheckpointSaver[str]]:
    """An ``AsyncSqliteSaver`` on the file at ``path`` (created with its directory)."""
    import aiosqlite
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    path.parent.mkdir(parents=True, exist_ok=True)
    conn = await aiosqlite.connect(str(path))
    try:
        saver = AsyncSqliteSaver(conn)
        await saver.setup()
        yield saver
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def open_checkpointer(
    database_url: str | None = None, *, data_dir: Path | None = None
) -> AsyncIterator[BaseCheckpointSaver[str]]:
    """The configured checkpointer: Postgres for a ``postgresql://`` URL, else SQLite in the data dir.

    Args:
        database_url: Overrides the settings' ``DATABASE_URL``.
        data_dir: Overrides the settings' data dir (SQLite file ``checkpoints.db`` inside it).
    """
    settings = GraphSettings()
    url = database_url if database_url is not None else settings.database_url
    if url and url.startswith(("postgresql", "postgres:")):
        logger.info("checkpoints in Postgres")
        async with open_postgres_checkpointer(url) as saver:
            yield saver
        return
    path = (data_dir or settings.data_dir).expanduser() / "checkpoints.db"
    logger.info("checkpoints in SQLite at %s", path)
    async with open_sqlite_checkpointer(path) as saver:
        yield saver
