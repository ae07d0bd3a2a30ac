"""Warm sandboxes of the ``local`` backend: a bubblewrap sandbox whose interpreter waits for its program.

A warm sandbox is built exactly as a cold run's (:class:`~sandbox.host.bwrap_run.BwrapRun`: its own
uid, pooled cgroup and network namespace, user / pid / ipc / uts / cgroup namespaces, the scratch
tmpfs, the seccomp filter and ``no_new_privs``), with two differences: the program is the stub of
:mod:`sandbox.warm.stubs` (the run's files are written by it, not bound from memfds), and the
launcher's RLIMIT_CPU is the operator's maximum plus :data:`START_CPU_S` (the stub lowers it at
hand-over to what the start used plus the run's CPU seconds; TypeScript's is held by the cgroup's
CPU watchdog alone). At hand-over the cgroup takes the run's limits and its counters restart
(:meth:`~sandbox.host.cgroup.Cgroup.rearm`), the wall clock starts, and the request goes down stdin.
After the run, or unused, everything is removed as after a cold run.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
from collections.abc import Callable, Coroutine

from sandbox.base import Limits, RunRequest, RunResult
from sandbox.commands import TMP_DIR, WORK_DIR, build_argv, build_env, check_exec_size
from sandbox.errors import InvalidRunRequestError, SandboxStartError
from sandbox.guard import check_file_count
from sandbox.host.bwrap_args import BWRAP_PIDS, PYTHON_VENV
from sandbox.host.bwrap_run import BwrapHost, BwrapRun, raise_setup_failure
from sandbox.host.cgroup import Cgroup, CgroupBusyError, CgroupUsage
from sandbox.host.libset_dirs import LibrarySet
from sandbox.host.outcome import run_result
from sandbox.host.process import ProcessOutcome
from sandbox.host.warm_process import WarmProcess, WarmSandboxBase
from sandbox.resources import check_limits
from sandbox.streaming import ChunkDecoder, ChunkSink
from sandbox.warm.base import WarmUnusableError
from sandbox.warm.protocol import encode_run
from sandbox.warm.stubs import program_argv, stub_argv

__all__ = ["START_CPU_S", "BwrapWarmSandbox", "check_files_fit", "handover_message", "start_limits"]

logger = logging.getLogger(__name__)

START_CPU_S = 60.0  # CPU seconds a warm sandbox's start and preload may use, above the run's maximum
_LAUNCHER_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C"}
_STOP_S = 5.0  # how long the launcher may take to reap a killed sandbox before it is killed too
_PYTHON = f"{PYTHON_VENV}/bin/python3"


def start_limits(limits: Limits, maximums: Limits) -> Limits:
    """The limits a warm sandbox starts with: the run's scratch size, room for any run's start-up."""
    return dataclasses.replace(limits, memory_mb=maximums.memory_mb, pids=maximums.pids)


def handover_message(
    request: RunRequest, libset: LibrarySet, maximums: Limits, *, python: str
) -> list[bytes]:
    """What a waiting stub reads on stdin for ``request``, after the checks a cold run makes.

    The environment and CPU seconds go along for Python only (Deno took its own at start).

    Raises:
        InvalidRunRequestError, LimitsExceededError: as a cold run would raise them.
    """
    check_limits(request.limits, maximums)
    check_files_fit(request)
    cold_argv = build_argv(request, libset, python=python)
    env = build_env(request, libset, home=WORK_DIR, tmp=TMP_DIR)
    check_exec_size(cold_argv, env)
    is_python = request.language == "python"
    return encode_run(
        argv=program_argv(request, cold_argv),
        env=env if is_python else None,
        files=request.files,
        cpu_seconds=request.limits.cpu_seconds if is_python else None,
    )


def check_files_fit(request: RunRequest) -> None:
    """Refuse files a cold run's scratch dir would refuse (count, total size).

    Raises:
        InvalidRunRequestError: too many files, or more bytes than the scratch dir holds.
    """
    check_file_count(len(request.files))
    total = sum(len(c.encode() if isinstance(c, str) else c) for c in request.files.values())
    disk_mb = request.limits.disk_mb
    if total > max(1, disk_mb) * 1024 * 1024:
        raise InvalidRunRequestError(f"files ({total} bytes) exceed the {disk_mb} MB scratch dir")


class BwrapWarmSandbox(WarmSandboxBase):
    """One pre-started bubblewrap sandbox (see the module docstring); serves one run."""

    name = "local"

    def __init__(
        self,
        *,
        run: BwrapRun,
        process: WarmProcess,
        maximums: Limits,
        on_end: Callable[[], None],
    ) -> None:
        self._run = run
        self._process = process
        self._maximums = maximums
        self._on_end = on_end
        self._used = False
        self._ended = False
        self._teardown_task: asyncio.Task[None] | None = None

    @classmethod
    async def start(
        cls,
        host: BwrapHost,
        template: RunRequest,
        *,
        libset: LibrarySet,
        ids: tuple[int, int],
        maximums: Limits,
        timeout_s: float,
        on_end: Callable[[], None],
    ) -> BwrapWarmSandbox:
        """Start one for ``template``'s key and wait until its interpreter is ready.

        ``on_end`` is called once when the sandbox is gone (its uid is free again), also when the
        start fails.

        Raises:
            SandboxStartError: it could not be started or was not ready in time.
        """
        try:
            cold_argv = build_argv(template, libset, python=_PYTHON)
            env = build_env(template, libset, home=WORK_DIR, tmp=TMP_DIR)
            # The program's end is reported on one pipe by the stub (right before it exits) and by the
            # launcher (once bwrap ended, e.g. after a signal): whichever comes first.
            status_r, status_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
            stub_w = os.dup(status_w)
            run = BwrapRun(
                host,
                # The stub writes the run's files; the start (ours: interpreter and preload) may use up
                # to the maximums, the run's own limits are set at hand-over.
                dataclasses.replace(template, files={}, limits=start_limits(template.limits, maximums)),
                stub_argv(template, cold_argv, python_stub=host.stage.python_stub, status_fd=stub_w),
                env,
                ids=ids,
                libset=libset,
                wiring=None,
                warm=True,
                cpu_rlimit_s=maximums.cpu_seconds + START_CPU_S,
                status_pipe=(status_r, [status_w, stub_w]),
            )
            process: WarmProcess | None = None
            try:
                process = await WarmProcess.start(
                    run.spawn_args, env=_LAUNCHER_ENV, cwd="/", kill=run.kill, timeout_s=timeout_s
                )
                run.close_fds()  # bwrap has read its arguments, the seccomp filter and the files
                assert run.cgroup is not None  # warm sandboxes need cgroups (BubblewrapSandbox.warm_key)
            finally:
                if process is None:
                    await _finish(run, read_usage=False)
        except BaseException:
            on_end()
            raise
        return cls(run=run, process=process, maximums=maximums, on_end=on_end)

    def pids(self) -> set[int]:
        """Its processes on the host now (blocking: reads its cgroup)."""
        return self._run.cgroup.pids() if self._run.cgroup is not None else set()

    async def handover(self, request: RunRequest, sink: ChunkSink | None) -> RunResult:
        """Run ``request`` here (once), then remove the sandbox; see :class:`~sandbox.warm.base.WarmSandbox`.

        Raises:
            WarmUnusableError: it ended while idle, or already holds more memory than the run's cap.
            InvalidRunRequestError, LimitsExceededError: as a cold run would raise them.
        """
        if self._used:
            raise WarmUnusableError("this warm sandbox has served its run")
        self._used = True
        run, process = self._run, self._process
        outcome: ProcessOutcome | None = None
        usage: CgroupUsage | None = None
        decoder = ChunkDecoder(sink) if sink is not None else None
        try:
            message = handover_message(request, run.libset, self._maximums, python=_PYTHON)
            if not process.alive():
                raise WarmUnusableError("the warm sandbox ended while it waited")
            assert run.cgroup is not None
            try:
                await asyncio.to_thread(run.cgroup.rearm, request.limits, BWRAP_PIDS)
            except (CgroupBusyError, OSError) as exc:
                raise WarmUnusableError(f"the warm sandbox cannot take the run's limits: {exc}") from exc
            run.request = request
            run.on_spawn(process.pid)  # the CPU watchdog, counting from now
            outcome = await process.run(
                message,
                request.stdin,
                timeout_s=request.limits.wall_seconds,
                output_limit=request.limits.output_bytes,
                on_output=decoder.add if decoder is not None else None,
                status_fd=run.status_fd,
            )
            run.stop_watchdog()
            # The program ended: its counters are final; kill what is left of the sandbox now (all but
            # the launcher, which reaps it and exits), in the same hop.
            usage = await asyncio.to_thread(_final_usage, run.cgroup, process.pid)
        finally:
            run.stop_watchdog()
            if usage is None:
                await self._stop()
                await _finish(run, read_usage=False)
                self._end()
        if outcome is None or usage is None:  # only when the finally above re-raises
            raise SandboxStartError("the warm sandbox's run ended without an outcome")
        # The program ended: what is left of the sandbox is killed, reaped and its cgroup emptied in
        # the background, so the run's result does not wait for the kernel's namespace teardown.
        # close() of the backend waits for it.
        self._teardown_task = _spawn_teardown(self._teardown())
        raise_setup_failure(outcome)
        if decoder is not None:
            decoder.flush()
        return run_result(outcome, usage, backend=self.name, cpu_exceeded=run.cpu_exceeded)

    async def kill(self) -> None:
        """Kill its processes now (a run going ends as killed)."""
        await self._run.kill(self._process.pid)

    async def ended(self) -> None:
        """Wait until its clean-up after a run is done."""
        if self._teardown_task is not None:
            await asyncio.wait([self._teardown_task])

    async def _stop(self, *, killed: bool = False) -> None:
        """Kill the sandbox: everything in its cgroup but the launcher, which reaps it all and exits.

        Why not the launcher first: its orphans would go to the host's pid 1, which reaps them when it
        gets to it, and a group holding zombies is not handed out again (a new one costs ~40 ms).
        ``killed``: that was done already.
        """
        assert self._run.cgroup is not None
        if not killed:
            await asyncio.to_thread(self._run.cgroup.kill_others, self._process.pid)
        if await self._process.wait_exit(_STOP_S):
            self._process.spawned.close_pipes()
        else:
            await self._process.destroy()

    async def _teardown(self) -> None:
        try:
            await self._stop(killed=True)  # by handover, right after the program's end
            await _finish(self._run, read_usage=False)
        finally:
            self._end()

    async def destroy(self) -> None:
        """Remove it unused (idempotent)."""
        if self._ended or self._used:
            return
        self._used = True
        try:
            await self._stop()
            await _finish(self._run, read_usage=False)
        finally:
            self._end()

    def _end(self) -> None:
        if not self._ended:
            self._ended = True
            self._on_end()


_TEARDOWNS: set[asyncio.Task[None]] = set()


def _final_usage(cgroup: Cgroup, launcher: int) -> CgroupUsage:
    """The run's counters, then every process of the sandbox but its launcher killed (blocking)."""
    usage = cgroup.usage()
    cgroup.kill_others(launcher)
    return usage


def _spawn_teardown(teardown: Coroutine[None, None, None]) -> asyncio.Task[None]:
    """Run ``teardown`` in the background, kept referenced until it is done."""
    task = asyncio.ensure_future(teardown)
    _TEARDOWNS.add(task)
    task.add_done_callback(_TEARDOWNS.discard)
    return task


async def _finish(run: BwrapRun, *, read_usage: bool) -> CgroupUsage | None:
    """``run.finish`` in a thread, completed even when the caller is cancelled meanwhile."""
    done = asyncio.ensure_future(asyncio.to_thread(run.finish, read_usage))
    try:
        return await asyncio.shield(done)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await done
        raise
