"""Streamed output: the async iterator ``Sandbox.stream`` returns, and the decoder that feeds it.

Why a module of its own: every backend streams the same way (a producer task fills a queue with
output chunks, then the result; the consumer re-raises the producer's errors and, when it leaves
early, cancels the producer, whose kill callback takes the process tree down), and turns raw bytes
into text chunks the same way (:class:`ChunkDecoder`).
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Literal, Protocol

from sandbox.base import OutputChunk, RunResult

__all__ = ["ChunkDecoder", "ChunkQueue", "ChunkSink", "StreamName", "stream_chunks"]

ChunkQueue = asyncio.Queue[OutputChunk | BaseException | None]
StreamName = Literal["stdout", "stderr"]
_STREAMS: tuple[StreamName, ...] = ("stdout", "stderr")


class ChunkSink(Protocol):
    """Where a backend puts streamed output: a :data:`ChunkQueue`, or a service's log ring."""

    def put_nowait(self, item: OutputChunk | BaseException | None) -> None: ...


class ChunkDecoder:
    """Decodes a run's output bytes (UTF-8, split characters kept whole) into chunks for ``sink``.

    ``hold_partial_s``: hand output on in whole lines where it can, holding a partial line back until
    more output comes or this many seconds pass. Why: gVisor's Sentry forwards each of the program's
    writes separately and slower than a native pipe, so ``print`` (text, then newline) would often
    arrive as two chunks. ``None`` hands every piece on at once.
    """

    def __init__(self, sink: ChunkSink, *, hold_partial_s: float | None = None) -> None:
        self.sink = sink
        self.hold_partial_s = hold_partial_s
        self._decoders = {n: codecs.getincrementaldecoder("utf-8")("replace") for n in _STREAMS}
        self._pending: dict[StreamName, str] = {"stdout": "", "stderr": ""}
        self._timers: dict[StreamName, asyncio.TimerHandle] = {}

    def add(self, stream: StreamName, data: bytes) -> None:
        """Take one chunk read from ``stream``."""
        text = self._pending[stream] + self._decoders[stream].decode(data)
        if self.hold_partial_s is None:
            self._pending[stream] = text
            self._emit(stream)
            return
        if (timer := self._timers.pop(stream, None)) is not None:
            timer.cancel()
        cut = text.rfind("\n") + 1
        if cut:
            self.sink.put_nowait(OutputChunk(stream=stream, data=text[:cut]))
        self._pending[stream] = text[cut:]
        if self._pending[stream]:
            loop = asyncio.get_running_loop()
            self._timers[stream] = loop.call_later(self.hold_partial_s, self._emit, stream)

    def _emit(self, stream: StreamName) -> None:
        self._timers.pop(stream, None)
        if self._pending[stream]:
            self.sink.put_nowait(OutputChunk(stream=stream, data=self._pending[stream]))
            self._pending[stream] = ""

    def flush(self) -> None:
        """Hand on everything held back (the run is over)."""
        for name in _STREAMS:
            if (timer := self._timers.pop(name, None)) is not None:
                timer.cancel()
            self._pending[name] += self._decoders[name].decode(b"", final=True)
            self._emit(name)


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
