"""A pool of pre-created cgroup v1 groups (memory, pids, cpu) for sandboxed runs.

Why a pool: creating a memory cgroup costs tens of milliseconds, more than a whole ``print(1)``
run. Groups are made once, handed out per run with that run's limits, reset afterwards (counters,
leftover processes killed) and removed on :meth:`CgroupPool.close`. Groups nest under the cgroup
this process already lives in, so the server's own accounting keeps covering its sandboxes.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import logging
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from sandbox.base import Limits

__all__ = [
    "Cgroup",
    "CgroupPool",
    "CgroupBusyError",
    "CgroupUsage",
    "PoolClosedError",
    "cgroups_writable",
    "open_pool",
    "sweep_stale",
]

logger = logging.getLogger(__name__)

_CONTROLLERS = ("memory", "pids", "cpu")
_OPTIONAL = ("cpuacct",)  # total CPU time of the tree (cpu_seconds across all processes)
_CFS_PERIOD_US = 100_000
_counter = itertools.count()


def _own_path(controller: str) -> str:
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


def _write(path: Path, value: str | int) -> None:
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


def _read_int(path: Path, default: int = 0) -> int:
    try:
        return int(_read(path).strip())
    except (OSError, ValueError):
        return default


def cgroups_writable(root: Path) -> bool:
    """Return True when every controller we need is mounted (v1) and we may create groups in it."""
    for ctrl in _CONTROLLERS:
        base = root / ctrl / _own_path(ctrl).lstrip("/")
        if not (base / "cgroup.procs").exists() or not os.access(base, os.W_OK):
            return False
    return True


class CgroupBusyError(OSError):
    """A group cannot take a lower memory cap (it holds more than that); the pool replaces it."""


class PoolClosedError(RuntimeError):
    """The pool was closed (its sandbox is closing): no new run may take a group."""


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
            _write(self.dirs[controller] / knob, value)
            self.applied[knob] = value

    def apply(self, limits: Limits, extra_pids: int = 0) -> None:
        """Set ``limits`` (plus ``extra_pids`` for the launcher's own processes) and reset counters."""
        mem = self.dirs["memory"]
        nbytes = limits.memory_mb * 1024 * 1024
        if self.applied.get("memory.limit_in_bytes") != nbytes:
            self.applied.pop("memory.limit_in_bytes", None)  # unknown until the write succeeded
            if self.has_memsw:
                _write(mem / "memory.memsw.limit_in_bytes", -1)  # memsw must stay >= limit while changing
            try:
                _write(mem / "memory.limit_in_bytes", nbytes)
            except OSError as exc:
                # EBUSY: the group still holds more than the new cap (charges of earlier runs) and the
                # kernel could not reclaim it; force_empty drops what can go, then one more try.
                if exc.errno != errno.EBUSY:
                    raise
                with contextlib.suppress(OSError):
                    _write(mem / "memory.force_empty", 0)
                try:
                    _write(mem / "memory.limit_in_bytes", nbytes)
                except OSError as again:
                    raise CgroupBusyError(
                        f"cgroup {self.name} holds more than {limits.memory_mb} MB"
                    ) from again
            if self.has_memsw:
                _write(mem / "memory.memsw.limit_in_bytes", nbytes)  # no swapping past the cap
            self.applied["memory.limit_in_bytes"] = nbytes
        with contextlib.suppress(OSError):
            _write(mem / "memory.max_usage_in_bytes", 0)
        # Exact cap, never widened: the pool hands out only groups whose pids.current is 0 (a late-reaped
        # zombie of an earlier run would otherwise take a slot, or widen the cap if added to it).
        self._set("pids", "pids.max", max(limits.pids, 1) + extra_pids)
        self._set("cpu", "cpu.cfs_quota_us", max(int(limits.cpus * _CFS_PERIOD_US), 1000))
        # Page cache charged by earlier runs stays (evicting it would slow the next start); the
        # peak we report is relative to what the group held before this run.
        self.baseline_bytes = _read_int(mem / "memory.usage_in_bytes")
        if "cpuacct" in self.dirs:
            _write(self.dirs["cpuacct"] / "cpuacct.usage", 0)
        if not self.counters_current:  # else usage() of the previous run read them, idle since
            self.oom_kills_before = self._oom_kills()
            self.pids_events_before = self._pids_events()
        self.counters_current = False
        self.limits = limits

    @property
    def tracks_cpu(self) -> bool:
        """True when :meth:`cpu_seconds` can measure the whole tree's CPU time."""
        return "cpuacct" in self.dirs

    def cpu_seconds(self) -> float:
        """CPU time (user + system, all processes) used since :meth:`apply`."""
        if "cpuacct" not in self.dirs:
            return 0.0
        return _read_int(self.dirs["cpuacct"] / "cpuacct.usage") / 1e9

    def usage(self) -> CgroupUsage:
        """Read the peak memory and whether the OOM killer or the pids cap fired during this run."""
        mem = self.dirs["memory"]
        peak = _read_int(mem / "memory.max_usage_in_bytes", -1)
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


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale(parent: Path) -> None:
    """Remove ``agentic-<pid>-*`` groups under ``parent`` left by a server that died without close()."""
    try:
        entries = list(parent.glob("agentic-*-*"))
    except OSError:
        return
    for base in entries:
        try:
            owner = int(base.name.split("-")[1])
        except (IndexError, ValueError):
            continue
        if owner == os.getpid() or _pid_alive(owner):
            continue
        logger.info("removing stale cgroup %s (owner pid %d is gone)", base, owner)
        for group in [p for p in base.iterdir() if p.is_dir()] + [base]:
            stale = Cgroup(name=group.name, dirs={"any": group})
            stale.kill_all(timeout_s=1.0)
            with contextlib.suppress(OSError):
                group.rmdir()


class CgroupPool:
    """Pre-created :class:`Cgroup` objects under ``<root>/<controller>/<own path>/agentic-<pid>-<n>``."""

    def __init__(self, root: Path, size: int) -> None:
        self.root = root
        self.size = max(size, 0)
        self._prefix = f"agentic-{os.getpid()}-{next(_counter)}"
        wanted = list(_CONTROLLERS)
        for ctrl in _OPTIONAL:
            base = root / ctrl / _own_path(ctrl).lstrip("/")
            if (base / "cgroup.procs").exists() and os.access(base, os.W_OK):
                wanted.append(ctrl)
        self._bases = {c: root / c / _own_path(c).lstrip("/") / self._prefix for c in wanted}
        self._free: list[Cgroup] = []
        self._all: dict[str, Cgroup] = {}
        self._lock = threading.Lock()
        self._seq = itertools.count()
        self._closed = False

    @property
    def base_dirs(self) -> dict[str, Path]:
        """The per-controller parent directories owned by this pool."""
        return dict(self._bases)

    def fill(self) -> None:
        """Create the pool's parent groups and ``size`` ready groups (slow: call from a thread)."""
        for base in self._bases.values():
            sweep_stale(base.parent)
            base.mkdir(exist_ok=True)
        mem = self._bases["memory"]
        with contextlib.suppress(OSError):
            _write(mem / "memory.use_hierarchy", 1)
        while True:
            with self._lock:
                if len(self._free) >= self.size or self._closed:
                    return
            cg = self._create()
            with self._lock:
                self._free.append(cg)

    def _create(self) -> Cgroup:
        name = f"run-{next(self._seq)}"
        dirs = {c: base / name for c, base in self._bases.items()}
        for d in dirs.values():
            d.mkdir()
        cg = Cgroup(name=name, dirs=dirs, has_memsw=(dirs["memory"] / "memory.memsw.limit_in_bytes").exists())
        with self._lock:
            closed = self._closed
            if not closed:
                self._all[name] = cg
        if closed:  # close() ran while we were creating it: it did not see this group
            self._remove(cg)
            raise PoolClosedError("cgroup pool is closed")
        with contextlib.suppress(OSError):
            _write(dirs["memory"] / "memory.swappiness", 0)
        return cg

    def acquire(self, limits: Limits, extra_pids: int = 0) -> Cgroup:
        """Return a group configured for ``limits`` (creates one when the pool is empty)."""
        with self._lock:
            if self._closed:
                raise PoolClosedError("cgroup pool is closed")
            cg = self._take_clean()
        if cg is None:
            for base in self._bases.values():
                base.mkdir(exist_ok=True)
            cg = self._create()
        try:
            cg.apply(limits, extra_pids)
        except CgroupBusyError as exc:
            # Retire it (its charge moves to the parent on rmdir) and give the run a fresh group,
            # which goes back to the pool afterwards: the pool keeps its size.
            logger.info("%s; replacing it with a fresh group", exc)
            self._remove(cg)
            cg = self._create()
            cg.apply(limits, extra_pids)
        return cg

    def _take_clean(self) -> Cgroup | None:
        """Pop a free group that holds no process at all, zombies included (call under the lock).

        Why: zombies of an earlier run (reaped late by whoever inherited them) still count in
        ``pids.current``; a group holding any stays free for later (they are reaped eventually),
        and the run gets another group, so its pids cap is exact.
        """
        for index in range(len(self._free) - 1, -1, -1):
            cg = self._free[index]
            if _read_int(cg.dirs["pids"] / "pids.current", -1) == 0:
                return self._free.pop(index)
        if self._free:
            logger.debug("every free cgroup still holds zombies of earlier runs; making a new one")
        return None

    def release(self, cg: Cgroup, *, emptied: bool = False) -> None:
        """Kill anything left in ``cg`` and give it back (or remove it if the pool is full/closed).

        ``emptied=True``: the caller has just run :meth:`Cgroup.kill_all` (skip a second pass).
        """
        if not emptied:
            cg.kill_all()
        with self._lock:
            keep = not self._closed and len(self._free) < self.size
            if keep:
                self._free.append(cg)
            elif not self._closed and _read_int(cg.dirs["pids"] / "pids.current", -1) == 0:
                # Full: drop a group still holding zombies rather than this clean one.
                dirty = [g for g in self._free if _read_int(g.dirs["pids"] / "pids.current", -1) != 0]
                if dirty:
                    self._free.remove(dirty[0])
                    self._free.append(cg)
                    cg = dirty[0]
        if not keep:
            self._remove(cg)

    def _remove(self, cg: Cgroup) -> None:
        # A killed task leaves its groups only once it has fully exited, which can take a while for a
        # big address space on a loaded host: keep killing and retrying for up to 5 s (0.5 s was not
        # always enough, and the group and its parents were then left behind).
        deadline = time.monotonic() + 5.0
        for d in cg.dirs.values():
            while True:
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:  # EBUSY: tasks left or still exiting
                    if time.monotonic() > deadline:
                        logger.warning("could not remove cgroup %s", d)
                        break
                    cg.kill_all(timeout_s=max(deadline - time.monotonic(), 0.0))
                    time.sleep(0.01)
        with self._lock:
            self._all.pop(cg.name, None)
            last = self._closed and not self._all
        if last:  # a run that outlived close() returned the last group: the parents go too
            self._remove_bases()

    def _remove_bases(self) -> None:
        for base in self._bases.values():
            with contextlib.suppress(FileNotFoundError, OSError):
                base.rmdir()

    def kill_everything(self) -> None:
        """SIGKILL the processes of every group (in use or not); the groups stay."""
        with self._lock:
            groups = list(self._all.values())
        for cg in groups:
            cg.kill_all()

    def close(self) -> None:
        """Kill every process in the pool's groups and remove them all; idempotent.

        Safe against runs still in flight: a group created or released after this call is removed
        by whoever holds it last, and the parent groups with it.
        """
        with self._lock:
            self._closed = True
            groups = list(self._all.values())
            self._free.clear()
        for cg in groups:
            self._remove(cg)
        self._remove_bases()


def open_pool(root: Path, size: int, *, enabled: bool, fallback: str) -> CgroupPool | None:
    """Return a filled pool under ``root``, or None (logging ``fallback``) when cgroups cannot be used.

    Args:
        root: the cgroup v1 mount root (``/sys/fs/cgroup``).
        size: groups made ahead of time (creating one costs ~40 ms).
        enabled: False when settings turned cgroups off.
        fallback: what the backend does without cgroups, for the warning.
    """
    if not enabled or not cgroups_writable(root):
        why = "disabled by settings" if not enabled else "(v1 memory, pids, cpu) not writable"
        logger.warning("cgroups %s; %s", why, fallback)
        return None
    pool = CgroupPool(root, size)
    try:
        pool.fill()
    except OSError as exc:
        logger.warning("cgroups not usable (%s); %s", exc, fallback)
        pool.close()
        return None
    return pool
