"""The one gate in front of every backend: limits clamped to the operator's maximums, and admission.

Every path that runs code (REST runs, the CLI, the agents' tools, hosted apps) reaches a
backend through a :class:`GuardedSandbox`, so no caller can forget a check:

* **Limits.** A request's :class:`~sandbox.base.Limits` are clamped, field by field, to
  ``SandboxSettings.max_limits`` before the backend sees them (a tier chosen by an agent, or a
  tier larger than a lowered maximum, still fits). Callers that let a client ask for explicit
  values refuse those above the maximum earlier, with a message (``sandbox.resources.resolve_limits``).
* **Admission.** The sum of memory granted to running sandboxes stays within a global budget and a
  per-owner (tenant) budget, and so does the number of running sandboxes. A run that does not fit
  waits up to ``wait_s`` for others to finish, then fails with :class:`SandboxBusyError`, which
  carries a ``retry_after_s`` (the server answers 429 with ``Retry-After``). A run that could never
  fit (more memory than the budget itself) fails at once with ``LimitsExceededError``.

* **Services.** ``start_service`` (and ``start_browser``, for backends that run the browser
  themselves) is clamped the same way and holds its memory grant for as long as the service lives
  (released when it ends or is terminated).
* **Labels.** The ``tenant`` label of every request is the view's owner (a client never sets it),
  so each egress decision is logged for the right tenant.

``GuardedSandbox.for_owner(tenant)`` returns a view that charges that owner's budget; all views
share one :class:`Admission` and one backend. Opening or closing a view does nothing; opening the
root opens the backend (``async with GuardedSandbox.from_settings(create_sandbox(s), s)``), closing it
closes the backend. Preflight and library sets are the backend's answers, unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from sandbox.base import Check, Limits, OutputChunk, RunRequest, RunResult, Sandbox
from sandbox.config import SandboxSettings
from sandbox.errors import InvalidRunRequestError, LimitsExceededError, SandboxBusyError, SandboxStartError
from sandbox.service import ServiceHandle

__all__ = [
    "MAX_FILES",
    "Admission",
    "AdmissionStats",
    "GuardedSandbox",
    "check_file_count",
    "check_files_fit",
    "clamp_limits",
    "default_memory_budget_mb",
]

logger = logging.getLogger(__name__)

MAX_FILES = 2000
"""Files one run may carry into its scratch dir (each becomes a bind mount)."""


def default_memory_budget_mb() -> int:
    """Three quarters of this host's physical memory: room for the server, the model and the kernel."""
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        total = 8 * 1024**3
    return max(256, int(total * 0.75) // (1024 * 1024))


def clamp_limits(limits: Limits, maximums: Limits) -> Limits:
    """Return ``limits`` with every field at most the operator's maximum (values never raised)."""
    changes = {
        f.name: getattr(maximums, f.name)
        for f in dataclasses.fields(Limits)
        if getattr(limits, f.name) > getattr(maximums, f.name)
    }
    if changes:
        logger.info("limits clamped to the server maximums: %s", changes)
        return dataclasses.replace(limits, **changes)
    return limits


def check_file_count(count: int) -> None:
    """Refuse a run that carries more files than a sandbox takes.

    Raises:
        InvalidRunRequestError: more than :data:`MAX_FILES` files.
    """
    if count > MAX_FILES:
        raise InvalidRunRequestError(
            f"the run carries {count} files; at most {MAX_FILES} fit in a sandbox (remove some files)"
        )


def check_files_fit(count: int, total_bytes: int, limits: Limits) -> None:
    """Refuse a run whose files cannot fit, from their stored sizes, before any content is loaded.

    Raises:
        InvalidRunRequestError: too many files, or more bytes than the run's scratch dir holds.
    """
    check_file_count(count)
    capacity = max(1, limits.disk_mb) * 1024 * 1024
    if total_bytes > capacity:
        raise InvalidRunRequestError(
            f"the run's files take {total_bytes} bytes, more than its {limits.disk_mb} MB scratch dir; "
            "remove files or ask for a larger disk_mb / tier"
        )


@dataclass(frozen=True, kw_only=True)
class AdmissionStats:
    """What the admission controller has granted (for ``/metrics`` and the bench)."""

    running: int
    granted_memory_mb: int
    peak_granted_memory_mb: int
    memory_budget_mb: int
    refused: int
    waited: int


@dataclass
class _Grant:
    owner: str
    memory_mb: int
    deadline: float  # monotonic time the run must have ended by (its wall limit)


class Admission:
    """Budgets of granted memory and running sandboxes, global and per owner."""

    def __init__(
        self,
        *,
        memory_budget_mb: int,
        max_running: int,
        owner_memory_budget_mb: int | None = None,
        owner_max_running: int | None = None,
    ) -> None:
        self.memory_budget_mb = memory_budget_mb
        self.max_running = max_running
        self.owner_memory_budget_mb = min(owner_memory_budget_mb or memory_budget_mb, memory_budget_mb)
        self.owner_max_running = min(owner_max_running or max_running, max_running)
        self._by_id: dict[int, _Grant] = {}
        self._changed = asyncio.Condition()
        self._granted = 0
        self._peak = 0
        self._refused = 0
        self._waited = 0

    def stats(self) -> AdmissionStats:
        """A snapshot of what is granted now and the peak so far."""
        return AdmissionStats(
            running=len(self._by_id),
            granted_memory_mb=self._granted,
            peak_granted_memory_mb=self._peak,
            memory_budget_mb=self.memory_budget_mb,
            refused=self._refused,
            waited=self._waited,
        )

    def _owner_usage(self, owner: str) -> tuple[int, int]:
        grants = [g for g in self._by_id.values() if g.owner == owner]
        return len(grants), sum(g.memory_mb for g in grants)

    def _fits(self, owner: str, memory_mb: int) -> bool:
        running, memory = self._owner_usage(owner)
        return (
            len(self._by_id) < self.max_running
            and self._granted + memory_mb <= self.memory_budget_mb
            and running < self.owner_max_running
            and memory + memory_mb <= self.owner_memory_budget_mb
        )

    def _retry_after(self) -> int:
        """Seconds until the earliest running sandbox must have ended (at least 1, at most 30)."""
        if not self._by_id:
            return 1
        soonest = min(g.deadline for g in self._by_id.values()) - time.monotonic()
        return max(1, min(30, math.ceil(soonest)))

    @contextlib.asynccontextmanager
    async def admit(self, owner: str, limits: Limits, *, wait_s: float) -> AsyncIterator[None]:
        """Hold ``limits.memory_mb`` of the budgets while the body runs.

        Raises:
            LimitsExceededError: the run alone asks for more memory than a budget holds.
            SandboxBusyError: no room within ``wait_s`` seconds.
        """
        memory_mb = limits.memory_mb
        budget = min(self.memory_budget_mb, self.owner_memory_budget_mb)
        if memory_mb > budget:
            raise LimitsExceededError(
                f"limit memory_mb={memory_mb} exceeds the memory budget of {budget} MB for running "
                "sandboxes; ask for less memory or a smaller tier"
            )
        async with self._changed:
            if not self._fits(owner, memory_mb):
                self._waited += 1
                try:
                    await asyncio.wait_for(
                        self._changed.wait_for(lambda: self._fits(owner, memory_mb)), timeout=wait_s
                    )
                except TimeoutError:
                    self._refused += 1
                    retry = self._retry_after()
                    running, held = self._owner_usage(owner)
                    logger.info(
                        "admission refused for %s: %d MB asked, %d/%d MB granted (owner %d MB, %d runs)",
                        owner,
                        memory_mb,
                        self._granted,
                        self.memory_budget_mb,
                        held,
                        running,
                    )
                    raise SandboxBusyError(
                        f"the sandboxes are at capacity ({self._granted} of {self.memory_budget_mb} MB "
                        f"granted, {len(self._by_id)} running; this tenant {held} MB in {running} runs); "
                        f"retry in {retry} s",
                        retry,
                    ) from None
            grant = _Grant(owner=owner, memory_mb=memory_mb, deadline=time.monotonic() + limits.wall_seconds)
            key = id(grant)
            self._by_id[key] = grant
            self._granted += memory_mb
            self._peak = max(self._peak, self._granted)
        try:
            yield
        finally:
            async with self._changed:
                self._by_id.pop(key, None)
                self._granted -= memory_mb
                self._changed.notify_all()


class GuardedSandbox:
    """A :class:`~sandbox.base.Sandbox` that clamps limits and admits runs before the backend sees them."""

    def __init__(
        self,
        inner: Sandbox,
        *,
        maximums: Limits,
        admission: Admission,
        owner: str = "default",
        wait_s: float = 10.0,
        _root: bool = True,
    ) -> None:
        self.inner = inner
        self.name = getattr(inner, "name", "unknown")
        self.maximums = maximums
        self.admission = admission
        self.owner = owner
        self.wait_s = wait_s
        self._root = _root

    @classmethod
    def from_settings(cls, inner: Sandbox, settings: SandboxSettings) -> GuardedSandbox:
        """The root guard for ``inner`` with the maximums and budgets of ``settings``."""
        budget = settings.memory_budget_mb or default_memory_budget_mb()
        admission = Admission(
            memory_budget_mb=budget,
            max_running=settings.max_running,
            owner_memory_budget_mb=settings.tenant_memory_budget_mb or max(1, budget // 2),
            owner_max_running=settings.tenant_max_running,
        )
        return cls(inner, maximums=settings.max_limits, admission=admission, wait_s=settings.admission_wait_s)

    def for_owner(self, owner: str, *, wait_s: float | None = None) -> GuardedSandbox:
        """A view that charges ``owner``'s budget (same backend, same admission)."""
        return GuardedSandbox(
            self.inner,
            maximums=self.maximums,
            admission=self.admission,
            owner=owner,
            wait_s=self.wait_s if wait_s is None else wait_s,
            _root=False,
        )

    def guard(self, request: RunRequest) -> RunRequest:
        """The request as the backend will see it: limits clamped, file count checked."""
        limits = clamp_limits(request.limits, self.maximums)
        check_file_count(len(request.files))
        labels = {**request.labels, "tenant": self.owner}
        return dataclasses.replace(request, limits=limits, labels=labels)

    async def run(self, request: RunRequest) -> RunResult:
        """Admit, then run on the backend."""
        guarded = self.guard(request)
        async with self.admission.admit(self.owner, guarded.limits, wait_s=self.wait_s):
            return await self.inner.run(guarded)

    async def stream(self, request: RunRequest) -> AsyncIterator[OutputChunk]:
        """Admit, then stream from the backend; the grant is held until the stream ends or is closed."""
        guarded = self.guard(request)
        async with self.admission.admit(self.owner, guarded.limits, wait_s=self.wait_s):
            inner = self.inner.stream(guarded)
            try:
                async for chunk in inner:
                    yield chunk
            finally:
                aclose = getattr(inner, "aclose", None)
                if aclose is not None:
                    await aclose()

    async def start_service(self, request: RunRequest, *, port: int) -> ServiceHandle:
        """Admit, then start the service; its memory stays granted until it ends."""
        return await self._admitted(request, lambda guarded: self.inner.start_service(guarded, port=port))

    async def start_browser(self, request: RunRequest) -> ServiceHandle:
        """Admit, then start a browser the backend runs itself (``browser_over_cdp`` backends only).

        Raises:
            SandboxStartError: the backend runs no browser of its own (the local ones take a pipe).
        """
        start = getattr(self.inner, "start_browser", None)
        if start is None:
            raise SandboxStartError(f"the {self.name} backend runs no browser of its own")
        return await self._admitted(request, start)

    async def _admitted(
        self, request: RunRequest, start: Callable[[RunRequest], Awaitable[ServiceHandle]]
    ) -> ServiceHandle:
        """Start a long-lived program with ``request`` guarded; its memory grant ends with it."""
        guarded = self.guard(request)
        grant = self.admission.admit(self.owner, guarded.limits, wait_s=self.wait_s)
        await grant.__aenter__()
        try:
            handle: ServiceHandle = await start(guarded)
        except BaseException as exc:
            await grant.__aexit__(type(exc), exc, exc.__traceback__)
            raise

        async def release() -> None:
            await grant.__aexit__(None, None, None)

        handle.on_exit(release)
        return handle

    async def preflight(self) -> list[Check]:
        """The backend's preflight."""
        return await self.inner.preflight()

    async def library_sets(self) -> Mapping[str, str | None]:
        """The backend's library sets."""
        return await self.inner.library_sets()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def open(self) -> Self:
        """Open the backend (views leave it to the root); idempotent when the backend's open is."""
        if self._root:
            await self.inner.open()
        return self

    async def close(self) -> None:
        """Close the backend (views leave it to the root); idempotent when the backend's close is."""
        if self._root:
            await self.inner.close()

    async def __aenter__(self) -> Self:
        return await self.open()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
