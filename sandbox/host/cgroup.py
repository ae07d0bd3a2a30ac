"""One cgroup v1 group per controller (memory, pids, cpu, cpuacct) for one run at a time.

Why a class of its own: a run's limits are a handful of knob writes, its verdict (peak memory, OOM
kill, pids cap hit) a handful of counter reads, and its end a kill of whatever is left in the group.
Knobs are written with raw ``os`` calls: a knob is a few bytes and buffered file objects cost more
than the kernel work. :mod:`sandbox.host.cgroup_pool` makes, hands out and removes the groups.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from sandbox.base import Limits

__all__ = [
    "CONTROLLERS",
    "Cgroup",
    "CgroupBusyError",
    "CgroupUsage",
    "cgroups_writable",
    "own_cgroup_path",
    "read_int",
    "watch_cpu",
    "write_knob",
]

logger = logging.getLogger(__name__)

CONTROLLERS = ("memory", "pids", "cpu")
"""The controllers every run's group needs (``cpuacct`` is used when writable)."""
_CFS_PERIOD_US = 100_000
_CPU_POLL_S = 0.1


def own_cgroup_path(controller: str) -> str:
    """Return the cgroup path (relative to the hierarchy root) this process is in for ``controller``."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return "/"
    for line in lines:
        _, names, path = line.split(":", 2)
        if controller in names.split(","):
            return path
    return "/"


def write_knob(path: Path, value: str | int) -> None:
    """Write one cgroup knob."""
    # Raw os calls: a cgroup knob is a few bytes, and io.open's buffered wrappers cost more than
    # the kernel work (this runs several times per sandboxed program).
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, str(value).encode())
    finally:
        os.close(fd)


def _read(path: Path) -> str:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.read(fd, 65536).decode()
    finally:
        os.close(fd)


def read_int(path: Path, default: int = 0) -> int:
    try:
        return int(_read(path).strip())
    except (OSError, ValueError):
        return default


def cgroups_writable(root: Path) -> bool:
    """Return True when every controller we need is mounted (v1) and we may create groups in it."""
    for ctrl in CONTROLLERS:
        base = root / ctrl / own_cgroup_path(ctrl).lstrip("/")
        if not (base / "cgroup.procs").exists() or not os.access(base, os.W_OK):
            return False
    return True


class CgroupBusyError(OSError):
    """A group cannot take a lower memory cap (it holds more than that); the pool replaces it."""


@dataclass(frozen=True, kw_only=True)
class CgroupUsage:
    """Counters read after a run."""

    peak_memory_mb: float | None
    oom: bool
    pids_limited: bool


@dataclass(kw_only=True)
class Cgroup:
    """One group per controller, used by one run at a time."""

    name: str
    dirs: dict[str, Path]
    oom_kills_before: int = 0
    baseline_bytes: int = 0
    pids_events_before: int = 0
    has_memsw: bool = False
    limits: Limits | None = field(default=None)
    # Knob values last written (a reused group skips writes that would not change anything) and
    # whether the event counters above are still current (read by :meth:`usage` after a run).
    applied: dict[str, int] = field(default_factory=dict)
    counters_current: bool = False

    @property
    def procs_files(self) -> list[Path]:
        """The ``cgroup.procs`` files (writing a pid there is slow: prefer :attr:`tasks_files`)."""
        return [d / "cgroup.procs" for d in self.dirs.values()]

    @property
    def tasks_files(self) -> list[Path]:
        """The ``tasks`` files a new single-threaded process joins by writing ``0`` (one per controller).

        Why ``tasks`` and ``0``: moving *the current thread* skips the kernel's threadgroup rwsem, whose
        write side waits for an RCU grace period (10-20 ms per run with ``cgroup.procs``; ~30 us this way).
        """
        return [d / "tasks" for d in self.dirs.values()]

    def pids(self) -> set[int]:
        """Return the pids currently in the group.

        A run's processes join every controller before the program starts (or exit), so the pids
        controller alone lists them all; other groups (a stale sweep) read every directory.
        """
        found: set[int] = set()
        dirs = [self.dirs["pids"]] if "pids" in self.dirs else list(self.dirs.values())
        for d in dirs:
            with contextlib.suppress(OSError, ValueError):
                found.update(int(x) for x in _read(d / "cgroup.procs").split())
        return found

    def kill_all(self, timeout_s: float = 5.0) -> None:
        """SIGKILL every process in the group until it is empty (catches forks racing the kill)."""
        deadline = time.monotonic() + timeout_s
        pause = 0.0002  # right after a run the exiting bwrap is often still listed for a few 100 us
        while True:
            pids = self.pids()
            if not pids:
                return
            self.counters_current = False  # processes that lived past usage(): re-read before reuse
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            if time.monotonic() > deadline:
                logger.warning("cgroup %s still has processes %s after %.0fs", self.name, pids, timeout_s)
                return
            time.sleep(pause)
            pause = min(pause * 2, 0.005)

    def kill_others(self, keep: int) -> None:
        """SIGKILL, once, every process in the group but ``keep`` (a subreaper: it reaps them, then exits)."""
        for pid in self.pids() - {keep}:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)

    def _oom_kills(self) -> int:
        try:
            for line in _read(self.dirs["memory"] / "memory.oom_control").splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        except OSError:
            pass
        return 0

    def _pids_events(self) -> int:
        try:
            return int(_read(self.dirs["pids"] / "pids.events").split()[-1])
        except (OSError, ValueError, IndexError):
            return 0

    def _set(self, controller: str, knob: str, value: int) -> None:
        if self.applied.get(knob) != value:
            write_knob(self.dirs[controller] / knob, value)
            self.applied[knob] = value

    def _set_memory(self, memory_mb: int) -> None:
        mem = self.dirs["memory"]
        nbytes = memory_mb * 1024 * 1024
        if self.applied.get("memory.limit_in_bytes") == nbytes:
            return
        self.applied.pop("memory.limit_in_bytes", None)  # unknown until the write succeeded
        if self.has_memsw:
            write_knob(mem / "memory.memsw.limit_in_bytes", -1)  # memsw must stay >= limit while changing
        try:
            write_knob(mem / "memory.limit_in_bytes", nbytes)
        except OSError as exc:
            # EBUSY: the group still holds more than the new cap (charges of earlier runs) and the
            # kernel could not reclaim it; force_empty drops what can go, then one more try.
            if exc.errno != errno.EBUSY:
                raise
            with contextlib.suppress(OSError):
                write_knob(mem / "memory.force_empty", 0)
            try:
                write_knob(mem / "memory.limit_in_bytes", nbytes)
            except OSError as again:
                raise CgroupBusyError(f"cgroup {self.name} holds more than {memory_mb} MB") from again
        if self.has_memsw:
            write_knob(mem / "memory.memsw.limit_in_bytes", nbytes)  # no swapping past the cap
        self.applied["memory.limit_in_bytes"] = nbytes

    def _set_limits(self, limits: Limits, extra_pids: int) -> None:
        self._set_memory(limits.memory_mb)
        # Exact cap, never widened: the pool hands out only groups whose pids.current is 0 (a late-reaped
        # zombie of an earlier run would otherwise take a slot, or widen the cap if added to it).
        self._set("pids", "pids.max", max(limits.pids, 1) + extra_pids)
        self._set("cpu", "cpu.cfs_quota_us", max(int(limits.cpus * _CFS_PERIOD_US), 1000))
        self.limits = limits

    def _restart_counters(self) -> None:
        with contextlib.suppress(OSError):
            write_knob(self.dirs["memory"] / "memory.max_usage_in_bytes", 0)  # resets it to the usage now
        if "cpuacct" in self.dirs:
            write_knob(self.dirs["cpuacct"] / "cpuacct.usage", 0)

    def apply(self, limits: Limits, extra_pids: int = 0) -> None:
        """Set ``limits`` (plus ``extra_pids`` for the launcher's own processes) and reset counters."""
        self._set_limits(limits, extra_pids)
        # Page cache charged by earlier runs stays (evicting it would slow the next start); the
        # peak we report is relative to what the group held before this run.
        self._restart_counters()
        self.baseline_bytes = read_int(self.dirs["memory"] / "memory.usage_in_bytes")
        if not self.counters_current:  # else usage() of the previous run read them, idle since
            self.oom_kills_before = self._oom_kills()
            self.pids_events_before = self._pids_events()
        self.counters_current = False

    def rearm(self, limits: Limits, extra_pids: int = 0) -> None:
        """Hand the group of a waiting (warm) sandbox to its program: the run's limits, counters from now.

        Unlike :meth:`apply`, ``baseline_bytes`` stays what the group held before the sandbox started,
        so the peak reported includes what the waiting interpreter holds (as a cold run's includes its
        start), but not what its start-up used and gave back: the peak restarts from the usage now.
        CPU seconds (``cpuacct``), OOM kills and pids-cap hits count from now.

        Raises:
            CgroupBusyError: the sandbox already holds more memory than the run's cap.
        """
        self._set_limits(limits, extra_pids)
        self._restart_counters()
        self.oom_kills_before = self._oom_kills()
        self.pids_events_before = self._pids_events()
        self.counters_current = False

    @property
    def tracks_cpu(self) -> bool:
        """True when :meth:`cpu_seconds` can measure the whole tree's CPU time."""
        return "cpuacct" in self.dirs

    def cpu_seconds(self) -> float:
        """CPU time (user + system, all processes) used since :meth:`apply`."""
        if "cpuacct" not in self.dirs:
            return 0.0
        return read_int(self.dirs["cpuacct"] / "cpuacct.usage") / 1e9

    def usage(self) -> CgroupUsage:
        """Read the peak memory and whether the OOM killer or the pids cap fired during this run."""
        mem = self.dirs["memory"]
        peak = read_int(mem / "memory.max_usage_in_bytes", -1)
        oom_kills, pids_events = self._oom_kills(), self._pids_events()
        usage = CgroupUsage(
            peak_memory_mb=round(max(peak - self.baseline_bytes, 0) / 1048576, 2) if peak >= 0 else None,
            oom=oom_kills > self.oom_kills_before,
            pids_limited=pids_events > self.pids_events_before,
        )
        # The next run starts from these counts, unless kill_all later finds processes left.
        self.oom_kills_before, self.pids_events_before = oom_kills, pids_events
        self.counters_current = True
        return usage


async def watch_cpu(cgroup: Cgroup, limit_s: float, on_exceeded: Callable[[], Awaitable[None]]) -> None:
    """Await ``on_exceeded()`` once the group's processes together used more than ``limit_s`` CPU seconds.

    Why: ``RLIMIT_CPU`` counts one process (four forked spinners get four budgets), and gVisor ignores
    it; the ``cpuacct`` counter covers the whole tree (the Sentry too). Needs :attr:`Cgroup.tracks_cpu`.
    """
    while True:
        await asyncio.sleep(_CPU_POLL_S)
        used = cgroup.cpu_seconds()
        if used > limit_s:
            logger.debug("cgroup %s used %.2fs CPU (cap %.1fs); killing the run", cgroup.name, used, limit_s)
            await on_exceeded()
            return
