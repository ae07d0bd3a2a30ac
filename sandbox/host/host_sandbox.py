"""What the two backends on this host's kernel share: their lifecycle and their entry points.

Why a base class: ``local`` and ``gvisor`` differ in how one run is built (``_execute``), what they
make on the host when opened (``_open_host``) and what they check (``_preflight``); everything
around that is the same and lives here once: ``open`` builds the host side in a worker thread (so
the event loop never waits on compilers, cgroups or mounts) and registers a finalizer for owners
that forget ``close``; ``run`` / ``stream`` / ``start_service`` are thin wrappers of ``_execute``;
library sets are the data dir's (:class:`~sandbox.host.libset_dirs.LibrarySetDirs`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import weakref
from collections.abc import AsyncIterator, Mapping
from types import TracebackType
from typing import Any, Generic, Protocol, Self, TypeVar

from sandbox.base import Check, OutputChunk, RunRequest, RunResult
from sandbox.config import SandboxSettings, egress_policy
from sandbox.egress_proxy import EgressProxy
from sandbox.errors import SandboxStartError
from sandbox.host.cgroup_pool import CgroupPool
from sandbox.host.libset_dirs import LibrarySetDirs
from sandbox.resources import check_limits
from sandbox.service import ServiceHandle
from sandbox.streaming import ChunkSink, stream_chunks

__all__ = ["HostSandbox", "OpenedHost"]


class OpenedHost(Protocol):
    """What a host backend holds while open (``BwrapHost``, ``GVisorHost``)."""

    @property
    def pool(self) -> CgroupPool | None:
        """The backend's cgroup pool (None: rlimits instead)."""
        ...

    def close(self) -> None:
        """Remove everything it made on the host; idempotent, blocking."""
        ...


H = TypeVar("H", bound=OpenedHost)


class HostSandbox(Generic[H]):
    """The shared part of a backend on this host. See :mod:`sandbox.base` for the contract."""

    name = "host"

    def __init__(self, settings: SandboxSettings | None = None, *, egress: EgressProxy | None = None) -> None:
        """Keep the settings; no I/O here (see :meth:`open`).

        ``egress``: the proxy of runs with network (default: one with the settings' policy, made by ``open``).
        """
        self.settings = settings or SandboxSettings()
        self._egress = egress
        self._host: H | None = None
        self._open_lock = asyncio.Lock()
        self._closed = False
        self._libsets = LibrarySetDirs(self.settings)
        self._finalizer: weakref.finalize[[], Any] | None = None

    # What each backend supplies.

    def _open_host(self) -> H:
        """Make the backend's host side (blocking: runs in a worker thread)."""
        raise NotImplementedError

    def _preflight(self) -> list[Check]:
        """The backend's checks (blocking: runs in a worker thread)."""
        raise NotImplementedError

    async def _execute(
        self, request: RunRequest, sink: ChunkSink | None, service: tuple[ServiceHandle, int] | None = None
    ) -> RunResult:
        """Run ``request``, feeding output to ``sink``; as a service on ``service``'s port when given."""
        raise NotImplementedError

    async def _after_open(self, host: H) -> None:
        """Called once the host side exists (and the backend counts as open)."""

    async def _before_close(self, host: H) -> None:
        """Called once, before the host side is removed."""

    # The shared part.

    async def open(self) -> Self:
        """Make the host side in a worker thread; idempotent.

        Raises:
            SandboxUnavailableError: the host lacks what the backend needs (the message says what to fix).
            SandboxStartError: the sandbox was closed.
        """
        async with self._open_lock:
            if self._closed:
                raise SandboxStartError("sandbox is closed")
            if self._host is None:
                host, self._egress = await asyncio.to_thread(self._make_host)
                # If the owner forgets close(), still remove groups, mounts and temp files at exit / GC.
                self._host, self._finalizer = host, weakref.finalize(self, host.close)
                try:
                    await self._after_open(host)
                except BaseException:
                    self._host = None  # not open after all: nothing of it stays
                    await asyncio.to_thread(self._finalizer)
                    raise
        return self

    def _make_host(self) -> tuple[H, EgressProxy]:
        host = self._open_host()
        return host, self._egress or EgressProxy(egress_policy(self.settings))

    def _opened(self) -> H:
        if self._closed:
            raise SandboxStartError("sandbox is closed")
        if self._host is None:
            raise SandboxStartError(
                f"the {self.name} sandbox is not open; await open() (or `async with`) first"
            )
        return self._host

    @property
    def egress(self) -> EgressProxy | None:
        """The egress proxy of runs with network (None until opened, unless one was given)."""
        return self._egress

    @property
    def uses_cgroups(self) -> bool:
        """True when limits are enforced with cgroups (False: the rlimit fallback)."""
        return self._opened().pool is not None

    async def preflight(self) -> list[Check]:
        """What this host offers the backend, one check per piece; opens nothing."""
        return await asyncio.to_thread(self._preflight)

    async def library_sets(self) -> Mapping[str, str | None]:
        """Every known set -> None when built in the data dir (or stdlib only), else the fix."""
        return await self._libsets.states()

    async def run(self, request: RunRequest) -> RunResult:
        """Run ``request`` to completion (never raises for program failures)."""
        return await self._execute(request, None)

    async def stream(self, request: RunRequest) -> AsyncIterator[OutputChunk]:
        """Yield stdout / stderr chunks as produced, then one ``result`` chunk."""
        # aclosing: when our consumer leaves early, the inner generator must stop (and kill the run)
        # now, not whenever the garbage collector finalizes it.
        async with contextlib.aclosing(stream_chunks(lambda q: self._execute(request, q))) as chunks:
            async for chunk in chunks:
                yield chunk

    async def start_service(self, request: RunRequest, *, port: int) -> ServiceHandle:
        """Start ``request`` as a service on ``port`` (no wall-clock cap; network through the proxy)."""
        self._opened()
        check_limits(request.limits, self.settings.max_limits)
        handle = ServiceHandle(request.labels.get("app", "service"))
        # A service listens on its own loopback: it gets the network profile and the proxy, always.
        request = dataclasses.replace(request, network=True)
        handle.start(self._execute(request, handle, service=(handle, port)))
        return handle

    async def close(self) -> None:
        """Remove everything the backend made on the host; idempotent."""
        async with self._open_lock:
            if self._closed:
                return
            self._closed = True
        if self._host is not None:
            await self._before_close(self._host)
        if self._finalizer is not None:
            await asyncio.to_thread(self._finalizer)

    async def __aenter__(self) -> Self:
        return await self.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
