"""Fixtures for the sandbox tests: one ``sandbox`` per backend, and a leftovers check at the end.

Backends register in :data:`BACKENDS` (name -> constructor taking ``SandboxSettings``). A backend
that cannot run on this host raises ``SandboxUnavailableError`` from its constructor; its tests
are then skipped with that message (which says what to install).
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from sandbox.base import Sandbox
from sandbox.bubblewrap import BubblewrapSandbox
from sandbox.config import SandboxSettings
from sandbox.errors import SandboxUnavailableError
from sandbox.gvisor import GVisorSandbox

_SETTINGS = SandboxSettings()
SANDBOX_UIDS = {_SETTINGS.sandbox_uid}
if _SETTINGS.host_uid_base is not None:
    SANDBOX_UIDS |= set(range(_SETTINGS.host_uid_base, _SETTINGS.host_uid_base + 4096))

BACKENDS: dict[str, Callable[[SandboxSettings], Sandbox]] = {
    "local": BubblewrapSandbox,
    # Raises SandboxUnavailableError ("runsc not found; fix: apt-get install runsc") when runsc is missing.
    "gvisor": GVisorSandbox,
}


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


def _is_sandbox_process(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    uid_line = next((line for line in status.splitlines() if line.startswith("Uid:")), "Uid: 0")
    uid = int(uid_line.split()[1])
    name = cmdline.split(b"\0", 1)[0]
    return uid in SANDBOX_UIDS or name.endswith((b"bwrap", b"runsc", b"setpriv"))


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


@pytest.fixture(scope="session")
def sandbox_settings() -> SandboxSettings:
    """Settings for the suite: the real data dir (built library sets), a small cgroup pool."""
    return SandboxSettings(cgroup_pool_size=2)


@pytest.fixture(scope="session", autouse=True)
def no_leftovers() -> Iterator[None]:
    """After the whole session: no process, cgroup, mount or temp dir of ours remains."""
    yield
    leftover_pids: set[int] = set()
    for _ in range(50):
        leftover_pids = descendants(os.getpid())
        if not leftover_pids:
            break
        asyncio.run(asyncio.sleep(0.1))
    assert not leftover_pids, f"processes left: {leftover_pids}"
    assert not our_cgroups(), f"cgroups left: {our_cgroups()}"
    assert not our_mounts(), f"mounts left: {our_mounts()}"
    # Backends name their temp dirs ``agentic-<backend>-<pid>-*``.
    left = list(Path(tempfile.gettempdir()).glob(f"agentic-*-{os.getpid()}-*"))
    assert not left, f"temp dirs left: {left}"


@pytest.fixture(scope="session", params=sorted(BACKENDS))
async def sandbox(
    request: pytest.FixtureRequest, sandbox_settings: SandboxSettings
) -> AsyncIterator[Sandbox]:
    """One sandbox per backend for the whole session (skipped with the reason when unavailable)."""
    try:
        box = BACKENDS[request.param](sandbox_settings)
    except SandboxUnavailableError as exc:
        pytest.skip(f"backend {request.param!r} unavailable: {exc}")
    async with box:
        yield box
