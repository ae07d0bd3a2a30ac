"""Each hosted app's output (stdout and stderr), bounded in memory, for reading and following.

Why the manager keeps its own log rather than reading the service handle's: an app's service comes
and goes (wake on request, restart, idle stop), and its log should read as one story across them,
with a line where each start and exit happened. Positions are absolute character offsets since
the log was created, so a follower that fell behind the bounded window learns how much it missed.
"""

from __future__ import annotations

import asyncio
import collections
from dataclasses import dataclass

__all__ = ["LOG_CHARS", "AppLog", "LogChunk"]

LOG_CHARS = 256 * 1024  # the newest output kept per app


@dataclass(frozen=True)
class LogChunk:
    """A piece of output: ``stdout``, ``stderr`` or ``platform`` (start / exit lines), and its text."""

    stream: str
    data: str


class AppLog:
    """A bounded ring of one app's output with absolute positions and a wake-up for followers."""

    def __init__(self, max_chars: int = LOG_CHARS) -> None:
        self.max_chars = max_chars
        self._chunks: collections.deque[LogChunk] = collections.deque()
        self._chars = 0
        self.end = 0
        """Characters ever written (the position just after the newest character)."""
        self._changed = asyncio.Event()
        self.closed = False

    @property
    def start(self) -> int:
        """Position of the oldest character still kept."""
        return self.end - self._chars

    def append(self, stream: str, data: str) -> None:
        """Add output (oldest chunks go once over ``max_chars``; a huge chunk keeps its tail)."""
        if not data:
            return
        if len(data) > self.max_chars:
            self.end += len(data) - self.max_chars
            data = data[-self.max_chars :]
        self._chunks.append(LogChunk(stream, data))
        self._chars += len(data)
        self.end += len(data)
        while self._chars > self.max_chars:
            self._chars -= len(self._chunks.popleft().data)
        self._wake()

    def text(self) -> str:
        """Everything kept, streams interleaved."""
        return "".join(c.data for c in self._chunks)

    def tail(self, chars: int) -> str:
        """The newest ``chars`` characters."""
        return self.text()[-chars:] if chars > 0 else ""

    def since(self, position: int) -> tuple[list[LogChunk], int, int]:
        """Chunks written after ``position``: (chunks, characters missed, new position).

        A position older than :attr:`start` gets everything kept and the number of characters that
        fell out of the window in between.
        """
        missed = max(0, self.start - position)
        skip = max(0, position - self.start)
        found: list[LogChunk] = []
        for chunk in self._chunks:
            if skip >= len(chunk.data):
                skip -= len(chunk.data)
                continue
            found.append(LogChunk(chunk.stream, chunk.data[skip:]) if skip else chunk)
            skip = 0
        return found, missed, self.end

    async def wait(self, position: int, timeout_s: float) -> None:
        """Return once something was written after ``position``, the log closed, or the timeout passed."""
        if self.end > position or self.closed:
            return
        try:
            await asyncio.wait_for(self._changed.wait(), timeout_s)
        except TimeoutError:
            pass

    def close(self) -> None:
        """The app is gone: followers stop."""
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
