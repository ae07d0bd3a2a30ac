"""A pool of pre-created cgroup v1 groups (memory, pids, cpu) for sandboxed runs.

Why a pool: creating a memory cgroup costs tens of milliseconds, more than a whole ``print(1)``
run. Groups are made once, handed out per run with that run's limits, reset afterwards (counters,
leftover processes killed) and removed on :meth:`CgroupPool.close`. Groups nest under the cgroup
this process already lives in, so the server's own accounting keeps covering its sandboxes.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import threading
import time
from pathlib import Path

from sandbox.base import Limits
from sandbox.host.cgroup import (
    CONTROLLERS,
    Cgroup,
    CgroupBusyError,
    cgroups_writable,
    own_cgroup_path,
    read_int,
    write_knob,
)

__all__ = ["CgroupPool", "PoolClosedError", "open_pool", "sweep_stale"]

logger = logging.getLogger(__name__)

_OPTIONAL = ("cpuacct",)  # total CPU time of the tree (cpu_seconds across all processes)
_counter = itertools.count()


class PoolClosedError(RuntimeError):
    """The pool was closed (its sandbox is closing): no new run may take a group."""


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
        wanted = list(CONTROLLERS)
        for ctrl in _OPTIONAL:
            base = root / ctrl / own_cgroup_path(ctrl).lstrip("/")
            if (base / "cgroup.procs").exists() and os.access(base, os.W_OK):
                wanted.append(ctrl)
        self._bases = {c: root / c / own_cgroup_path(c).lstrip("/") / self._prefix for c in wanted}
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
            write_knob(mem / "memory.use_hierarchy", 1)
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
            write_knob(dirs["memory"] / "memory.swappiness", 0)
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
            if read_int(cg.dirs["pids"] / "pids.current", -1) == 0:
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
            elif not self._closed and read_int(cg.dirs["pids"] / "pids.current", -1) == 0:
                # Full: drop a group still holding zombies rather than this clean one.
                dirty = [g for g in self._free if read_int(g.dirs["pids"] / "pids.current", -1) != 0]
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
