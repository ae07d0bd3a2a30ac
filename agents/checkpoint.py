"""Checkpointers for the agent graph: Postgres with ``DATABASE_URL``, SQLite under the data dir otherwise.

Checkpoints hold the graph state, which references file versions (never contents), so resuming or
forking from any checkpoint sees exactly the files that checkpoint referenced.

SQLite: :class:`InlineSqliteSaver`, LangGraph's ``SqliteSaver`` whose hot async methods (read the
latest checkpoint, put a checkpoint, put a step's writes) run right on the event loop. Why not
``AsyncSqliteSaver``: it holds an asyncio lock across every statement and commit, each a hop to
aiosqlite's thread and back, so under load a checkpoint cost several loop turns and runs queued
behind one another. A put is a fraction of a millisecond of CPU, mostly serialising, which holds
the GIL on any thread anyway; the commit does not wait for the disk (WAL, ``synchronous=NORMAL``:
a commit survives the process being killed, ``kill -9`` or a crash; only an OS crash or power
loss may lose the last ones, the durability the run queue's tables have too). What must not
happen on the loop is waiting, so the loop's connection has no busy timeout: when another
connection holds the write lock (another process on the same file), the same call runs again on
the saver's thread, on a connection that waits; and the loop's connection never checkpoints the
WAL (a checkpoint syncs the file), the thread does, every ``checkpoint_every`` puts. Listing,
deleting, pruning and history reads, which may be long, always run on the thread. Both savers share
LangGraph's schema, so either opens the other's file.

Postgres: :class:`~agents.postgres_checkpoint.GroupCommitPostgresSaver`, LangGraph's
``AsyncPostgresSaver`` whose writes in a run with ``async`` durability are queued and committed in
batches, one statement each; the server commits a run's with :func:`flush_checkpoints` before it
records the run's outcome.
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

from agents.postgres_checkpoint import GroupCommitPostgresSaver
from agents.settings import GraphSettings
from workspace.engine import sqlite_busy

__all__ = [
    "GroupCommitPostgresSaver",
    "InlineSqliteSaver",
    "flush_checkpoints",
    "open_checkpointer",
    "open_postgres_checkpointer",
    "open_sqlite_checkpointer",
]

logger = logging.getLogger(__name__)

_P = ParamSpec("_P")
_T = TypeVar("_T")
_BUSY_TIMEOUT_S = 30.0


class InlineSqliteSaver(SqliteSaver):
    """``SqliteSaver`` (its sync methods wait for a busy database, on any thread) with async twins
    that run on the event loop when the database is free and on the saver's own thread when not.

    Build with :func:`open_sqlite_checkpointer`.
    """

    def __init__(
        self, conn: sqlite3.Connection, loop_conn: sqlite3.Connection, *, checkpoint_every: int = 1000
    ):
        super().__init__(conn)
        self._here = SqliteSaver(loop_conn)  # never waits: busy timeout 0, no WAL checkpoints
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoints-sqlite")
        self._checkpoint_every = checkpoint_every
        self._puts = 0
        self.offloaded = 0  # calls the database was too busy for on the loop

    async def _in_thread(self, fn: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, lambda: fn(*args, **kwargs))

    async def _here_or_thread(self, name: str, *args: Any) -> Any:
        try:
            return getattr(self._here, name)(*args)
        except sqlite3.OperationalError as exc:
            if not sqlite_busy(exc):
                raise
        self.offloaded += 1
        return await self._in_thread(getattr(self, name), *args)

    def _count_put(self) -> None:
        self._puts += 1
        if self._puts >= self._checkpoint_every:
            self._puts = 0
            self._thread.submit(self._checkpoint_wal)

    def _checkpoint_wal(self) -> None:
        try:
            with self.lock:
                self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error:  # the next one catches up; SQLite also checkpoints on the last close
            logger.warning("checkpointing the WAL of the checkpoint database failed", exc_info=True)

    def close(self) -> None:
        """Finish queued work, checkpoint the WAL, stop the thread (connections are closed by their owner)."""
        self._thread.shutdown(wait=True)
        self._checkpoint_wal()

    async def asetup(self) -> None:
        """Create the tables (WAL mode, ``synchronous=NORMAL``) on the saver's thread."""

        def setup() -> None:
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self.setup()
            self._here.setup()

        await self._in_thread(setup)

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """Async twin of ``get_tuple``."""
        found: CheckpointTuple | None = await self._here_or_thread("get_tuple", config)
        return found

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        """Async twin of ``list`` (read on the thread at once, then yielded)."""
        found = await self._in_thread(
            lambda: list(self.list(config, filter=filter, before=before, limit=limit))
        )
        for item in found:
            yield item

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Async twin of ``put``."""
        saved: RunnableConfig = await self._here_or_thread("put", config, checkpoint, metadata, new_versions)
        self._count_put()
        return saved

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Async twin of ``put_writes``."""
        await self._here_or_thread("put_writes", config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        """Async twin of ``delete_thread``."""
        await self._in_thread(self.delete_thread, thread_id)

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """Keep only the latest checkpoint of each namespace of the threads, or delete them all.

        ``keep_latest`` deletes the older checkpoints and their writes (writes of the old ones
        first, so a failure in between leaves every kept checkpoint whole). Not for graphs with a
        ``DeltaChannel``, whose latest checkpoint may need its ancestors; the project has none.

        Raises:
            TypeError: ``thread_ids`` is one string.
            ValueError: an unknown strategy.
        """
        if isinstance(thread_ids, str):
            raise TypeError("thread_ids must be a sequence of thread IDs, not a str")
        if strategy == "delete":
            for thread_id in thread_ids:
                self.delete_thread(thread_id)
            return
        if strategy != "keep_latest":
            raise ValueError(f"Unknown prune strategy: {strategy!r}")
        latest = "SELECT MAX(checkpoint_id) FROM checkpoints WHERE thread_id = ? GROUP BY checkpoint_ns"
        with self.cursor() as cur:
            for thread_id in map(str, thread_ids):
                for table in ("writes", "checkpoints"):
                    cur.execute(
                        f"DELETE FROM {table} WHERE thread_id = ? AND checkpoint_id NOT IN ({latest})",
                        (thread_id, thread_id),
                    )

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """Async twin of ``prune``."""
        await self._in_thread(lambda: self.prune(thread_ids, strategy=strategy))

    async def aget_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, Any]:
        """Async twin of ``get_delta_channel_history``."""
        return await self._in_thread(lambda: self.get_delta_channel_history(config=config, channels=channels))


@contextlib.asynccontextmanager
async def open_postgres_checkpointer(
    url: str, *, flush_after_s: float | None = None
) -> AsyncIterator[GroupCommitPostgresSaver]:
    """A :class:`GroupCommitPostgresSaver` on one psycopg connection, its tables set up.

    ``flush_after_s`` defaults to the settings' ``checkpoint_flush_ms``. On exit what is still
    queued is committed before the connection closes.
    """
    from psycopg import AsyncConnection
    from psycopg.rows import dict_row

    from workspace.engine import libpq_url  # the project's one URL normaliser

    conn = await AsyncConnection.connect(
        libpq_url(url), autocommit=True, prepare_threshold=0, row_factory=dict_row
    )
    try:
        if flush_after_s is None:
            flush_after_s = GraphSettings().checkpoint_flush_ms / 1000
        saver = GroupCommitPostgresSaver(conn, flush_after_s=flush_after_s)
        await saver.setup()
        try:
            yield saver
        finally:
            await saver.aflush()  # never raises: rows that fail are logged (and kept for their thread)
    finally:
        await conn.close()


async def flush_checkpoints(saver: BaseCheckpointSaver[Any] | None, thread_id: str) -> None:
    """Commit the checkpoints a run of ``thread_id`` queued (a no-op for savers that do not queue).

    Raises:
        Exception: a checkpoint of the thread could not be stored
            (see :meth:`GroupCommitPostgresSaver.aflush`).
    """
    if isinstance(saver, GroupCommitPostgresSaver):
        await saver.aflush(thread_id)


@contextlib.asynccontextmanager
async def open_sqlite_checkpointer(path: Path) -> AsyncIterator[BaseCheckpointSaver[str]]:
    """An :class:`InlineSqliteSaver` on the file at ``path`` (created with its directory)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # check_same_thread=False: each connection is used by one thread at a time, under its saver's lock.
    conn = sqlite3.connect(str(path), check_same_thread=False, timeout=_BUSY_TIMEOUT_S)
    loop_conn = sqlite3.connect(str(path), check_same_thread=False, timeout=0)
    loop_conn.execute("PRAGMA synchronous=NORMAL")
    loop_conn.execute("PRAGMA wal_autocheckpoint=0")
    saver = InlineSqliteSaver(conn, loop_conn)
    try:
        await saver.asetup()
        yield saver
    finally:
        saver.close()
        loop_conn.close()
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
