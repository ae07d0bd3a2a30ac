"""The warm pool: pre-started single-use sandboxes in front of a backend.

:class:`WarmPool` is itself a :class:`~sandbox.base.Sandbox`. A run whose key (:mod:`sandbox.warm.keys`)
has an idle sandbox is handed to it (a *hit*): the sandbox's interpreter is already up, so the run
costs its program only. With none idle but one of its key starting (for an earlier run's refill,
or for this run), the run waits for that one (a hit too, counted as *waited*). Otherwise (a *miss*:
nothing idle or starting, the sandbox could not take it, its start failed or hung, or one of the
run's files would shadow a preloaded module) and for runs no warm sandbox can serve (a command,
network, host pipes, an environment the interpreter reads at start), the run goes to the backend
exactly as without the pool. Each sandbox serves one run and is destroyed after it; nothing passes
from one run to the next.

A background task (:mod:`sandbox.warm.keeper`) keeps each key's idle sandboxes at its target, within
the idle memory budget, and destroys those idle too long. ``close()`` stops it, destroys every idle
sandbox, ends the runs still going on warm sandboxes and waits for their clean-up, then closes the
backend, so nothing of the pool remains.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from types import TracebackType
from typing import Any, Self, cast

from sandbox.base import Check, OutputChunk, RunRequest, RunResult, Sandbox
from sandbox.config import SandboxSettings
from sandbox.service import ServiceHandle
from sandbox.streaming import ChunkSink, stream_chunks
from sandbox.warm.base import Prestartable, WarmSandbox, WarmUnusableError
from sandbox.warm.demand import KeyState
from sandbox.warm.keeper import Keeper, Signal
from sandbox.warm.keys import shadows_preload
from sandbox.warm.stats import PoolStats

__all__ = ["WarmPool"]

logger = logging.getLogger(__name__)

_CLOSE_WAIT_S = 10.0  # how long close() waits for killed runs to clean up before closing the backend
_WAIT_FACTOR = 4  # a run waits for a start at most this many times a start's usual length (>= 1 s)


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
        self._keeper = Keeper(inner, settings, clock=clock)
        self._maintainer: asyncio.Task[None] | None = None
        self._running: set[WarmSandbox] = set()  # handed a run that has not ended yet
        self._ran = Signal()
        self._ending: set[asyncio.Task[None]] = set()  # used sandboxes cleaning up after their run
        self._closed = False
        self._hits = 0
        self._misses: collections.Counter[str] = collections.Counter()
        self._cold = 0
        self._waited = 0

    # --- the Sandbox protocol ----------------------------------------------------------------

    async def open(self) -> Self:
        """Open the backend, then start keeping the ``prewarm`` keys warm; idempotent."""
        await self.inner.open()
        if self._maintainer is None and not self._closed:
            for entry in self.warm.prewarm:
                self._keeper.pin(entry)
            self._maintainer = asyncio.ensure_future(self._keeper.maintain())
        return self

    async def preflight(self) -> list[Check]:
        """The backend's preflight."""
        return await self.inner.preflight()

    async def library_sets(self) -> Mapping[str, str | None]:
        """The backend's library sets."""
        return await self.inner.library_sets()

    async def run(self, request: RunRequest) -> RunResult:
        """Run ``request`` in a warm sandbox of its key (idle, or about to be), else on the backend."""
        state = self._arrive(request)
        try:
            sandbox = await self._take(state, request)
            if sandbox is not None:
                try:
                    return await self._handover(sandbox, request, None)
                except WarmUnusableError as exc:
                    self._unusable(exc)
            return await self.inner.run(request)
        finally:
            self._done(state)

    async def stream(self, request: RunRequest) -> AsyncIterator[OutputChunk]:
        """Stream ``request`` from a warm sandbox of its key (idle, or about to be), else from the backend."""
        state = self._arrive(request)
        try:
            sandbox = await self._take(state, request)
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
        if self._maintainer is not None:
            self._maintainer.cancel()
            await asyncio.gather(self._maintainer, return_exceptions=True)
        await self._keeper.close()
        # Runs still going on warm sandboxes end now, and clean up before the backend goes.
        await asyncio.gather(*(sandbox.kill() for sandbox in self._running), return_exceptions=True)
        deadline = self._clock() + _CLOSE_WAIT_S
        while self._running and self._clock() < deadline:
            await self._ran.wait(deadline - self._clock())
        await asyncio.gather(*self._ending, return_exceptions=True)
        await self.inner.close()

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
        state = self._keeper.state(key, request)
        deadline = self._clock() + timeout_s
        while not any(entry.sandbox.alive() for entry in state.idle):
            if self._closed or self._clock() > deadline:
                return False
            state.note_wanted(self._clock())
            self._keeper.wakeup.set()
            await asyncio.sleep(0.005)
        return True

    async def settled(self) -> None:
        """Wait until nothing of the pool runs in the background: no start, no clean-up after a run."""
        while pending := [*self._keeper.starts, *self._ending, *self._keeper.closing]:
            await asyncio.gather(*pending, return_exceptions=True)

    # --- what the pool knows ----------------------------------------------------------------

    def idle_pids(self) -> set[int] | None:
        """Host processes of the idle sandboxes now; None while one is starting (blocking, for checks).

        Also the backend's own processes behind them, if it has any (``warm_helper_pids``: the
        ``local`` backend's fork servers), which its ``close()`` ends.
        """
        keys = self._keeper.keys.values()
        if any(state.starting for state in keys):
            return None
        helpers = getattr(self.inner, "warm_helper_pids", None)
        found = set(helpers()) if callable(helpers) else set()
        return found | {pid for state in keys for entry in state.idle for pid in entry.sandbox.pids()}

    def stats(self) -> PoolStats:
        """A snapshot of the counters and the idle sandboxes."""
        keeper = self._keeper
        keys = keeper.key_stats()
        return PoolStats(
            backend=self.name,
            hits=self._hits,
            waited=self._waited,
            misses=dict(self._misses),
            cold=self._cold,
            starts=keeper.started,
            start_failures=keeper.start_failures,
            start_seconds_total=keeper.start_seconds,
            expired=keeper.expired,
            over_budget=keeper.over_budget,
            idle=sum(k.idle for k in keys),
            idle_memory_bytes=sum(k.idle_memory_bytes for k in keys),
            keys=keys,
        )

    # --- taking a sandbox --------------------------------------------------------------------

    def _arrive(self, request: RunRequest) -> KeyState | None:
        """Note a run of ``request``'s key (None: only a cold start can serve it)."""
        key = self._backend.warm_key(request) if not self._closed else None
        if key is None:
            self._cold += 1
            return None
        state = self._keeper.state(key, request)
        state.note_take(self._clock())
        self._keeper.wakeup.set()  # its target may have grown, and what it takes is to be replaced
        return state

    async def _take(self, state: KeyState | None, request: RunRequest) -> WarmSandbox | None:
        """The sandbox the run gets: an idle one, else one being started (None: it runs cold).

        Why wait for a start rather than run cold: the start began before this run came, so it is
        ready no later than a cold start would be, and the host does not start two sandboxes
        (the cold one and the refill) for one run.
        """
        if state is None:
            return None
        while state.idle:
            entry = state.idle.popleft()
            if not entry.sandbox.alive():
                self._keeper.died(state, entry.sandbox)
                continue
            if shadows_preload(request, entry.sandbox.preloaded):
                state.idle.appendleft(entry)  # still good for the next run
                self._misses["shadowed"] += 1
                return None
            return entry.sandbox
        self._keeper.refill(self._clock())  # this run's start, if its key may have one now
        sandbox = await self._wait_for_start(state) if state.unclaimed_starts() > 0 else None
        if sandbox is None:
            self._misses["empty"] += 1
        elif shadows_preload(request, sandbox.preloaded):
            self._keeper.keep(state, sandbox)
            self._misses["shadowed"] += 1
            return None
        else:
            self._waited += 1
        return sandbox

    async def _wait_for_start(self, state: KeyState) -> WarmSandbox | None:
        """The next sandbox of ``state``'s key to be ready; None if its start failed or takes too long."""
        waiter: asyncio.Future[WarmSandbox | None] = asyncio.get_running_loop().create_future()
        state.waiters.append(waiter)
        # A start hangs only when something is wrong: then run cold rather than wait its whole timeout.
        expected = state.start_s if state.start_s is not None else self.warm.start_timeout_s
        wait_s = min(self.warm.start_timeout_s, max(1.0, _WAIT_FACTOR * expected))
        done: set[asyncio.Future[WarmSandbox | None]] = set()
        try:
            done, _ = await asyncio.wait([waiter], timeout=wait_s)
        finally:
            if not waiter.done():
                waiter.cancel()
            elif not waiter.cancelled() and (sandbox := waiter.result()) is not None and not done:
                self._keeper.keep(state, sandbox)  # handed over as this run was cancelled
        return waiter.result() if done else None

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
            self._keeper.track(self._ending, sandbox.ended())
        self._hits += 1
        return result
