"""The warm pool's background half: each key's idle sandboxes kept at its target, within budget.

A task (:meth:`Keeper.maintain`) wakes when a run took a sandbox or a start ended, and at least every
second: it destroys sandboxes idle longer than ``idle_ttl_s`` (and forgets keys nobody wants), then
starts sandboxes for the keys below their target (:mod:`sandbox.warm.demand`), at most
``refill_concurrency`` at once, within the idle memory budget (PSS; a key's first starts and one in
16 are measured, the others count as the key's estimate; before any measurement,
``memory_estimate_mb``). A key whose starts fail backs off (1 s, doubling, up to 60 s). A sandbox
that becomes ready while a run of its key waits for one (:meth:`KeyState.hand_over`) goes to that
run at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Hashable

from sandbox.base import RunRequest
from sandbox.config import SandboxSettings
from sandbox.errors import SandboxError
from sandbox.guard import clamp_limits
from sandbox.resources import TIERS
from sandbox.warm.base import Prestartable, WarmSandbox
from sandbox.warm.demand import Idle, KeyState
from sandbox.warm.keys import WarmKey, template_of
from sandbox.warm.stats import KeyStats

__all__ = ["Keeper", "Signal"]

logger = logging.getLogger(__name__)

_TICK_S = 1.0  # the maintainer looks at least this often (expiry, demand decay, back-off)
_ENTRIES = {"python": "main.py", "typescript": "main.ts"}


class Signal:
    """Wakes whoever waits (at most ``timeout_s``); a ``set`` while nobody waits wakes the next wait.

    Why not ``asyncio.wait_for(event.wait(), ...)``: on Python 3.11 a cancel arriving as the event is
    set can leave the waiting task hanging in ``wait_for`` (the pool's close then never returns).
    """

    def __init__(self) -> None:
        self._pending = False
        self._waiter: asyncio.Future[None] | None = None

    def set(self) -> None:
        """Wake the waiter, or the next ``wait``."""
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
        else:
            self._pending = True

    async def wait(self, timeout_s: float) -> None:
        """Return when set (now, if set meanwhile) or after ``timeout_s``."""
        if self._pending:
            self._pending = False
            return
        loop = asyncio.get_running_loop()
        self._waiter = waiter = loop.create_future()

        def wake() -> None:
            if not waiter.done():
                waiter.set_result(None)

        timer = loop.call_later(max(timeout_s, 0.0), wake)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None


class Keeper:
    """Each key's state, and the background work that keeps its idle sandboxes. See the module docstring."""

    def __init__(
        self, backend: Prestartable, settings: SandboxSettings, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.settings = settings
        self.warm = settings.warm
        self._backend = backend
        self._clock = clock
        self.keys: dict[Hashable, KeyState] = {}
        self.wakeup = Signal()
        self.closed = False
        self.starts: set[asyncio.Task[None]] = set()
        self.closing: set[asyncio.Task[None]] = set()  # idle sandboxes being destroyed
        self.started = 0
        self.start_failures = 0
        self.start_seconds = 0.0
        self.expired = 0
        self.over_budget = 0

    def state(self, key: Hashable, request: RunRequest) -> KeyState:
        """The state of ``key`` (made from ``request`` the first time it is seen)."""
        state = self.keys.get(key)
        if state is None:
            label = key.label if isinstance(key, WarmKey) else str(key)
            state = self.keys[key] = KeyState(key=key, label=label, template=template_of(request))
        return state

    def pin(self, entry: str) -> None:
        """Keep ``language/library_set/tier`` at ``min_idle`` from now on."""
        language, library_set, tier = entry.split("/")
        template = RunRequest(
            files={_ENTRIES[language]: ""},
            language=language,  # type: ignore[arg-type]
            entry=_ENTRIES[language],
            library_set=library_set,
            limits=clamp_limits(TIERS[tier], self.settings.max_limits),  # type: ignore[index]
        )
        key = self._backend.warm_key(template)
        if key is None:
            logger.warning(
                "warm pool: %s cannot be kept warm on the %s backend here", entry, self._backend.name
            )
            return
        self.state(key, template).min_idle = self.warm.min_idle

    def key_stats(self) -> tuple[KeyStats, ...]:
        """Each key's idle sandboxes now."""
        now = self._clock()
        return tuple(
            KeyStats(
                label=state.label,
                idle=len(state.idle),
                idle_memory_bytes=sum(entry.memory_bytes for entry in state.idle),
                starting=state.starting,
                target=state.target(now, self.warm),
            )
            for state in self.keys.values()
        )

    async def close(self) -> None:
        """Stop the background work and destroy every idle sandbox."""
        self.closed = True
        tasks = list(self.starts)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        idle = [entry.sandbox for state in self.keys.values() for entry in state.idle]
        for state in self.keys.values():
            state.idle.clear()
            while state.hand_over(None):  # runs waiting for a start run cold
                pass
        await asyncio.gather(*(self._destroy(sandbox) for sandbox in idle), *self.closing)

    async def maintain(self) -> None:
        """Expire, refill, sleep until woken (a run took a sandbox, a start ended) or a tick passes."""
        while True:
            now = self._clock()
            self._expire(now)
            self.refill(now)
            await self.wakeup.wait(_TICK_S)

    def _expire(self, now: float) -> None:
        for key, state in list(self.keys.items()):
            for entry in list(state.idle):
                if not entry.sandbox.alive():
                    self.died(state, entry.sandbox)
                elif now - entry.ready_at > self.warm.idle_ttl_s:
                    state.idle.remove(entry)
                    self.expired += 1
                    self.dispose(entry.sandbox)
            if state.forgotten(now, self.warm):
                del self.keys[key]

    def died(self, state: KeyState, sandbox: WarmSandbox) -> None:
        """``sandbox`` ended while idle: drop it, and back the key off as after a failed start.

        Why back off: sandboxes that die as soon as they are ready would otherwise be replaced
        as fast as they can start.
        """
        for entry in [entry for entry in state.idle if entry.sandbox is sandbox]:
            state.idle.remove(entry)
        self.start_failures += 1
        state.note_failure(self._clock())
        logger.warning("warm pool: a %s sandbox ended while idle", state.label)
        self.dispose(sandbox)

    def _budget_left(self) -> int:
        used = 0
        for state in self.keys.values():
            used += sum(entry.memory_bytes for entry in state.idle)
            used += state.starting * self._estimate(state)
        return self.warm.memory_budget_mb * 1024 * 1024 - used

    def _estimate(self, state: KeyState) -> int:
        known = state.memory_bytes
        return known if known is not None else self.warm.memory_estimate_mb * 1024 * 1024

    def refill(self, now: float) -> None:
        """Start sandboxes for the keys below their target now (also run by :meth:`maintain`)."""
        wanting = [
            (state.target(now, self.warm) - len(state.idle) - state.unclaimed_starts(), state)
            for state in self.keys.values()
            if state.backoff_until <= now
        ]
        for deficit, state in sorted(wanting, key=lambda pair: -pair[0]):
            for _ in range(deficit):
                if len(self.starts) >= self.warm.refill_concurrency:
                    return
                if self._estimate(state) > self._budget_left():
                    break
                state.starting += 1  # counted at once: the budget and the deficit see it
                task = asyncio.ensure_future(self._start(state))
                self.starts.add(task)
                task.add_done_callback(self.starts.discard)

    async def _start(self, state: KeyState) -> None:
        """Start one sandbox of ``state``'s key (counted in ``starting`` by the caller) and keep it."""
        began = self._clock()
        try:
            sandbox = await self._backend.prestart(state.template)
        except SandboxError as exc:
            state.starting -= 1
            self.start_failures += 1
            state.note_failure(self._clock())
            logger.warning("warm pool: a %s sandbox failed to start (%s)", state.label, exc)
            state.hand_over(None)  # a run waiting for it runs cold now
            self.wakeup.set()
            return
        except BaseException:
            state.starting -= 1
            state.hand_over(None)
            raise
        seconds = self._clock() - began
        try:
            measured = await sandbox.measure() if state.should_measure() else None
        finally:
            state.starting -= 1
        self.started += 1
        self.start_seconds += seconds
        state.note_start(seconds, measured)
        memory = measured if measured is not None else self._estimate(state)
        if self.closed:
            state.hand_over(None)
            self.dispose(sandbox)
        elif state.hand_over(sandbox):  # a run waits for it: no idle time, no idle memory
            pass
        elif len(state.idle) >= self.warm.max_idle_per_key:
            self.dispose(sandbox)
        elif memory > self._budget_left():
            self.over_budget += 1
            logger.info("warm pool: a %s sandbox (%d kB) is over the idle budget", state.label, memory >> 10)
            self.dispose(sandbox)
        else:
            state.idle.append(Idle(sandbox=sandbox, ready_at=self._clock(), memory_bytes=memory))
        self.wakeup.set()

    def keep(self, state: KeyState, sandbox: WarmSandbox) -> None:
        """Put ``sandbox`` back first in ``state``'s idle ones (a run did not use it after all)."""
        if self.closed or not sandbox.alive():
            self.dispose(sandbox)
            return
        state.idle.appendleft(
            Idle(sandbox=sandbox, ready_at=self._clock(), memory_bytes=self._estimate(state))
        )

    def dispose(self, sandbox: WarmSandbox) -> None:
        """Destroy ``sandbox`` in the background (``close`` waits for it)."""
        self.track(self.closing, self._destroy(sandbox))

    @staticmethod
    def track(tasks: set[asyncio.Task[None]], work: Coroutine[None, None, None]) -> None:
        task = asyncio.ensure_future(work)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def _destroy(self, sandbox: WarmSandbox) -> None:
        try:
            await sandbox.destroy()
        except Exception:  # logged, never raised: one bad sandbox must not stop the others' removal
            logger.exception("warm pool: destroying an idle sandbox failed")
