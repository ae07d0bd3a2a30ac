"""A pool of empty network namespaces for runs without network.

Why: a new network namespace per run (``bwrap --unshare-net``) costs ~0.5-1 ms of CPU to create,
plus the kernel's asynchronous teardown. A namespace with no interface up holds nothing of a run
once the run's processes are gone (sockets, abstract unix names and ports die with them), and the
sandboxed code cannot configure it (it is owned by the host's user namespace, where the code has
no capabilities). So each namespace is reused, by one run at a time, which keeps concurrent runs
from meeting through abstract unix sockets.

Namespaces are bind-mounted on files in a directory of ours; :meth:`NetnsPool.close` unmounts them.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
from pathlib import Path

from sandbox.host.bwrap_stage import unmount
from sandbox.host.launcher import make_netns

__all__ = ["NetnsPool"]

logger = logging.getLogger(__name__)


class NetnsPool:
    """Empty network namespaces bound under ``directory``, handed to one run at a time."""

    def __init__(self, launcher: Path, directory: Path) -> None:
        self._launcher = launcher
        self._dir = directory
        self._free: list[Path] = []
        self._all: set[Path] = set()
        self._seq = itertools.count()
        self._lock = threading.Lock()
        self._closed = False

    def acquire(self) -> Path:
        """A namespace file for one run (created when none is free; blocking, call from a thread).

        Raises:
            OSError: a new namespace could not be created.
        """
        with self._lock:
            if self._closed:
                raise OSError("network namespace pool is closed")
            if self._free:
                return self._free.pop()
        self._dir.mkdir(mode=0o755, parents=True, exist_ok=True)
        path = self._dir / f"netns-{next(self._seq)}"
        make_netns(self._launcher, path)
        with self._lock:
            closed = self._closed
            if not closed:
                self._all.add(path)
        if closed:  # close() ran while we were creating it: it did not see this one
            self._unbind(path)
            raise OSError("network namespace pool is closed")
        return path

    @staticmethod
    def _unbind(path: Path) -> None:
        if unmount(path):
            with contextlib.suppress(OSError):
                path.unlink()

    def release(self, path: Path) -> None:
        """Give back a namespace whose run has no process left (after close: already gone)."""
        with self._lock:
            if not self._closed:
                self._free.append(path)

    def close(self) -> None:
        """Unmount every namespace, in use or not; idempotent.

        Unmounting one a run is still in does not disturb that run (its processes hold the
        namespace itself, not our bind mount); the namespace ends with its last process.
        """
        with self._lock:
            self._closed = True
            paths, self._all, self._free = self._all, set(), []
        for path in paths:
            self._unbind(path)
