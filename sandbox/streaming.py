"""Turn a backend's queue-feeding ``_execute`` into the async iterator ``Sandbox.stream`` returns.

Why a module of its own: every local backend streams the same way (a producer task fills a queue
with output chunks, then the result; the consumer re-raises the producer's errors and, when it
leaves early, cancels the producer, whose kill callback takes the process tree down).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Protocol

from sandbox.base import OutputChunk, RunResult

__all__ = ["ChunkQueue", "ChunkSink", "stream_chunks"]

ChunkQueue = asyncio.Queue[OutputChunk | BaseException | None]


class ChunkSink(Protocol):
    """Where a backend puts streamed output: a :data:`ChunkQueue`, or a service's log ring."""

    def put_nowait(self, item: OutputChunk | BaseException | None) -> None: ...


async def stream_chunks(
    execute: Callable[[ChunkQueue], Awaitable[RunResult]],
) -> AsyncGenerator[OutputChunk, None]:
    """Yield the chunks ``execute(queue)`` puts on its queue, then one ``result`` chunk.

    Exceptions of ``execute`` are re-raised in the consumer; a consumer that stops early cancels it.
    """
    queue: ChunkQueue = asyncio.Queue()

    async def produce() -> None:
        try:
            result = await execute(queue)
            await queue.put(OutputChunk(stream="result", result=result))
        except BaseException as exc:  # handed to the consumer, re-raised there
            await queue.put(exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
        finally:
            await queue.put(None)

    task = asyncio.ensure_future(produce())
    try:
        while True:
            item = await queue.get()
            if item is None:
                break
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        if not task.done():
            task.cancel()  # the consumer left early: the backend's kill callback ends the tree
            with contextlib.suppress(BaseException):
                await task
