"""Warm sandboxes of the ``gvisor`` backend: a runsc sandbox whose interpreter waits for its program.

Built as a cold run's (:mod:`sandbox.backends.gvisor`): its own container, OCI bundle, size-capped
scratch tmpfs, pooled cgroups and seccomp profile, with the stubs of :mod:`sandbox.warm.stubs` bound
read-only at their place and the run's files written by the stub. Why a warm one saves most here:
runsc's own start (the Sentry, the gofer, the container's mounts) is ~200 ms of a cold run.

What is set when: ``RLIMIT_NPROC`` (gVisor's process cap) is the operator's maximum at start and the
Python stub lowers it to the run's at hand-over; TypeScript's is the run's from the start (its key
holds ``pids``). The cgroup takes the run's memory (plus the Sentry's headroom) and CPU share at
hand-over, and its counters restart (:meth:`~sandbox.host.cgroup.Cgroup.rearm`); the CPU-seconds
watchdog and the wall clock start then. The output pipes are grown to the run's cap at hand-over.
A run returns when runsc does; its state, scratch mount and cgroup are removed in the background.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import itertools
import json
import logging
import os
import secrets
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path

from sandbox.base import Limits, RunRequest, RunResult
from sandbox.commands import TMP_DIR, WORK_DIR, build_argv, build_env, check_exec_size
from sandbox.errors import SandboxStartError
from sandbox.host.cgroup import Cgroup, CgroupBusyError, CgroupUsage, watch_cpu
from sandbox.host.libset_dirs import LibrarySet
from sandbox.host.oci import BindMount, RunSpec, build_config, prepare_scratch
from sandbox.host.outcome import run_result
from sandbox.host.process import ProcessOutcome
from sandbox.host.runsc import (
    RUNSC_ENV,
    GVisorHost,
    cleanup_run,
    join_cgroups_argv,
    kill_run,
    raise_start_failure,
)
from sandbox.host.warm_bwrap import check_files_fit, start_limits
from sandbox.host.warm_process import WarmProcess, WarmSandboxBase
from sandbox.resources import check_limits
from sandbox.streaming import ChunkDecoder, ChunkSink
from sandbox.warm.base import WarmUnusableError
from sandbox.warm.protocol import encode_run
from sandbox.warm.stubs import WARM_DIR, program_argv, stub_argv

__all__ = ["GVisorWarmSandbox"]

logger = logging.getLogger(__name__)

_ids = itertools.count()
_PARTIAL_LINE_S = 0.05  # as the cold path: streamed output held back until its line ends
_TEARDOWNS: set[asyncio.Task[None]] = set()
MountsFor = Callable[[RunRequest, LibrarySet, Path], Sequence[BindMount]]


class GVisorWarmSandbox(WarmSandboxBase):
    """One pre-started gVisor sandbox (see the module docstring); serves one run."""

    name = "gvisor"

    def __init__(
        self,
        *,
        host: GVisorHost,
        cid: str,
        rundir: Path,
        cgroup: Cgroup,
        libset: LibrarySet,
        process: WarmProcess,
        maximums: Limits,
        headroom_mb: int,
        host_pids: int,
    ) -> None:
        self._host = host
        self._cid = cid
        self._rundir = rundir
        self._cgroup = cgroup
        self._libset = libset
        self._process = process
        self._maximums = maximums
        self._headroom_mb = headroom_mb
        self._host_pids = host_pids
        self._used = False
        self._cleaned = False
        self._cleanup_task: asyncio.Task[None] | None = None

    @classmethod
    async def start(
        cls,
        host: GVisorHost,
        template: RunRequest,
        *,
        libset: LibrarySet,
        mounts_for: MountsFor,
        uid: int,
        gid: int,
        maximums: Limits,
        headroom_mb: int,
        host_pids: int,
        timeout_s: float,
    ) -> GVisorWarmSandbox:
        """Start one for ``template``'s key (cgroups required) and wait until its interpreter is ready.

        Raises:
            SandboxStartError: it could not be started or was not ready in time.
        """
        assert host.pool is not None  # GVisorSandbox.warm_key: warm sandboxes need cgroups
        python = template.language == "python"
        # Python's RLIMIT_NPROC is lowered by the stub at hand-over; Deno cannot, its key holds pids.
        limits = start_limits(template.limits, maximums)
        if not python:
            limits = dataclasses.replace(limits, pids=template.limits.pids)
        cid = f"agentic-{os.getpid()}-w{next(_ids)}-{secrets.token_hex(4)}"
        rundir = host.runs / cid
        scratch = rundir / "scratch"
        cgroup: Cgroup | None = None
        process: WarmProcess | None = None
        try:
            argv = stub_argv(template, build_argv(template, libset), python_stub=host.python_stub)
            env = build_env(template, libset, home=WORK_DIR, tmp=TMP_DIR)
            rundir.mkdir(mode=0o700)
            try:
                await asyncio.to_thread(
                    prepare_scratch, scratch, {}, disk_mb=limits.disk_mb, uid=uid, gid=gid
                )
            except OSError as exc:
                raise SandboxStartError(f"could not prepare a warm sandbox's scratch dir: {exc}") from exc
            padded = dataclasses.replace(limits, memory_mb=limits.memory_mb + headroom_mb, pids=host_pids)
            cgroup = await asyncio.to_thread(host.pool.acquire, padded)
            spec = RunSpec(
                args=argv,
                env=env,
                limits=limits,
                uid=uid,
                gid=gid,
                network=False,
                extra_mounts=[*mounts_for(template, libset, scratch), BindMount(host.tmp / "warm", WARM_DIR)],
                memory_headroom_mb=headroom_mb,
            )
            (rundir / "config.json").write_text(
                json.dumps(build_config(host.rootfs, host.static_mounts, spec))
            )
            runsc = join_cgroups_argv(
                cgroup.tasks_files, host.runsc.argv("run", "--bundle", str(rundir), cid)
            )
            group = cgroup

            async def kill(pid: int) -> None:
                await kill_run(host, cid, group)

            process = await WarmProcess.start(
                runsc, env=RUNSC_ENV, cwd=rundir, kill=kill, timeout_s=timeout_s
            )
        except BaseException:
            if process is not None:
                await process.destroy()
            await _shielded(cleanup_run(host, cid, rundir, scratch, cgroup, None))
            raise
        return cls(
            host=host,
            cid=cid,
            rundir=rundir,
            cgroup=cgroup,
            libset=libset,
            process=process,
            maximums=maximums,
            headroom_mb=headroom_mb,
            host_pids=host_pids,
        )

    def pids(self) -> set[int]:
        """Its processes on the host now (blocking: reads its cgroup)."""
        return self._cgroup.pids() if self._cgroup is not None else set()

    async def handover(self, request: RunRequest, sink: ChunkSink | None) -> RunResult:
        """Run ``request`` here (once), then remove the sandbox; see :class:`~sandbox.warm.base.WarmSandbox`.

        Raises:
            WarmUnusableError: it ended while idle, or already holds more memory than the run's cap.
            InvalidRunRequestError, LimitsExceededError: as a cold run would raise them.
        """
        if self._used:
            raise WarmUnusableError("this warm sandbox has served its run")
        self._used = True
        process, cgroup, limits = self._process, self._cgroup, request.limits
        outcome: ProcessOutcome | None = None
        usage: CgroupUsage | None = None
        watcher: asyncio.Task[None] | None = None
        cpu_exceeded = False
        decoder = ChunkDecoder(sink, hold_partial_s=_PARTIAL_LINE_S) if sink is not None else None

        async def exceeded() -> None:
            nonlocal cpu_exceeded
            cpu_exceeded = True
            await self._host.runsc.destroy(self._cid)

        try:
            check_limits(limits, self._maximums)
            check_files_fit(request)
            cold_argv = build_argv(request, self._libset)
            env = build_env(request, self._libset, home=WORK_DIR, tmp=TMP_DIR)
            check_exec_size(cold_argv, env)
            python = request.language == "python"
            message = encode_run(
                argv=program_argv(request, cold_argv),
                env=env if python else None,
                files=request.files,
                nproc=limits.pids if python else None,
            )
            if not process.alive():
                raise WarmUnusableError("the warm sandbox ended while it waited")
            padded = dataclasses.replace(
                limits, memory_mb=limits.memory_mb + self._headroom_mb, pids=self._host_pids
            )
            try:
                await asyncio.to_thread(cgroup.rearm, padded)
            except (CgroupBusyError, OSError) as exc:
                raise WarmUnusableError(f"the warm sandbox cannot take the run's limits: {exc}") from exc
            _grow_pipes(process, limits.output_bytes + 1)
            if cgroup.tracks_cpu:
                watcher = asyncio.ensure_future(watch_cpu(cgroup, limits.cpu_seconds, exceeded))
            outcome = await process.run(
                message,
                request.stdin,
                timeout_s=limits.wall_seconds,
                output_limit=limits.output_bytes,
                on_output=decoder.add if decoder is not None else None,
            )
            usage = await asyncio.to_thread(cgroup.usage)
        finally:
            if watcher is not None:
                watcher.cancel()
                with contextlib.suppress(BaseException):
                    await watcher
            if usage is None:
                await process.destroy()
                await _shielded(self._cleanup())
        if outcome is None or usage is None:  # only when the finally above re-raises
            raise SandboxStartError("the warm sandbox's run ended without an outcome")
        # runsc has ended: its state, the scratch mount and the cgroup go in the background.
        self._cleanup_task = task = asyncio.ensure_future(self._cleanup())
        _TEARDOWNS.add(task)
        task.add_done_callback(_TEARDOWNS.discard)
        raise_start_failure(outcome)
        if decoder is not None:
            decoder.flush()
        return run_result(outcome, usage, backend=self.name, cpu_exceeded=cpu_exceeded)

    async def destroy(self) -> None:
        """Remove it unused (idempotent)."""
        if self._used:
            return
        self._used = True
        await self._process.destroy()
        await _shielded(self._cleanup())

    async def kill(self) -> None:
        """Kill its processes now (a run going ends as killed)."""
        await kill_run(self._host, self._cid, self._cgroup)

    async def ended(self) -> None:
        """Wait until its clean-up after a run is done."""
        if self._cleanup_task is not None:
            await asyncio.wait([self._cleanup_task])

    async def _cleanup(self) -> None:
        if not self._cleaned:
            self._cleaned = True
            scratch = self._rundir / "scratch"
            await cleanup_run(self._host, self._cid, self._rundir, scratch, self._cgroup, None)

    @staticmethod
    async def wait_teardowns() -> None:
        """Wait for the background clean-ups of finished runs (the backend's close)."""
        while _TEARDOWNS:
            await asyncio.gather(*_TEARDOWNS, return_exceptions=True)


def _grow_pipes(process: WarmProcess, size: int) -> None:
    """Let each output pipe hold ``size`` bytes (see the gVisor backend: the Sentry's partial writes)."""
    for fd in (process.spawned.stdout, process.spawned.stderr):
        with contextlib.suppress(OSError):  # beyond fs.pipe-max-size: the kernel's default stays
            fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, size)


async def _shielded(cleanup: Coroutine[None, None, None]) -> None:
    """Run ``cleanup`` to its end even when the caller is cancelled meanwhile."""
    task = asyncio.ensure_future(cleanup)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        await task
        raise
