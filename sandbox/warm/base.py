"""What a backend offers the warm pool: a key per request, and pre-started single-use sandboxes.

The pool (:class:`~sandbox.warm.pool.WarmPool`) knows no backend. A backend that can start a
sandbox ahead of its program implements :class:`Prestartable`:

* ``warm_key(request)``: which pre-started sandbox could serve ``request`` (equal keys are
  interchangeable), or None when only a cold start can (a command, network, host pipes, an
  environment the interpreter would have read while starting, no cgroups here).
* ``prestart(template)``: start one sandbox for ``template``'s key, with its interpreter up and
  preloaded, waiting for its program; returns a :class:`WarmSandbox` once it said it is ready.

A :class:`WarmSandbox` serves exactly one run (``handover``) and is destroyed after it, or is
destroyed unused (``destroy``, idempotent). It owns its limits' accounting from hand-over on: wall
time, CPU seconds, peak memory, pids and output count for the run only.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Protocol, runtime_checkable

from sandbox.base import RunRequest, RunResult
from sandbox.errors import SandboxError
from sandbox.streaming import ChunkSink

__all__ = ["Prestartable", "WarmSandbox", "WarmUnusableError"]


class WarmUnusableError(SandboxError):
    """This pre-started sandbox cannot take the run (it died, or cannot take its limits): run cold.

    Raised by :meth:`WarmSandbox.handover` before anything of the run reached the sandbox.
    """


class WarmSandbox(Protocol):
    """One pre-started sandbox, ready for one program."""

    async def measure(self) -> int:
        """Its memory now: the PSS of its processes (reads ``/proc``, in a worker thread)."""
        ...

    @property
    def preloaded(self) -> tuple[str, ...]:
        """Top-level modules its interpreter imported before the run (a run's file must not shadow them)."""
        ...

    def alive(self) -> bool:
        """False when it ended while idle (it cannot take a run)."""
        ...

    def pids(self) -> set[int]:
        """Its processes on the host now (blocking: reads its cgroup)."""
        ...

    async def handover(self, request: RunRequest, sink: ChunkSink | None) -> RunResult:
        """Give it ``request`` (its key's), run it to the end, destroy it; like ``Sandbox.run``.

        Raises:
            WarmUnusableError: it cannot take this run (nothing of the run reached it).
        """
        ...

    async def destroy(self) -> None:
        """Remove it unused: processes, cgroup, namespace, scratch; idempotent."""
        ...

    async def kill(self) -> None:
        """Kill its processes now: a run going ends as killed (its ``handover`` then cleans up)."""
        ...

    async def ended(self) -> None:
        """Wait until nothing of it is left (after a run, its clean-up goes on in the background)."""
        ...


@runtime_checkable
class Prestartable(Protocol):
    """A backend that can start sandboxes ahead of their program."""

    name: str

    def warm_key(self, request: RunRequest) -> Hashable | None:
        """The key of the pre-started sandboxes that can serve ``request``, or None (cold only)."""
        ...

    async def prestart(self, template: RunRequest) -> WarmSandbox:
        """Start one sandbox for ``template``'s key and wait until it is ready.

        Raises:
            SandboxStartError: it could not be started (the message says why).
        """
        ...
