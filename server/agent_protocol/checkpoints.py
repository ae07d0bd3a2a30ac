"""A thread's checkpoints copied to a new thread, or pruned to the latest, through the saver's API.

Why a copy through ``alist`` / ``aput`` / ``aput_writes`` rather than the saver's ``acopy_thread``:
neither of the project's savers implements it (LangGraph's Postgres saver and
:class:`agents.checkpoint.InlineSqliteSaver`), and the public API is the same on both. Every
checkpoint keeps its id and its parent, every pending write its task, so the copy's history is
the source's, step for step (time travel works on the copy).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver

from server.agent_protocol.errors import InvalidRunError

__all__ = ["PruneNotSupportedError", "copy_checkpoints", "prune_to_latest"]


class PruneNotSupportedError(InvalidRunError):
    """The checkpointer cannot keep only the latest checkpoint of these threads."""

    kind = "prune_not_supported"


def _config(thread_id: str, checkpoint_ns: str, checkpoint_id: str | None) -> RunnableConfig:
    configurable: dict[str, Any] = {"thread_id": thread_id, "checkpoint_ns": checkpoint_ns}
    if checkpoint_id is not None:
        configurable["checkpoint_id"] = checkpoint_id
    return {"configurable": configurable}


async def copy_checkpoints(saver: BaseCheckpointSaver[Any], source: str, target: str) -> int:
    """Copy every checkpoint (all namespaces) and pending write of ``source`` to ``target``.

    Returns:
        How many checkpoints were copied.
    """
    found = [t async for t in saver.alist({"configurable": {"thread_id": source}})]
    for item in reversed(found):  # oldest first: a parent is written before its children
        conf = item.config["configurable"]
        namespace = conf.get("checkpoint_ns", "")
        parent = item.parent_config["configurable"].get("checkpoint_id") if item.parent_config else None
        metadata: Any = dict(item.metadata)
        if metadata.get("thread_id") == source:
            metadata["thread_id"] = target
        saved = await saver.aput(
            _config(target, namespace, parent),
            item.checkpoint,
            metadata,
            dict(item.checkpoint.get("channel_versions", {})),
        )
        by_task: dict[str, list[tuple[str, Any]]] = defaultdict(list)
        for task_id, channel, value in item.pending_writes or []:
            by_task[task_id].append((channel, value))
        for task_id, writes in by_task.items():
            await saver.aput_writes(saved, writes, task_id)
    return len(found)


async def prune_to_latest(saver: BaseCheckpointSaver[Any], thread_ids: list[str]) -> None:
    """Keep only the latest checkpoint of each namespace of the threads (their state, not their past).

    Raises:
        PruneNotSupportedError: the checkpointer has no prune, or refuses these threads.
    """
    try:
        await saver.aprune(thread_ids, strategy="keep_latest")
    except NotImplementedError as exc:
        raise PruneNotSupportedError(
            f"this server's checkpointer cannot keep only the latest checkpoint "
            f"({exc or 'not implemented'}); "
            'use strategy "delete"'
        ) from None
