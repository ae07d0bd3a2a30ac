"""The bubblewrap backend on the host: what it holds while open, and what one run holds while it runs.

:class:`BwrapHost` is made once by ``BubblewrapSandbox.open`` (in a worker thread: it compiles the
launcher, stages ``/etc``, fills the cgroup and network-namespace pools) and removed by ``close``.
:class:`BwrapRun` is one run's host side: a uid, a pooled cgroup and network namespace, the memfds
bwrap reads, the CPU watchdog. Its :meth:`~BwrapRun.spawn_args` runs in the same worker-thread hop
as the spawn (cgroup knobs, memfds), its :meth:`~BwrapRun.finish` in one more hop after the run, so
a run costs the event loop two hops (hosts like ``langgraph dev`` forbid blocking calls there).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
from dataclasses import dataclass, field
from pathlib import Path

from sandbox.base import Check, RunRequest
from sandbox.config import SandboxSettings
from sandbox.errors import SandboxStartError, SandboxUnavailableError
from sandbox.host import seccomp
from sandbox.host.bwrap_args import (
    BWRAP_PIDS,
    args_memfd,
    launcher_rlimits,
    run_args,
    static_args,
    unsized_tmpfs,
)
from sandbox.host.bwrap_stage import HostStage
from sandbox.host.cgroup import Cgroup, CgroupUsage, watch_cpu
from sandbox.host.cgroup_pool import CgroupPool, PoolClosedError, open_pool
from sandbox.host.egress_wiring import FORWARDER_PIDS, NetWiring
from sandbox.host.launcher import SETUP_EXIT, SETUP_FAILED, build_launcher, launch_args
from sandbox.host.libset_dirs import LibrarySet, deno_binary
from sandbox.host.netns import NetnsPool
from sandbox.host.probes import executable, root_check
from sandbox.host.process import ProcessOutcome

__all__ = [
    "ROOT_NEEDED",
    "UID_SLOTS",
    "BwrapHost",
    "BwrapRun",
    "UidSlots",
    "bwrap_present",
    "raise_setup_failure",
]

logger = logging.getLogger(__name__)

UID_SLOTS = 4096  # host uids host_uid_base .. +4095, one per concurrent run
ROOT_NEEDED = "the local sandbox drops to an unprivileged uid per run"


def bwrap_present(path: Path) -> Check:
    """Whether the bubblewrap binary is there (whether it works is a probe of its own)."""
    if executable(path):
        return Check(name="bubblewrap", ok=True, detail=f"{path} found")
    return Check(name="bubblewrap", ok=False, detail=f"{path} not found", fix="apt-get install bubblewrap")


def _open_netns_pool(launcher: Path, directory: Path) -> NetnsPool | None:
    """A pool of reusable network namespaces, or None (bwrap makes one per run) if unusable here."""
    pool = NetnsPool(launcher, directory)
    try:
        pool.release(pool.acquire())
    except OSError as exc:
        logger.warning("pooled network namespaces unusable (%s); bwrap creates one per run", exc)
        pool.close()
        return None
    return pool


@dataclass
class BwrapHost:
    """What an open bubblewrap backend holds on the host; :meth:`close` removes all of it."""

    launcher: Path
    stage: HostStage
    netns: NetnsPool | None
    pool: CgroupPool | None
    prefix: dict[bool, list[str]]  # the static bwrap argv, per network setting
    _deno: Path | None = field(default=None, repr=False)

    @classmethod
    def open(cls, settings: SandboxSettings) -> BwrapHost:
        """Check the host, build the launcher, stage ``/etc``, fill the pools (blocking: use a thread).

        Raises:
            SandboxUnavailableError: bubblewrap or a C compiler for the launcher is missing, or we
                are not root (the message says what to install or change).
        """
        local = settings.local
        for check in (bwrap_present(local.bwrap_path), root_check(ROOT_NEEDED)):
            if not check.ok:
                raise SandboxUnavailableError(check.summary())
        launcher = build_launcher(settings.cache_dir, local.launcher_cc)
        stage = HostStage(local.sandbox_uid, local.sandbox_gid, local.python_path)
        netns: NetnsPool | None = None
        pool: CgroupPool | None = None
        try:
            netns = _open_netns_pool(launcher, stage.netns_dir)
            prefix = {
                net: static_args(local, stage.etc, stage.venv, network=net, new_netns=netns is None)
                for net in (False, True)
            }
            pool = open_pool(
                local.cgroup_root,
                local.cgroup_pool_size,
                enabled=local.use_cgroups,
                fallback="rlimits instead",
            )
            seccomp.bpf_program(False)
            seccomp.bpf_program(True)
        except BaseException:
            cls(launcher, stage, netns, pool, {}).close()  # a failed open leaves nothing behind
            raise
        return cls(launcher, stage, netns, pool, prefix)

    def close(self) -> None:
        """Remove the pools' groups and namespaces and the stage; idempotent (blocking)."""
        if self.pool is not None:
            self.pool.close()
        if self.netns is not None:
            self.netns.close()
        self.stage.cleanup()

    def deno(self) -> Path:
        """The Deno binary at a path the unprivileged bwrap can open (staged once)."""
        if self._deno is None:
            self._deno = self.stage.reachable(deno_binary())
        return self._deno


class UidSlots:
    """The host uid of each concurrent run: ``base + slot``, unique among the runs going.

    Slots rotate (random start, round robin): zombies of a finished run are reaped late by host
    pid 1 and still count in their uid's ``RLIMIT_NPROC``, so a uid is not reused right away.
    """

    def __init__(self, base: int | None, fallback: tuple[int, int]) -> None:
        self._base = base
        self._fallback = fallback
        self._busy: set[int] = set()
        self._next = secrets.randbelow(UID_SLOTS)

    def take(self) -> int:
        """A free slot (give it back with :meth:`release`)."""
        for _ in range(UID_SLOTS):
            slot = self._next
            self._next = (slot + 1) % UID_SLOTS
            if slot not in self._busy:
                self._busy.add(slot)
                return slot
        raise SandboxStartError(f"all {UID_SLOTS} sandbox uids are in use by running programs")

    def release(self, slot: int) -> None:
        """The run in ``slot`` is over (its pid namespace is empty)."""
        self._busy.discard(slot)

    def ids(self, slot: int) -> tuple[int, int]:
        """The host uid / gid of the run in ``slot`` (the sandbox uid for all when no base is set)."""
        return self._fallback if self._base is None else (self._base + slot, self._base + slot)


class BwrapRun:
    """One run's host side, from the spawn to its end. See the module docstring."""

    def __init__(
        self,
        host: BwrapHost,
        request: RunRequest,
        program: list[str],
        env: dict[str, str],
        *,
        ids: tuple[int, int],
        libset: LibrarySet,
        wiring: NetWiring | None,
        warm: bool = False,
        cpu_rlimit_s: float | None = None,
        status_pipe: tuple[int, list[int]] | None = None,
        zygote: bool = False,
        pass_fds: tuple[int, ...] = (),
    ) -> None:
        """Keep what the run needs (nothing happens here).

        ``warm``: a warm sandbox (stubs bound, RLIMIT_CPU ``cpu_rlimit_s``). ``status_pipe``: a read end
        (kept, see :attr:`status_fd`) and write ends for the launcher's ``-s`` (the first) and for the
        program to inherit (the others); ours are closed by :meth:`close_fds`. ``zygote``: a warm key's
        fork server (:mod:`sandbox.host.warm_fork`): no ``--disable-userns``, the fork server's seccomp
        filter. ``pass_fds``: more fds the program inherits (the caller owns them).
        """
        self.host = host
        self.request = request
        self.program = program
        self.env = env
        self.ids = ids
        self.libset = libset
        self.wiring = wiring
        self.cgroup: Cgroup | None = None
        self.netns: Path | None = None
        self.cpu_exceeded = False
        self._fds: list[int] = []
        self._netns_pool = None if request.network else host.netns
        self._watchdog: asyncio.Task[None] | None = None
        self._warm = warm
        self._cpu_rlimit_s = cpu_rlimit_s
        self._zygote = zygote
        self._pass_fds = pass_fds
        # Warm sandboxes: the launcher reports the program's end here at once (``agentic-launch -s``).
        self.status_fd: int | None = None
        self._status_w: int | None = None
        if status_pipe is not None:
            self.status_fd, writers = status_pipe
            self._status_w = writers[0]
            self._fds += writers

    def spawn_args(self) -> tuple[list[str], list[int]]:
        """Take a cgroup and a network namespace, write the memfds; the argv and fds to spawn (a thread)."""
        request, host, limits = self.request, self.host, self.request.limits
        if host.pool is not None:
            try:  # +3 pids: the launcher, bwrap and the namespace's init (+1: the network forwarder).
                extra = BWRAP_PIDS + (FORWARDER_PIDS if self.wiring is not None else 0)
                self.cgroup = host.pool.acquire(limits, extra_pids=extra)
            except PoolClosedError:
                raise SandboxStartError("sandbox is closed") from None
        if self._netns_pool is not None:
            try:
                self.netns = self._netns_pool.acquire()
            except OSError as exc:
                raise SandboxStartError(f"no network namespace for the run: {exc}") from exc
        launcher = launch_args(
            host.launcher,
            uid=self.ids[0],
            gid=self.ids[1],
            tasks_files=self.cgroup.tasks_files if self.cgroup is not None else (),
            rlimits=launcher_rlimits(
                limits,
                self.cgroup,
                data_rlimit=request.language != "typescript",
                cpu_seconds=self._cpu_rlimit_s,
            ),
            netns=self.netns,
            status_fd=self._status_w,
        )
        prefix = host.prefix[request.network]
        if self._zygote:  # its children make their own user namespaces
            prefix = [arg for arg in prefix if arg != "--disable-userns"]
        # The request's env must never reach the launcher or bwrap (root or setup code: think
        # LD_PRELOAD, LOCPATH): they run with a fixed env and bwrap sets the program's.
        rest = [*prefix[1:], "--clearenv"]
        for key, value in self.env.items():
            rest += ["--setenv", key, value]
        libset_source = None
        if self.libset.host_path is not None:
            libset_source = host.stage.reachable(self.libset.host_path)
        deno = host.deno() if request.language == "typescript" else None
        per_run = run_args(
            request,
            self._fds,
            libset=self.libset,
            libset_source=libset_source,
            deno=deno,
            wiring=self.wiring,
            warm_dir=host.stage.warm if self._warm else None,
            zygote=self._zygote,
        )
        if host.pool is None and (unsized := unsized_tmpfs([*prefix, *per_run])):
            # rlimits do not count tmpfs pages: an unsized writable one would be unbounded memory.
            raise SandboxStartError(f"refusing to run with unsized writable tmpfs {unsized}")
        # bwrap reads its options from a memfd: its argv is the sandbox's /proc/1/cmdline, and must
        # not show the program host paths (stage dir, server pid) or the run's set-up. (The
        # program's own argv, paths inside the sandbox only, stays on the command line.)
        assert per_run[-1] == "--"
        args_fd = args_memfd([*rest, *per_run[:-1]])
        self._fds.append(args_fd)
        # The browser's pipe ends pass through unchanged (the caller owns and closes them).
        passed = sorted({*self._fds, *request.pipe_fds, *self._pass_fds})
        return [*launcher, prefix[0], "--args", str(args_fd), "--", *self.program], passed

    def on_spawn(self, pid: int) -> None:
        """Start the CPU watchdog over the whole tree (RLIMIT_CPU alone is per process)."""
        if self.cgroup is not None and self.cgroup.tracks_cpu:

            async def exceeded() -> None:
                self.cpu_exceeded = True
                await self.kill(pid)

            self._watchdog = asyncio.ensure_future(
                watch_cpu(self.cgroup, self.request.limits.cpu_seconds, exceeded)
            )

    def stop_watchdog(self) -> None:
        """The run is over: stop watching its CPU time."""
        if self._watchdog is not None:
            self._watchdog.cancel()

    async def kill(self, pid: int) -> None:
        """Kill the tree: bwrap first (its pid namespace takes every fork down), then the cgroup."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
        if self.cgroup is not None:  # then anything left in the cgroup, off the event loop
            await asyncio.to_thread(self.cgroup.kill_all)

    def close_fds(self) -> None:
        """Close the memfds (bwrap has read them once the program runs)."""
        for fd in self._fds:
            os.close(fd)
        self._fds.clear()

    def finish(self, read_usage: bool) -> CgroupUsage | None:
        """Close the memfds, empty the cgroup, read its counters, give group and namespace back (a thread)."""
        self.close_fds()
        if self.status_fd is not None:
            os.close(self.status_fd)
            self.status_fd = None
        usage = None
        try:
            if self.cgroup is not None and self.host.pool is not None:
                try:
                    self.cgroup.kill_all()
                    usage = self.cgroup.usage() if read_usage else None
                finally:
                    self.host.pool.release(self.cgroup, emptied=True)
        finally:
            if self.netns is not None and self._netns_pool is not None:
                self._netns_pool.release(self.netns)
        return usage


def raise_setup_failure(outcome: ProcessOutcome) -> None:
    """Raise when the launcher or bwrap failed to set the sandbox up (not the program's fault).

    Raises:
        SandboxStartError: the launcher's setup-failure exit, or bwrap's own one-line error.
    """
    stderr = outcome.stderr.decode("utf-8", "replace")
    if outcome.exit_code == SETUP_EXIT and SETUP_FAILED in stderr:
        raise SandboxStartError(f"sandbox setup failed: {stderr.strip()[:500]}")
    if outcome.exit_code == 1 and stderr.startswith("bwrap: ") and "\n" not in stderr.strip():
        raise SandboxStartError(f"bubblewrap failed: {stderr.strip()}")
