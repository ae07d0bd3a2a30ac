"""Forked warm sandboxes of the ``local`` backend: a child of the key's zygote waits for its program.

``prestart`` asks the key's fork server (:mod:`sandbox.host.fork_server`) for a child, takes a
pooled cgroup for it and moves the child's host pid there *before* it allocates anything (it waits
for ``go``; pages charged to the zygote's group would stay there), then lets it isolate itself
(:mod:`sandbox.warm.zygote`: its own user / mount / pid / ipc / uts namespaces with the program as
pid 1, a fresh scratch tmpfs, ``/dev/shm`` and ``/proc``, no capabilities, ``no_new_privs``, the
run's seccomp filter, a Landlock scope or its own network namespace) and wait on stdin, as a warm
sandbox's stub does (:mod:`sandbox.warm.protocol`). So the set-up is paid before the run, and the
interpreter's start and the preload's imports are paid once per zygote.

``handover`` is :class:`~sandbox.host.warm_bwrap.BwrapWarmSandbox`'s: the cgroup takes the run's
limits (:meth:`~sandbox.host.cgroup.Cgroup.rearm`), the request goes down stdin, the output is
streamed and capped, the wall clock and the CPU watchdog count from now, and the kill path kills
the run's pid 1 (its pid namespace takes every fork with it). After the run its cgroup is emptied
and pooled again in the background.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import select
import signal
import subprocess
import time
from collections.abc import Callable

from sandbox.base import Limits, RunRequest, RunResult
from sandbox.errors import SandboxStartError
from sandbox.host.bwrap_run import BwrapHost, raise_setup_failure
from sandbox.host.cgroup import Cgroup, CgroupBusyError, CgroupUsage, watch_cpu, write_knob
from sandbox.host.cgroup_pool import CgroupPool, PoolClosedError
from sandbox.host.fork_server import ForkedChild, Zygote
from sandbox.host.libset_dirs import LibrarySet
from sandbox.host.outcome import run_result
from sandbox.host.process import ProcessOutcome, supervise
from sandbox.host.spawn import Spawned
from sandbox.host.warm_bwrap import handover_message, start_limits
from sandbox.host.warm_process import pss_bytes
from sandbox.streaming import ChunkDecoder, ChunkSink
from sandbox.warm.base import WarmUnusableError

__all__ = ["FORK_PIDS", "ForkWarmSandbox", "ForkedProcess", "landlock_abi"]

logger = logging.getLogger(__name__)

FORK_PIDS = 1  # ours in the run's pids cap: the child that waits for the program's pid 1
_TEARDOWNS: set[asyncio.Task[None]] = set()


class ForkedProcess:
    """A zygote's child as the runner sees it: not our child, so its end is seen on a pidfd."""

    def __init__(self, pid: int, pidfd: int) -> None:
        self._pid = pid
        self._pidfd = pidfd
        self._code: int | None = None

    @property
    def pid(self) -> int:
        """Its host pid (held by the pidfd: it stays until the host closes its control socket)."""
        return self._pid

    @property
    def returncode(self) -> int | None:
        """``-SIGKILL`` once it ended (its status comes on the status pipe, not from here)."""
        return self._code

    def poll(self) -> int | None:
        """Its return code if it ended, else None."""
        if self._code is None and select.select([self._pidfd], [], [], 0)[0]:
            self._code = -signal.SIGKILL
        return self._code

    def wait(self, timeout: float | None = None) -> int:
        """Wait until it ended (blocking).

        Raises:
            subprocess.TimeoutExpired: still running after ``timeout``.
        """
        if self._code is None and not select.select([self._pidfd], [], [], timeout)[0]:
            raise subprocess.TimeoutExpired([str(self._pid)], timeout or 0.0)
        code = self.poll()
        assert code is not None
        return code


def _take_group(pool: CgroupPool, limits: Limits, pid: int) -> Cgroup:
    """A pooled cgroup with ``limits``, the single-threaded ``pid`` moved into it (blocking).

    Why ``tasks``: moving one thread skips the threadgroup lock that makes ``cgroup.procs`` slow.
    """
    cgroup = pool.acquire(limits, FORK_PIDS)
    try:
        for tasks in cgroup.tasks_files:
            write_knob(tasks, pid)
    except BaseException:
        pool.release(cgroup)
        raise
    return cgroup


def _empty_group(pool: CgroupPool, cgroup: Cgroup) -> None:
    """Kill what is left in ``cgroup`` and pool it again (blocking)."""
    try:
        cgroup.kill_all()
    finally:
        pool.release(cgroup, emptied=True)


class ForkWarmSandbox:
    """One forked, isolated child of a zygote, waiting for its one run (see the module docstring)."""

    name = "local"

    def __init__(
        self,
        *,
        zygote: Zygote,
        child: ForkedChild,
        cgroup: Cgroup,
        pool: CgroupPool,
        libset: LibrarySet,
        python: str,
        maximums: Limits,
        on_end: Callable[[], None],
    ) -> None:
        self._zygote = zygote
        self._child = child
        self._cgroup = cgroup
        self._pool = pool
        self._libset = libset
        self._python = python
        self._maximums = maximums
        self._on_end = on_end
        self._used = False
        self._ended = False
        self._cpu_exceeded = False
        self._teardown_task: asyncio.Task[None] | None = None

    @classmethod
    async def start(
        cls,
        zygote: Zygote,
        host: BwrapHost,
        template: RunRequest,
        *,
        libset: LibrarySet,
        python: str,
        maximums: Limits,
        timeout_s: float,
        on_end: Callable[[], None],
    ) -> ForkWarmSandbox:
        """Fork one for ``template``'s key, in a cgroup of its own, and let it isolate itself.

        Raises:
            SandboxStartError: no cgroup, or the zygote could not fork (the message says why).
        """
        pool = host.pool
        try:
            if pool is None:
                raise SandboxStartError("forked warm sandboxes need writable cgroups on this host")
            child = await zygote.fork(timeout_s)
        except BaseException:
            on_end()
            raise
        try:  # it waits for "go": in its cgroup before it allocates anything
            limits = start_limits(template.limits, maximums)
            cgroup = await asyncio.to_thread(_take_group, pool, limits, child.pid)
        except BaseException as exc:
            with contextlib.suppress(OSError):
                signal.pidfd_send_signal(child.pidfd, signal.SIGKILL)
            child.close()
            zygote.child_ended()
            on_end()
            if isinstance(exc, PoolClosedError):
                raise SandboxStartError("sandbox is closed") from None
            raise
        sandbox = cls(
            zygote=zygote,
            child=child,
            cgroup=cgroup,
            pool=pool,
            libset=libset,
            python=python,
            maximums=maximums,
            on_end=on_end,
        )
        try:
            child.control.send(b"go")
        except BaseException:
            await sandbox._teardown()
            raise
        return sandbox

    @property
    def preloaded(self) -> tuple[str, ...]:
        """Top-level modules the zygote imported before the run."""
        return self._zygote.preloaded

    def alive(self) -> bool:
        """False once it was used, or it or its zygote ended."""
        child = self._child
        return (
            not self._used
            and child.pidfd >= 0
            and not select.select([child.pidfd], [], [], 0)[0]
            and self._zygote.alive()
        )

    def pids(self) -> set[int]:
        """Its processes on the host now (blocking: reads its cgroup)."""
        return self._cgroup.pids()

    async def measure(self) -> int:
        """PSS of its processes plus its share of its zygote's."""

        def pss() -> int:
            share = pss_bytes(self._zygote.pids()) // max(self._zygote.children, 1)
            return pss_bytes(self.pids()) + share

        return await asyncio.to_thread(pss)

    async def handover(self, request: RunRequest, sink: ChunkSink | None) -> RunResult:
        """Run ``request`` here (once), then remove the sandbox; see :class:`~sandbox.warm.base.WarmSandbox`.

        Raises:
            WarmUnusableError: it ended while idle, or already holds more memory than the run's cap.
            InvalidRunRequestError, LimitsExceededError: as a cold run would raise them.
        """
        if self._used:
            raise WarmUnusableError("this warm sandbox has served its run")
        alive = self.alive()
        self._used = True
        child = self._child
        outcome: ProcessOutcome | None = None
        usage: CgroupUsage | None = None
        decoder = ChunkDecoder(sink) if sink is not None else None
        watchdog: asyncio.Task[None] | None = None
        try:
            message = handover_message(request, self._libset, self._maximums, python=self._python)
            if not alive:
                raise WarmUnusableError("the forked warm sandbox ended while it waited")
            try:
                await asyncio.to_thread(self._cgroup.rearm, request.limits, FORK_PIDS)
            except (CgroupBusyError, OSError) as exc:
                raise WarmUnusableError(f"the warm sandbox cannot take the run's limits: {exc}") from exc
            started = time.monotonic()
            if self._cgroup.tracks_cpu:
                watchdog = asyncio.ensure_future(self._watch_cpu(request.limits.cpu_seconds))
            spawned = Spawned(
                proc=ForkedProcess(child.pid, child.pidfd),
                stdin=child.stdin,
                stdout=child.stdout,
                stderr=child.stderr,
                kill=self._kill_program,
            )
            child.stdin = child.stdout = child.stderr = -1  # supervise closes them
            outcome = await supervise(
                spawned,
                timeout_s=request.limits.wall_seconds,
                output_limit=request.limits.output_bytes,
                stdin=[*message, request.stdin],
                on_output=decoder.add if decoder is not None else None,
                started=started,
                status_fd=child.status,
            )
            if watchdog is not None:
                watchdog.cancel()
            usage = await asyncio.to_thread(self._cgroup.usage)
        finally:
            if watchdog is not None:
                watchdog.cancel()
            if usage is None:
                await self._teardown()
        if outcome is None:  # only when the finally above re-raises
            raise SandboxStartError("the forked warm sandbox's run ended without an outcome")
        # What is left (the waiting child, the namespaces' teardown) goes in the background.
        self._teardown_task = asyncio.ensure_future(self._teardown())
        _TEARDOWNS.add(self._teardown_task)
        self._teardown_task.add_done_callback(_TEARDOWNS.discard)
        raise_setup_failure(outcome)
        if decoder is not None:
            decoder.flush()
        return run_result(outcome, usage, backend=self.name, cpu_exceeded=self._cpu_exceeded)

    async def _watch_cpu(self, limit_s: float) -> None:
        async def exceeded() -> None:
            self._cpu_exceeded = True
            await self._kill_program(self._child.pid)

        await watch_cpu(self._cgroup, limit_s, exceeded)

    async def _kill_program(self, pid: int) -> None:
        """Kill the program's tree (its pid 1 and every fork), not the child waiting for it."""
        await asyncio.to_thread(self._cgroup.kill_others, pid)

    async def kill(self) -> None:
        """Kill its processes now (a run going ends as killed)."""
        await asyncio.to_thread(self._cgroup.kill_all)

    async def ended(self) -> None:
        """Wait until its clean-up after a run is done."""
        if self._teardown_task is not None:
            await asyncio.wait([self._teardown_task])

    async def destroy(self) -> None:
        """Remove it unused (idempotent)."""
        if self._ended or self._used:
            return
        self._used = True
        await self._teardown()

    async def _teardown(self) -> None:
        """Kill what is left in its cgroup, pool the group again, close our ends (idempotent)."""
        if self._ended:
            return
        self._ended = True
        try:
            await asyncio.shield(asyncio.to_thread(_empty_group, self._pool, self._cgroup))
        finally:
            self._child.close()
            self._zygote.child_ended()
            self._on_end()


def landlock_abi() -> int:
    """The kernel's Landlock ABI version (0: none, or it is disabled)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    # landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION)
    version = libc.syscall(444, None, 0, 1)
    return max(int(version), 0)
