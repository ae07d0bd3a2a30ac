"""Fan-out of one run's events to its stream subscribers.

The run task publishes without ever waiting: each subscriber has a bounded buffer. When a slow
client lets its buffer fill, the buffer is dropped and replaced by a ``notice`` event and the
latest ``values`` event, so the client resyncs to the current state while the run goes on at full
speed. A short replay buffer lets a client that reconnects with ``Last-Event-ID`` catch up.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Collection

from server.agent_protocol.serde import dumpb
from server.agent_protocol.storage.records import RunEvent

__all__ = ["RunEvent", "RunStream", "Subscription"]

logger = logging.getLogger(__name__)


def _wanted(event: RunEvent, modes: Collection[str] | None) -> bool:
    if modes is None or event.event in ("metadata", "error", "notice"):
        return True
    mode = event.mode
    if mode == "messages":
        return "messages" in modes or "messages-tuple" in modes
    return mode in modes


class Subscription:
    """One reader of a run's events; iterate it to get events until the run ends."""

    def __init__(self, stream: RunStream, maxsize: int, modes: Collection[str] | None) -> None:
        self._stream = stream
        self._maxsize = maxsize
        self._modes = set(modes) if modes else None
        self._items: deque[RunEvent] = deque()
        self._wakeup = asyncio.Event()
        self._closed = False
        self.dropped = 0
        self._notice_dropped = 0

    def _push(self, event: RunEvent) -> None:
        if not _wanted(event, self._modes):
            return
        if len(self._items) >= self._maxsize:
            self._resync(event)
        else:
            self._items.append(event)
        self._wakeup.set()

    def _resync(self, event: RunEvent) -> None:
        """Drop the backlog; keep a notice and the latest state so the client can still render it."""
        dropped = len(self._items) + 1
        if self._items and self._items[0].event == "notice":  # still behind: one notice counts it all
            dropped += self._notice_dropped - 1
        first = self.dropped == 0
        self.dropped += len(self._items) + 1
        self._notice_dropped = dropped
        self._items.clear()
        latest = self._stream.latest_values
        notice = {
            "type": "overflow",
            "dropped": dropped,
            "message": "client too slow: events dropped, resynced to the latest state",
        }
        self._items.append(RunEvent(event.id, "notice", dumpb(notice)))
        if latest is not None and _wanted(latest, self._modes):
            self._items.append(latest)
        log = logger.warning if first else logger.debug
        log("run %s: slow subscriber, dropped %d events", self._stream.run_id, dropped)

    def _close(self) -> None:
        self._closed = True
        self._wakeup.set()

    def __aiter__(self) -> AsyncIterator[RunEvent]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[RunEvent]:
        async for batch in self.batches():
            for event in batch:
                yield event

    async def batches(self, window_s: float = 0.0, limit: int = 64) -> AsyncIterator[list[RunEvent]]:
        """The events in batches: all those buffered when the reader comes (at most ``limit``).

        Why: an SSE response writes each batch with one socket write (a system call, and a wake-up
        of the client), and events come in bursts (a step's ``values`` and ``updates``, tokens
        read in one chunk from the model). After the first batch, the reader waits ``window_s``
        for the rest of a burst before it takes one (what an event may be delayed by).
        """
        first = True
        try:
            while True:
                if self._items:
                    if not first and window_s > 0 and len(self._items) < limit and not self._closed:
                        await asyncio.sleep(window_s)
                    first = False
                    count = min(limit, len(self._items))
                    yield [self._items.popleft() for _ in range(count)]
                    continue
                if self._closed:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
        finally:
            self._stream.unsubscribe(self)


class RunStream:
    """The event hub of one run: publish from the run task, subscribe from HTTP handlers."""

    def __init__(self, run_id: str, *, queue_size: int, replay_size: int, after: int = 0) -> None:
        self.run_id = run_id
        self._queue_size = queue_size
        self._replay: deque[RunEvent] = deque(maxlen=replay_size)
        self._subscribers: set[Subscription] = set()
        self._next_id = after + 1
        self._floor = after  # events with an id up to this one are not in the replay buffer
        self.latest_values: RunEvent | None = None
        self.closed = False

    @property
    def last_id(self) -> int:
        """Id of the last event published (or of the last one before this hub started)."""
        return self._next_id - 1

    def covers(self, after: int) -> bool:
        """Whether the replay buffer holds every event after ``after`` (else read the event table)."""
        return after >= self._floor

    def publish(self, event: str, data: object) -> RunEvent:
        """Send an event to every subscriber; never blocks."""
        item = RunEvent(self._next_id, event, data if isinstance(data, bytes) else dumpb(data))
        self.publish_event(item)
        return item

    def publish_event(self, item: RunEvent) -> None:
        """Send an already numbered event (one read back from the event table); never blocks."""
        if item.id < self._next_id:
            return  # already seen
        self._next_id = item.id + 1
        if item.mode == "values":
            self.latest_values = item
        if self._replay.maxlen is not None and len(self._replay) == self._replay.maxlen:
            self._floor = self._replay[0].id if self._replay else item.id
        self._replay.append(item)
        for sub in list(self._subscribers):
            sub._push(item)

    def subscribe(
        self, *, modes: Collection[str] | None = None, last_event_id: str | None = None
    ) -> Subscription:
        """Start reading new events; with ``last_event_id``, first replay the buffered ones after it."""
        sub = Subscription(self, self._queue_size, modes)
        if last_event_id is not None:
            try:
                after = int(last_event_id)
            except ValueError:
                after = 0
            self.replay_into(sub, after)
        if self.closed:
            sub._close()
        else:
            self._subscribers.add(sub)
        return sub

    def replay_into(self, sub: Subscription, after: int) -> None:
        """Push the buffered events after ``after`` to ``sub``."""
        for item in self._replay:
            if item.id > after:
                sub._push(item)

    def unsubscribe(self, sub: Subscription) -> None:
        """Forget a subscriber (called when its reader goes away)."""
        self._subscribers.discard(sub)

    @property
    def subscriber_count(self) -> int:
        """How many readers are attached."""
        return len(self._subscribers)

    def close(self) -> None:
        """End every subscription after its buffered events; idempotent."""
        self.closed = True
        for sub in list(self._subscribers):
            sub._close()
        self._subscribers.clear()
