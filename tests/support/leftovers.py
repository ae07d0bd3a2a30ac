"""What our sandboxes may leave on the host: processes, cgroups, mounts, temp dirs.

Used by the session-end check in ``tests/conftest.py``, which runs after every other session
fixture (all packages' sandboxes) has closed.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from sandbox.base import Sandbox
from sandbox.config import SandboxSettings

__all__ = ["descendants", "without_idle", "our_cgroups", "our_mounts"]

_SETTINGS = SandboxSettings()
SANDBOX_UIDS = {_SETTINGS.local.sandbox_uid, _SETTINGS.gvisor.sandbox_uid}
if _SETTINGS.local.host_uid_base is not None:
    SANDBOX_UIDS |= set(range(_SETTINGS.local.host_uid_base, _SETTINGS.local.host_uid_base + 4096))


def descendants(pid: int) -> set[int]:
    """Return the pids of every live descendant of ``pid`` that is sandbox machinery or code.

    Other packages' session fixtures (Postgres, Chromium) may still run; we only count processes
    running as the sandbox uid or running bwrap / runsc.
    """
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] == "Z":
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return {p for p in found if _is_sandbox_process(p)}


async def without_idle(
    sandbox: Sandbox, find: Callable[[], Iterable[int]] | None = None, timeout_s: float = 10.0
) -> set[int]:
    """What ``find`` finds (default: our :func:`descendants`) but the idle sandboxes of a warm pool.

    A warm pool (``sandbox``, if it is one) keeps idle sandboxes between runs: they are the pool's,
    not a run's. While one is starting its processes are not known yet, so this waits until the
    pool is still (its idle sandboxes the same before and after the look).
    """
    look = find if find is not None else (lambda: descendants(os.getpid()))
    idle_pids = getattr(sandbox, "idle_pids", None)
    if idle_pids is None:
        return set(look())
    deadline = time.monotonic() + timeout_s
    while True:
        before = idle_pids()
        found = set(look())
        if before is not None and before == idle_pids():
            return found - before
        if time.monotonic() > deadline:
            raise AssertionError("the warm pool did not stop starting sandboxes in time")
        await asyncio.sleep(0.05)


def _is_sandbox_process(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    uid_line = next((line for line in status.splitlines() if line.startswith("Uid:")), "Uid: 0")
    uid = int(uid_line.split()[1])
    name = cmdline.split(b"\0", 1)[0]
    return uid in SANDBOX_UIDS or name.endswith((b"bwrap", b"runsc")) or b"agentic-launch" in name


def our_cgroups() -> list[Path]:
    """Cgroup dirs created by this test process (named ``agentic-<pid>-*`` by the pool)."""
    found: list[Path] = []
    for ctrl in ("memory", "pids", "cpu"):
        found += list(Path("/sys/fs/cgroup", ctrl).rglob(f"agentic-{os.getpid()}-*"))
    return found


def our_mounts() -> list[str]:
    """Host mounts that mention our sandboxes (there should be none)."""
    text = Path("/proc/self/mountinfo").read_text()
    return [line for line in text.splitlines() if "agentic-" in line and f"-{os.getpid()}-" in line]
