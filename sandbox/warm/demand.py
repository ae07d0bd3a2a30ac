"""One key's share of the warm pool: its idle sandboxes, the ones starting, and how many it wants.

How many a key wants (:meth:`KeyState.target`): the most of its runs that were going at once in the
last ``demand_window_s`` (each took a sandbox), plus the runs that arrive while one sandbox starts
(arrival rate x start time), at most ``max_idle_per_key``; a ``prewarm`` key at least ``min_idle``;
a key with no run in ``idle_ttl_s`` none at all.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Hashable
from dataclasses import dataclass, field

from sandbox.base import RunRequest
from sandbox.config import WarmSettings
from sandbox.warm.base import WarmSandbox

__all__ = ["Idle", "KeyState"]

_SMOOTHING = 0.3  # weight of a new sample in the running estimates (start time, idle memory)
_MEASURE_FIRST, _MEASURE_EVERY = 4, 16


@dataclass
class Idle:
    """An idle sandbox, when it became ready, and its memory (measured, or its key's estimate)."""

    sandbox: WarmSandbox
    ready_at: float
    memory_bytes: int


@dataclass(eq=False)
class KeyState:
    """What the pool keeps and knows for one key."""

    key: Hashable
    label: str
    template: RunRequest
    min_idle: int = 0  # > 0 for prewarm keys
    idle: collections.deque[Idle] = field(default_factory=collections.deque)
    starting: int = 0
    # Runs that found no idle sandbox and wait for one being started (each for the next ready).
    waiters: collections.deque[asyncio.Future[WarmSandbox | None]] = field(default_factory=collections.deque)
    inflight: int = 0
    last_take: float | None = None
    start_s: float | None = None  # running estimate of a start (spawn to ready)
    memory_bytes: int | None = None  # running estimate of an idle sandbox's PSS
    measured: int = 0  # starts whose memory was measured
    started: int = 0
    failures: int = 0  # starts failed in a row
    backoff_until: float = 0.0
    # Arrival times of the latest runs (enough to see a burst), and the (time, runs in flight) of
    # those no later one had more in flight than: the window's peak is the first, no scan needed
    # on each wake-up (the pool wakes its keeper on every run).
    _takes: collections.deque[float] = field(default_factory=lambda: collections.deque(maxlen=256))
    _peaks: collections.deque[tuple[float, int]] = field(default_factory=collections.deque)

    def note_take(self, now: float) -> None:
        """A run of this key arrived (it is now in flight)."""
        self.inflight += 1
        self.last_take = now
        self._takes.append(now)
        while self._peaks and self._peaks[-1][1] <= self.inflight:
            self._peaks.pop()
        self._peaks.append((now, self.inflight))

    def unclaimed_starts(self) -> int:
        """Sandboxes being started that no waiting run has claimed yet."""
        return self.starting - sum(1 for waiter in self.waiters if not waiter.done())

    def hand_over(self, sandbox: WarmSandbox | None) -> bool:
        """Give ``sandbox`` (None: the start failed) to the longest-waiting run; False if none waits."""
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(sandbox)
                return True
        return False

    def note_wanted(self, now: float) -> None:
        """Someone asked for this key to be warm (``WarmPool.ready``): one sandbox is wanted."""
        self.last_take = now

    def should_measure(self) -> bool:
        """Whether to measure the next ready sandbox's memory: the first few, then one in 16.

        Why not each: reading ``smaps_rollup`` of its processes costs ~0.4 ms of CPU, a few
        percent of a small run; sandboxes of one key hold about the same.
        """
        return self.measured < _MEASURE_FIRST or self.started % _MEASURE_EVERY == 0

    def note_start(self, seconds: float, memory_bytes: int | None) -> None:
        """A sandbox of this key became ready after ``seconds``, holding ``memory_bytes`` (if measured)."""
        self.failures = 0
        self.started += 1
        old_s = self.start_s
        self.start_s = seconds if old_s is None else old_s + _SMOOTHING * (seconds - old_s)
        if memory_bytes is not None:
            self.measured += 1
            old = self.memory_bytes
            self.memory_bytes = memory_bytes if old is None else int(old + _SMOOTHING * (memory_bytes - old))

    def note_failure(self, now: float) -> None:
        """A start failed: wait 1, 2, 4 ... 60 s before the next."""
        self.failures += 1
        self.backoff_until = now + min(60.0, 2.0 ** (self.failures - 1))

    def target(self, now: float, warm: WarmSettings) -> int:
        """How many idle (or starting) sandboxes this key should have now."""
        while self._takes and self._takes[0] < now - warm.demand_window_s:
            self._takes.popleft()
        while self._peaks and (not self._takes or self._peaks[0][0] < self._takes[0]):
            self._peaks.popleft()
        recent = self.last_take is not None and now - self.last_take <= warm.idle_ttl_s
        want = 0
        if self._takes:
            peak = self._peaks[0][1]
            span = max(now - self._takes[0], 1.0)  # a burst counts at its own pace
            rate = (len(self._takes) - 1) / span  # arrivals per second (one alone: none yet)
            want = peak + round(rate * (self.start_s or 0.0))
        elif recent:
            want = 1
        return min(max(want, self.min_idle), warm.max_idle_per_key)

    def forgotten(self, now: float, warm: WarmSettings) -> bool:
        """True when the key holds nothing and is wanted by nobody (the pool may drop its state)."""
        stale = self.last_take is None or now - self.last_take > warm.idle_ttl_s
        busy = self.idle or self.starting or self.inflight or self.waiters
        return stale and not self.min_idle and not busy
