"""Postgres checkpoints with group commit: a run's checkpoints reach the database in batches.

LangGraph's ``AsyncPostgresSaver`` commits every checkpoint and every task's writes with its own
round trip (two with its pipeline), each serialised on a worker thread: four to six round trips
and thread hops per graph step, which cost more CPU than the step itself when the model answers
fast (``bench/graph_overhead.py``). :class:`GroupCommitPostgresSaver` keeps LangGraph's schema,
reads and SQL semantics, and changes when writes happen, by the run's durability mode:

* ``async`` (what the server's runs use): ``aput`` / ``aput_writes`` serialise and queue the rows and
  return; the queue is committed as one statement (``unnest`` arrays into the three tables) within
  ``flush_after_s``, before any read or delete through this saver, when it grows past
  ``flush_rows``, and when the run ends: the server's executor calls :meth:`aflush` for the run's
  thread before it records the run's outcome, so a run reported finished has all its checkpoints
  stored. What a crash (``kill -9``) may lose is what LangGraph's own ``async`` mode may lose (the
  step in flight) plus at most ``flush_after_s`` of steps; a resumed run continues from the last
  committed checkpoint, as it does after losing the step in flight.
* ``sync``, ``exit``, or no durability in the config (``update_state`` and other direct calls):
  the call returns once its rows are committed, as with LangGraph's saver.

A batch that fails is retried one call at a time, so a bad row fails only its own thread: the
error is raised by the next :meth:`aflush` of that thread (a run then ends in error instead of
reporting a success whose state was not stored). Another process reading the database sees a
running run's checkpoints up to ``flush_after_s`` late; one that sees the run finished sees them all.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph._internal._constants import CONFIG_KEY_DURABILITY  # set in a run's configs
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    get_serializable_checkpoint_metadata,
)
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.checkpoint.serde.types import _DeltaSnapshot

__all__ = ["GroupCommitPostgresSaver"]

logger = logging.getLogger(__name__)

# One statement for a whole batch. The rows are folded first (see _Batch) so that no row is
# written twice by one statement, which ON CONFLICT DO UPDATE refuses.
_FLUSH_SQL = """
WITH blobs AS (
    INSERT INTO checkpoint_blobs (thread_id, checkpoint_ns, channel, version, type, blob)
    SELECT * FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::bytea[])
    ON CONFLICT (thread_id, checkpoint_ns, channel, version) DO NOTHING
), upserted_writes AS (
    INSERT INTO checkpoint_writes
        (thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, type, blob)
    SELECT * FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::int[],
                         %b::text[], %b::text[], %b::bytea[])
    ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id, task_id, idx)
    DO UPDATE SET channel = EXCLUDED.channel, type = EXCLUDED.type, blob = EXCLUDED.blob
), inserted_writes AS (
    INSERT INTO checkpoint_writes
        (thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, type, blob)
    SELECT * FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::int[],
                         %b::text[], %b::text[], %b::bytea[])
    ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id, task_id, idx) DO NOTHING
)
INSERT INTO checkpoints (thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, checkpoint, metadata)
SELECT t, ns, id, parent, checkpoint::jsonb, metadata::jsonb
FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[])
    AS c(t, ns, id, parent, checkpoint, metadata)
ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id)
DO UPDATE SET checkpoint = EXCLUDED.checkpoint, metadata = EXCLUDED.metadata
"""

BlobRow = tuple[str, str, str, str, str, bytes | None]
WriteRow = tuple[str, str, str, str, str, int, str, str, bytes]
CheckpointRow = tuple[str, str, str, str | None, str, str]


@dataclass
class _Put:
    """The rows of one ``aput`` or ``aput_writes`` call, waiting for a commit."""

    thread_id: str
    blobs: list[BlobRow] = field(default_factory=list)
    checkpoint: CheckpointRow | None = None
    writes: list[WriteRow] = field(default_factory=list)
    upsert_writes: bool = False


class _Batch:
    """Rows of several calls folded as running them one after another would leave them.

    Blobs and plain writes insert or do nothing (the first one stays); checkpoints and writes of
    special channels upsert (the last one stays, and an upsert after a plain insert still wins).
    """

    def __init__(self, puts: Sequence[_Put]) -> None:
        self.blobs: dict[tuple[str, ...], BlobRow] = {}
        self.writes: dict[tuple[str | int, ...], tuple[bool, WriteRow]] = {}
        self.checkpoints: dict[tuple[str, ...], CheckpointRow] = {}
        for put in puts:
            for blob in put.blobs:
                self.blobs.setdefault(blob[:4], blob)
            if put.checkpoint is not None:
                self.checkpoints[put.checkpoint[:3]] = put.checkpoint
            for write in put.writes:
                key = (*write[:4], write[5])
                if put.upsert_writes:
                    self.writes[key] = (True, write)
                else:
                    self.writes.setdefault(key, (False, write))

    def params(self) -> list[list[Any]]:
        """The statement's parameters: one array per column, in ``_FLUSH_SQL``'s order."""
        upserted = [row for upsert, row in self.writes.values() if upsert]
        inserted = [row for upsert, row in self.writes.values() if not upsert]
        return [
            *_columns(list(self.blobs.values()), 6),
            *_columns(upserted, 9),
            *_columns(inserted, 9),
            *_columns(list(self.checkpoints.values()), 6),
        ]


def _columns(rows: Sequence[Sequence[Any]], width: int) -> list[list[Any]]:
    return [list(column) for column in zip(*rows, strict=True)] if rows else [[] for _ in range(width)]


class GroupCommitPostgresSaver(AsyncPostgresSaver):
    """``AsyncPostgresSaver`` whose writes in ``async`` durability are committed in batches.

    Build with :func:`agents.checkpoint.open_postgres_checkpointer`. Use from one event loop.
    """

    def __init__(self, *args: Any, flush_after_s: float = 0.02, flush_rows: int = 500, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.flush_after_s = flush_after_s
        self.flush_rows = flush_rows
        self._queued: list[_Put] = []
        self._queued_rows = 0
        self._queued_total = 0  # calls queued since the start, and how many of them are written or failed
        self._settled_total = 0
        self._flushing: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._failed: dict[str, BaseException] = {}  # thread -> first error its queued rows met
        self.batches = 0  # statements written (tests read it)

    # -- writes ---------------------------------------------------------------------------------

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Queue a checkpoint (``AsyncPostgresSaver.aput``'s rows); wait for its commit unless ``async``."""
        configurable = config["configurable"]
        thread_id, checkpoint_ns = configurable["thread_id"], configurable["checkpoint_ns"]
        inline = checkpoint["channel_values"].copy()
        blob_values: dict[str, Any] = {}
        for key, value in checkpoint["channel_values"].items():  # as AsyncPostgresSaver.aput stores them
            if isinstance(value, _DeltaSnapshot):
                blob_values[key] = inline.pop(key)
                inline[key] = True
            elif not (value is None or isinstance(value, str | int | float | bool)):
                blob_values[key] = inline.pop(key)
        blob_versions = {k: v for k, v in new_versions.items() if k in blob_values}
        put = _Put(
            thread_id=thread_id,
            blobs=self._dump_blobs(thread_id, checkpoint_ns, blob_values, blob_versions),
            checkpoint=(
                thread_id,
                checkpoint_ns,
                checkpoint["id"],
                configurable.get("checkpoint_id"),
                json.dumps({**checkpoint, "channel_values": inline}),
                json.dumps(get_serializable_checkpoint_metadata(config, metadata)),
            ),
        )
        await self._queue(put, config)
        ids = {"thread_id": thread_id, "checkpoint_ns": checkpoint_ns, "checkpoint_id": checkpoint["id"]}
        return {"configurable": ids}

    async def aput_writes(
        self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str, task_path: str = ""
    ) -> None:
        """Queue a task's writes (``AsyncPostgresSaver.aput_writes``'s rows); wait unless ``async``."""
        configurable = config["configurable"]
        put = _Put(
            thread_id=configurable["thread_id"],
            writes=self._dump_writes(
                configurable["thread_id"],
                configurable["checkpoint_ns"],
                configurable["checkpoint_id"],
                task_id,
                task_path,
                writes,
            ),
            upsert_writes=all(channel in WRITES_IDX_MAP for channel, _ in writes),
        )
        await self._queue(put, config)

    async def _queue(self, put: _Put, config: RunnableConfig) -> None:
        self._queued.append(put)
        self._queued_total += 1
        self._queued_rows += len(put.blobs) + len(put.writes) + 1
        if config["configurable"].get(CONFIG_KEY_DURABILITY) != "async":
            await self.aflush(put.thread_id)
        elif self._queued_rows >= self.flush_rows:
            self._start_flush()
        elif self._timer is None and self._flushing is None:
            self._timer = asyncio.get_running_loop().call_later(self.flush_after_s, self._start_flush)

    # -- committing -----------------------------------------------------------------------------

    async def aflush(self, thread_id: str | None = None) -> None:
        """Commit everything queued so far; raise the first error met by ``thread_id``'s rows.

        Waits for the rows queued before the call (at most the batch being written and the next
        one), not for rows other runs keep queuing meanwhile.

        Raises:
            Exception: the database error a queued row of ``thread_id`` met since its last flush
                (that row is not stored; the rows of other calls are).
        """
        target = self._queued_total
        while self._settled_total < target:
            if self._flushing is None:
                self._start_flush()
            flushing = self._flushing
            assert flushing is not None
            await asyncio.shield(flushing)
        if thread_id is not None and (error := self._failed.pop(thread_id, None)) is not None:
            raise error

    def _start_flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._flushing is None and self._queued:
            self._flushing = asyncio.get_running_loop().create_task(self._flush(), name="checkpoints-flush")

    async def _flush(self) -> None:
        """Commit the queue as one statement (one call at a time after a failure); the next batch follows."""
        puts, self._queued, self._queued_rows = self._queued, [], 0
        try:
            await self._write(puts)
        except Exception as exc:
            if len(puts) == 1:
                self._fail(puts[0], exc)
            else:
                logger.warning("%d checkpoint writes failed as a batch (%s): one by one", len(puts), exc)
                for put in puts:
                    try:
                        await self._write([put])
                    except Exception as one:
                        self._fail(put, one)
        finally:
            self._settled_total += len(puts)
            self._flushing = None
            if self._queued:  # queued while this batch was written: they have waited long enough
                self._start_flush()

    def _fail(self, put: _Put, exc: Exception) -> None:
        logger.error("checkpoint rows of thread %s were not stored: %s", put.thread_id, exc)
        self._failed.setdefault(put.thread_id, exc)

    async def _write(self, puts: Sequence[_Put]) -> None:
        params = _Batch(puts).params()
        async with self._cursor() as cur:
            await cur.execute(_FLUSH_SQL, params)
        self.batches += 1

    # -- reads and deletes see everything queued before them -------------------------------------

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """``AsyncPostgresSaver.aget_tuple`` after the queue is committed."""
        await self.aflush()
        return await super().aget_tuple(config)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        """``AsyncPostgresSaver.alist`` after the queue is committed."""
        await self.aflush()
        async for item in super().alist(config, filter=filter, before=before, limit=limit):
            yield item

    async def adelete_thread(self, thread_id: str) -> None:
        """Delete after the queue is committed (queued rows would otherwise outlive the delete)."""
        await self.aflush()
        self._failed.pop(thread_id, None)
        await super().adelete_thread(thread_id)

    async def aget_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, Any]:
        """``AsyncPostgresSaver.aget_delta_channel_history`` after the queue is committed."""
        await self.aflush()
        return await super().aget_delta_channel_history(config=config, channels=channels)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """``AsyncPostgresSaver.aprune`` after the queue is committed."""
        await self.aflush()
        await super().aprune(thread_ids, strategy=strategy)
