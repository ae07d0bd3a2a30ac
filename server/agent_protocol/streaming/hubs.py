"""One in-memory :class:`RunStream` per run a client of this process follows, wherever the run executes.

When the run executes here, its task publishes into the hub directly. When it executes on another
process (or has not been claimed yet), a tail task reads the run's events from the event table
into the hub: woken by ``NOTIFY`` on Postgres, by this process's own event writer, and by one
poller that looks at all followed runs every ``tail_poll_s``. If this process claims the run
later, the tail stops and the run's task publishes into the same hub, numbering on from the last
event stored. A client that rejoins with a ``Last-Event-ID`` older than what a hub still buffers
reads its own private tail from the table.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

from server.agent_protocol.status import ACTIVE_STATUSES
from server.agent_protocol.storage.events import EventLog
from server.agent_protocol.storage.store import ProtocolStore
from server.agent_protocol.streaming.streams import RunStream, Subscription

__all__ = ["StreamHubs"]

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class _Tail:
    stream: RunStream
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


class StreamHubs:
    """The hubs of this process, by run id, and the tails that feed remote runs into them."""

    def __init__(
        self,
        store: ProtocolStore,
        events: EventLog,
        *,
        queue_size: int,
        replay_size: int,
        tail_poll_s: float,
        linger_s: float,
    ) -> None:
        self._store = store
        self._events = events
        self._queue_size = queue_size
        self._replay_size = replay_size
        self._poll_s = tail_poll_s
        # The poller wakes every tail with news; this wake-up is only a net under it. Kept long:
        # each wake-up costs a tail two queries, and hundreds of queued runs may be followed.
        self._safety_s = max(30.0, 10 * tail_poll_s)
        self._linger_s = linger_s
        self._hubs: dict[str, RunStream] = {}
        self._tails: dict[str, set[_Tail]] = {}
        self._poller: asyncio.Task[None] | None = None

    def _new(self, run_id: str, after: int) -> RunStream:
        return RunStream(run_id, queue_size=self._queue_size, replay_size=self._replay_size, after=after)

    async def for_execution(self, run_id: str, resuming: bool) -> RunStream:
        """The hub a run executing here publishes into (taking it over from its tail, if any).

        Args:
            run_id: The run.
            resuming: An earlier attempt ran elsewhere: number on from its last stored event.
        """
        hub = self._hubs.get(run_id)
        if hub is not None and hub.closed:
            hub = None
        tails = [t for t in self._tails.get(run_id, ()) if t.stream is hub]
        if not resuming and not tails:  # a fresh run nobody tails: no stored events to read
            if hub is None:
                hub = self._hubs[run_id] = self._new(run_id, 0)
            return hub
        if hub is None:
            hub = self._hubs[run_id] = self._new(run_id, await self._events.last_seq(run_id))
            return hub
        for tail in tails:
            if tail.task is not None:
                tail.task.cancel()
        for event in await self._events.read(run_id, hub.last_id, limit=100_000):
            hub.publish_event(event)  # what the tail had not read yet
        return hub

    def finished(self, run_id: str) -> None:
        """Close the hub of a run that ended here; keep it joinable in memory for ``linger_s``."""
        hub = self._hubs.get(run_id)
        if hub is not None:
            hub.close()
            asyncio.get_running_loop().call_later(self._linger_s, self._drop, run_id, hub)

    def _drop(self, run_id: str, hub: RunStream) -> None:
        if self._hubs.get(run_id) is hub:
            del self._hubs[run_id]

    def open(self, run_id: str) -> Subscription:
        """Subscribe to every event of a run just created (before it has any)."""
        hub = self._hubs.get(run_id)
        if hub is None:
            hub = self._hubs[run_id] = self._new(run_id, 0)
        return hub.subscribe(last_event_id="0")

    def follow(self, run_id: str) -> None:
        """Feed the hub of a run that executes elsewhere (or not yet) from the event table."""
        hub = self._hubs.get(run_id)
        if hub is not None and not hub.closed and not self._tails.get(run_id):
            self._start_tail(run_id, hub, shared=True)

    async def subscribe(
        self,
        run_id: str,
        *,
        modes: Collection[str] | None = None,
        last_event_id: str | None = None,
    ) -> Subscription:
        """Subscribe to a run's events, after ``last_event_id`` or only the new ones.

        Args:
            run_id: The run.
            modes: Stream modes to deliver (None: all).
            last_event_id: Replay the events after this id first (else only new events).
        """
        after: int | None = None
        if last_event_id is not None:
            try:
                after = int(last_event_id)
            except ValueError:
                after = 0
        hub = self._hubs.get(run_id)
        if hub is not None and (after is None or hub.covers(after)):
            return hub.subscribe(modes=modes, last_event_id=None if after is None else str(after))
        if after is None:
            after = await self._events.last_seq(run_id)
        stream = self._new(run_id, after)
        if hub is None:
            self._hubs[run_id] = stream  # shared by later subscribers
        sub = stream.subscribe(modes=modes)
        self._start_tail(run_id, stream, shared=hub is None)
        return sub

    def _start_tail(self, run_id: str, stream: RunStream, *, shared: bool) -> None:
        tail = _Tail(stream)
        self._tails.setdefault(run_id, set()).add(tail)
        tail.task = asyncio.create_task(self._tail(run_id, tail, shared), name=f"tail-{run_id}")
        if self._poller is None or self._poller.done():
            self._poller = asyncio.create_task(self._poll(), name="tail-poller")

    async def _poll(self) -> None:
        """Every ``tail_poll_s``, look at all followed runs at once; wake the tails with news.

        One pair of queries for every run followed here, instead of a pair per run: hundreds of
        clients waiting on queued runs must not load the database (``NOTIFY`` wakes tails sooner).
        """
        while self._tails:
            await asyncio.sleep(self._poll_s)
            try:
                progress = await self._events.progress(list(self._tails))
            except Exception:
                logger.exception("polling followed runs failed; retrying")
                continue
            for run_id, tails in list(self._tails.items()):
                status, last = progress.get(run_id, ("", 0))
                for tail in tails:
                    if status not in ACTIVE_STATUSES or last > tail.stream.last_id:
                        tail.wakeup.set()

    def wake(self, run_ids: Iterable[str]) -> None:
        """New events of these runs are in the table: wake their tails."""
        for run_id in run_ids:
            every = not run_id  # after a reconnect: notifications may have been missed
            for tails in self._tails.values() if every else [self._tails.get(run_id, set())]:
                for tail in tails:
                    tail.wakeup.set()

    async def _tail(self, run_id: str, tail: _Tail, shared: bool) -> None:
        stream = tail.stream
        try:
            while True:
                tail.wakeup.clear()
                record = await self._store.get_run(run_id)
                ended = record is None or record.status not in ACTIVE_STATUSES
                while True:  # events first committed, status after: read all once it ended
                    batch = await self._events.read(run_id, stream.last_id)
                    for event in batch:
                        stream.publish_event(event)
                    if len(batch) < 1000:
                        break
                if ended or stream.subscriber_count == 0:
                    break
                try:  # woken by the poller, NOTIFY or this process's writer; the timeout is a safety net
                    await asyncio.wait_for(tail.wakeup.wait(), self._safety_s)
                except TimeoutError:
                    pass
        except asyncio.CancelledError:
            if self._hubs.get(run_id) is stream:
                return  # the run is executing here now: its task publishes into the hub
            raise
        except Exception:
            logger.exception("run %s: tailing its events failed", run_id)
        finally:
            tails = self._tails.get(run_id)
            if tails is not None:
                tails.discard(tail)
                if not tails:
                    del self._tails[run_id]
        stream.close()
        if shared:
            self._drop(run_id, stream)

    async def close(self) -> None:
        """Stop every tail; idempotent."""
        tasks = [t.task for tails in self._tails.values() for t in tails if t.task is not None]
        if self._poller is not None:
            tasks.append(self._poller)
            self._poller = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for hub in self._hubs.values():
            hub.close()
        self._hubs.clear()
