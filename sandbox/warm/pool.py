"""The warm pool: pre-started single-use sandboxes in front of a backend.

:class:`WarmPool` is itself a :class:`~sandbox.base.Sandbox`. A run whose key (:mod:`sandbox.warm.keys`)
has an idle sandbox is handed to it (a *hit*): the sandbox's interpreter is already up, so the run
costs its program only. Otherwise (a *miss*: none idle, the sandbox could not take it, or one of
the run's files would shadow a preloaded module) and for runs no warm sandbox can serve (a command,
network, host pipes, an environment the interpreter reads at start), the run goes to the backend
exactly as without the pool. Each sandbox serves one run and is destroyed after it; nothing passes
from one run to the next.

A background task keeps each key at its target (:mod:`sandbox.warm.demand`), at most
``refill_concurrency`` starts at once, within the idle memory budget (PSS, measured when a sandbox
is ready; before the first measurement of a key, ``memory_estimate_mb``), and destroys sandboxes
idle longer than ``idle_ttl_s``. A key whose starts fail backs off (1 s, doubling, up to 60 s).
``close()`` stops it, destroys every idle sandbox, then closes the backend (which ends runs still
going), so nothing of the pool remains.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Hashable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self, cast

from sandbox.base import Check, OutputChunk, RunRequest, RunResult, Sandbox
from sandbox.config import SandboxSettings
from sandbox.errors import SandboxError
from sandbox.guard import clamp_limits
from sandbox.resources import TIERS
from sandbox.service import ServiceHandle
from sandbox.streaming import ChunkSink, stream_chunks
from sandbox.warm.base import Prestartable, WarmSandbox, WarmUnusableError
from sandbox.warm.demand import Idle, KeyState
from sandbox.warm.keys import WarmKey, shadows_preload, template_of

__all__ = ["KeyStats", "PoolStats", "WarmPool"]

logger = logging.getLogger(__name__)

_TICK_S = 1.0  # the maintainer looks at least this often (expiry, demand decay, back-off)
_CLOSE_WAIT_S = 10.0  # how long close() waits for killed runs to clean up before closing the backend
_ENTRIES = {"python": "main.py", "typescript": "main.ts"}


@dataclass(frozen=True, kw_only=True)
class KeyStats:
    """One key's idle sandboxes now."""

    label: str
    idle: int
    idle_memory_bytes: int
    starting: int
    target: int


@dataclass(frozen=True, kw_only=True)
class PoolStats:
    """The pool's counters since it opened, and its idle sandboxes now (``/metrics``)."""

    backend: str
    hits: int
    misses: Mapping[str, int]  # why: empty (none idle), unusable, shadowed
    cold: int  # runs no warm sandbox can serve (a command, network, ...)
    starts: int
    start_failures: int
    start_seconds_total: float
    expired: int
    over_budget: int
    idle: int
    idle_memory_bytes: int
    keys: tuple[KeyStats, ...]


class WarmPool:
    """A :class:`~sandbox.base.Sandbox` serving runs from pre-started sandboxes (see the module docstring)."""

    def __init__(
        self, inner: Sandbox, settings: SandboxSettings, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        """Wrap ``inner`` (which must be :class:`~sandbox.warm.base.Prestartable`); no I/O here."""
        if not isinstance(inner, Prestartable):
            raise TypeError(f"the {getattr(inner, 'name', inner)!r} backend cannot start sandboxes ahead")
        self.inner = inner
        self.name = inner.name
        self.settings = settings
        self.warm = settings.warm
        self._backend: Prestartable = inner
        self._clock = clock
        self._keys: dict[Hashable, KeyState] = {}
        self._wakeup = asyncio.Event()
        self._maintainer: asyncio.Task[None] | None = None
        self._starts: set[asyncio.Task[None]] = set()
        self._running: set[WarmSandbox] = set()  # handed a run that has not ended yet
        self._ran = asyncio.Event()
        self._closing: set[asyncio.Task[None]] = set()  # idle sandboxes being destroyed
        self._ending: set[asyncio.Task[None]] = set()  # used sandboxes cleaning up after their run
        self._closed = False
        self._hits = 0
        self._misses: collections.Counter[str] = collections.Counter()
        self._cold = 0
        self._started = 0
        self._start_failures = 0
        self._start_seconds = 0.0
        self._expired = 0
        self._over_budget = 0

    # --- the Sandbox protocol ----------------------------------------------------------------

    async def open(self) -> Self:
        """Open the backend, then start keeping the ``prewarm`` keys warm; idempotent."""
        await self.inner.open()
        if self._maintainer is None and not self._closed:
            for entry in self.warm.prewarm:
                self._pin(entry)
            self._maintainer = asyncio.ensure_future(self._maintain())
        return self

    async def preflight(self) -> list[Check]:
        """The backend's preflight."""
        return await self.inner.preflight()

    async def library_sets(self) -> Mapping[str, str | None]:
        """The backend's library sets."""
        return await self.inner.library_sets()

    async def run(self, request: RunRequest) -> RunResult:
        """Run ``request`` in a warm sandbox of its key if one is idle, else on the backend."""
        sandbox, state = self._take(request)
        try:
            if sandbox is not None:
                try:
                    return await self._handover(sandbox, request, None)
                except WarmUnusableError as exc:
                    self._unusable(exc)
            return await self.inner.run(request)
        finally:
            self._done(state)

    async def stream(self, request: RunRequest) -> AsyncIterator[OutputChunk]:
        """Stream ``request`` from a warm sandbox of its key if one is idle, else from the backend."""
        sandbox, state = self._take(request)
        try:
            if sandbox is not None:
                warm = sandbox
                try:
                    async with contextlib.aclosing(
                        stream_chunks(lambda q: self._handover(warm, request, q))
                    ) as out:
                        async for chunk in out:
                            yield chunk
                    return
                except WarmUnusableError as exc:  # raised before the sandbox saw anything of the run
                    self._unusable(exc)
            async with contextlib.aclosing(cast(Any, self.inner.stream(request))) as chunks:
                async for chunk in chunks:
                    yield chunk
        finally:
            self._done(state)

    async def start_service(self, request: RunRequest, *, port: int) -> ServiceHandle:
        """Services run on the backend (a warm sandbox serves one bounded run)."""
        return await self.inner.start_service(request, port=port)

    async def close(self) -> None:
        """Stop refilling, destroy every idle sandbox, then close the backend; idempotent."""
        if self._closed:
            return
        self._closed = True
        tasks = [*self._starts, *([self._maintainer] if self._maintainer else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        idle = [entry.sandbox for state in self._keys.values() for entry in state.idle]
        for state in self._keys.values():
            state.idle.clear()
        await asyncio.gather(*(self._destroy(sandbox) for sandbox in idle), *self._closing)
        # Runs still going on warm sandboxes end now, and clean up before the backend goes.
        await asyncio.gather(*(sandbox.kill() for sandbox in self._running), return_exceptions=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._all_ran(), timeout=_CLOSE_WAIT_S)
        await asyncio.gather(*self._ending, return_exceptions=True)
        await self.inner.close()

    async def _all_ran(self) -> None:
        while self._running:
            self._ran.clear()
            await self._ran.wait()

    async def __aenter__(self) -> Self:
        return await self.open()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def __getattr__(self, name: str) -> Any:
        # Backend-specific attributes (egress, uses_cgroups, ...) pass straight through.
        if name.startswith("_") or name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    async def ready(self, request: RunRequest, *, timeout_s: float = 60.0) -> bool:
        """Warm ``request``'s key now and wait until it has an idle sandbox; False if none in time.

        False at once when no warm sandbox can serve ``request`` (see :mod:`sandbox.warm.keys`).
        """
        key = self._backend.warm_key(request) if not self._closed else None
        if key is None:
            return False
        state = self._state(key, request)
        deadline = self._clock() + timeout_s
        while not any(entry.sandbox.alive() for entry in state.idle):
            if self._closed or self._clock() > deadline:
                return False
            state.note_wanted(self._clock())
            self._wakeup.set()
            await asyncio.sleep(0.005)
        return True

    async def settled(self) -> None:
        """Wait until nothing of the pool runs in the background: no start, no clean-up after a run."""
        while pending := [*self._starts, *self._ending, *self._closing]:
            await asyncio.gather(*pending, return_exceptions=True)

    # --- what the pool knows ----------------------------------------------------------------

    def idle_pids(self) -> set[int] | None:
        """Host processes of the idle sandboxes now; None while one is starting (blocking, for checks)."""
        if any(state.starting for state in self._keys.values()):
            return None
        return {pid for state in self._keys.values() for entry in state.idle for pid in entry.sandbox.pids()}

    def stats(self) -> PoolStats:
        """A snapshot of the counters and the idle sandboxes."""
        now = self._clock()
        keys = tuple(
            KeyStats(
                label=state.label,
                idle=len(state.idle),
                idle_memory_bytes=sum(entry.memory_bytes for entry in state.idle),
                starting=state.starting,
                target=state.target(now, self.warm),
            )
            for state in self._keys.values()
        )
        return PoolStats(
            backend=self.name,
            hits=self._hits,
            misses=dict(self._misses),
            cold=self._cold,
            starts=self._started,
            start_failures=self._start_failures,
            start_seconds_total=self._start_seconds,
            expired=self._expired,
            over_budget=self._over_budget,
            idle=sum(k.idle for k in keys),
            idle_memory_bytes=sum(k.idle_memory_bytes for k in keys),
            keys=keys,
        )

    # --- taking a sandbox --------------------------------------------------------------------

    def _take(self, request: RunRequest) -> tuple[WarmSandbox | None, KeyState | None]:
        """The idle sandbox ``request`` gets (None: it runs cold) and its key's state."""
        key = self._backend.warm_key(request) if not self._closed else None
        if key is None:
            self._cold += 1
            return None, None
        state = self._state(key, request)
        state.note_take(self._clock())
        self._wakeup.set()  # its target may have grown, and what it takes is to be replaced
        while state.idle:
            entry = state.idle.popleft()
            if not entry.sandbox.alive():
                self._dispose(entry.sandbox)
                continue
            if shadows_preload(request, entry.sandbox.preloaded):
                state.idle.appendleft(entry)  # still good for the next run
                self._misses["shadowed"] += 1
                return None, state
            return entry.sandbox, state
        self._misses["empty"] += 1
        return None, state

    def _done(self, state: KeyState | None) -> None:
        if state is not None:
            state.inflight -= 1

    def _unusable(self, exc: WarmUnusableError) -> None:
        logger.info("a warm sandbox could not take its run (%s); running it cold", exc)
        self._misses["unusable"] += 1

    async def _handover(self, sandbox: WarmSandbox, request: RunRequest, sink: ChunkSink | None) -> RunResult:
        """Hand ``request`` to ``sandbox``; a hit once it reached the sandbox (whatever came of it)."""
        self._running.add(sandbox)
        try:
            result = await sandbox.handover(request, sink)
        except WarmUnusableError:
            raise
        except BaseException:
            self._hits += 1
            raise
        finally:
            self._running.discard(sandbox)
            self._ran.set()
            self._track(self._ending, sandbox.ended())
        self._hits += 1
        return result

    def _state(self, key: Hashable, request: RunRequest) -> KeyState:
        state = self._keys.get(key)
        if state is None:
            label = key.label if isinstance(key, WarmKey) else str(key)
            state = self._keys[key] = KeyState(key=key, label=label, template=template_of(request))
        return state

    def _pin(self, entry: str) -> None:
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
            logger.warning("warm pool: %s cannot be kept warm on the %s backend here", entry, self.name)
            return
        self._state(key, template).min_idle = self.warm.min_idle

    # --- keeping keys warm -------------------------------------------------------------------

    async def _maintain(self) -> None:
        """Expire, refill, sleep until woken (a run took a sandbox, a start ended) or a tick passes."""
        while True:
            self._wakeup.clear()
            now = self._clock()
            self._expire(now)
            self._refill(now)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout=_TICK_S)

    def _expire(self, now: float) -> None:
        for key, state in list(self._keys.items()):
            while state.idle and (
                now - state.idle[0].ready_at > self.warm.idle_ttl_s or not state.idle[0].sandbox.alive()
            ):
                entry = state.idle.popleft()
                if entry.sandbox.alive():
                    self._expired += 1
                self._dispose(entry.sandbox)
            if state.forgotten(now, self.warm):
                del self._keys[key]

    def _budget_left(self) -> int:
        used = 0
        for state in self._keys.values():
            used += sum(entry.memory_bytes for entry in state.idle)
            used += state.starting * self._estimate(state)
        return self.warm.memory_budget_mb * 1024 * 1024 - used

    def _estimate(self, state: KeyState) -> int:
        known = state.memory_bytes
        return known if known is not None else self.warm.memory_estimate_mb * 1024 * 1024

    def _refill(self, now: float) -> None:
        wanting = [
            (state.target(now, self.warm) - len(state.idle) - state.starting, state)
            for state in self._keys.values()
            if state.backoff_until <= now
        ]
        for deficit, state in sorted(wanting, key=lambda pair: -pair[0]):
            for _ in range(deficit):
                if len(self._starts) >= self.warm.refill_concurrency:
                    return
                if self._estimate(state) > self._budget_left():
                    break
                state.starting += 1  # counted at once: the budget and the deficit see it
                task = asyncio.ensure_future(self._start(state))
                self._starts.add(task)
                task.add_done_callback(self._starts.discard)

    async def _start(self, state: KeyState) -> None:
        """Start one sandbox of ``state``'s key (counted in ``starting`` by the caller) and keep it."""
        began = self._clock()
        try:
            sandbox = await self._backend.prestart(state.template)
        except SandboxError as exc:
            state.starting -= 1
            self._start_failures += 1
            state.note_failure(self._clock())
            logger.warning("warm pool: a %s sandbox failed to start (%s)", state.label, exc)
            self._wakeup.set()
            return
        except BaseException:
            state.starting -= 1
            raise
        seconds = self._clock() - began
        try:
            measured = await sandbox.measure() if state.should_measure() else None
        finally:
            state.starting -= 1
        self._started += 1
        self._start_seconds += seconds
        state.note_start(seconds, measured)
        memory = measured if measured is not None else self._estimate(state)
        if self._closed or len(state.idle) >= self.warm.max_idle_per_key:
            self._dispose(sandbox)
        elif memory > self._budget_left():
            self._over_budget += 1
            logger.info("warm pool: a %s sandbox (%d kB) is over the idle budget", state.label, memory >> 10)
            self._dispose(sandbox)
        else:
            state.idle.append(Idle(sandbox=sandbox, ready_at=self._clock(), memory_bytes=memory))
        self._wakeup.set()

    def _dispose(self, sandbox: WarmSandbox) -> None:
        """Destroy ``sandbox`` in the background (``close`` waits for it)."""
        self._track(self._closing, self._destroy(sandbox))

    @staticmethod
    def _track(tasks: set[asyncio.Task[None]], work: Coroutine[None, None, None]) -> None:
        task = asyncio.ensure_future(work)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def _destroy(self, sandbox: WarmSandbox) -> None:
        try:
            await sandbox.destroy()
        except Exception:  # logged, never raised: one bad sandbox must not stop the others' removal
            logger.exception("warm pool: destroying an idle sandbox failed")
