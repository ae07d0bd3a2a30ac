"""Checkpointers for the agent graph: Postgres with ``DATABASE_URL``, SQLite under the data dir otherwise.

Checkpoints hold the graph state, which references file versions (never contents), so resuming or
forking from any checkpoint sees exactly the files that checkpoint referenced.

SQLite: :class:`ThreadedSqliteSaver`, LangGraph's ``SqliteSaver`` with its async twins run on one
thread of its own. Why not ``AsyncSqliteSaver``: it holds an asyncio lock across every statement
and commit, each a separate hop to aiosqlite's thread and back through the event loop, so under
load a checkpoint costs several loop turns and all runs queue behind one another; here a whole
``put`` (serialise, insert, commit) is one hop. The file is in WAL mode with
``synchronous=NORMAL``: a commit survives the process being killed (``kill -9``, a crash), only an
OS crash or power loss may lose the last commits, which is the durability the run queue's tables
have too. Both savers share one schema, so either opens the other's file.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
)
from langgraph.checkpoint.sqlite import SqliteSaver

from agents.settings import GraphSettings

__all__ = [
    "ThreadedSqliteSaver",
    "open_checkpointer",
    "open_postgres_checkpointer",
    "open_sqlite_checkpointer",
]

logger = logging.getLogger(__name__)

_P = ParamSpec("_P")
_T = TypeVar("_T")


class ThreadedSqliteSaver(SqliteSaver):
    """``SqliteSaver`` whose async methods run the sync ones on the saver's own thread.

    One thread, so the connection is used by one thread at a time and writes never wait on
    SQLite's busy handler within the process. Build with :func:`open_sqlite_checkpointer`.
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        super().__init__(conn)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoints-sqlite")

    async def _run(self, fn: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, lambda: fn(*args, **kwargs))

    def close(self) -> None:
        """Finish queued work and stop the thread (the connection is closed by its owner)."""
        self._thread.shutdown(wait=True)

    async def asetup(self) -> None:
        """Create the tables (WAL mode, ``synchronous=NORMAL``) on the saver's thread."""

        def setup() -> None:
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self.setup()

        await self._run(setup)

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """Async twin of ``get_tuple``."""
        return await self._run(self.get_tuple, config)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        """Async twin of ``list`` (the page is read at once, then yielded)."""
        found = await self._run(lambda: list(self.list(config, filter=filter, before=before, limit=limit)))
        for item in found:
            yield item

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Async twin of ``put``: serialised, inserted and committed in one hop."""
        return await self._run(self.put, config, checkpoint, metadata, new_versions)

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Async twin of ``put_writes``."""
        await self._run(self.put_writes, config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        """Async twin of ``delete_thread``."""
        await self._run(self.delete_thread, thread_id)

    async def aget_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, Any]:
        """Async twin of ``get_delta_channel_history``."""
        return await self._run(lambda: self.get_delta_channel_history(config=config, channels=channels))


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
    """A :class:`ThreadedSqliteSaver` on the file at ``path`` (created with its directory)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # check_same_thread=False: opened here, used only on the saver's thread afterwards.
    conn = sqlite3.connect(str(path), check_same_thread=False, timeout=30)
    saver = ThreadedSqliteSaver(conn)
    try:
        await saver.asetup()
        yield saver
    finally:
        saver.close()
        conn.close()


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
