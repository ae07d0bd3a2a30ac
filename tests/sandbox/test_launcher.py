"""The compiled launcher and the pooled network namespaces of the ``local`` backend."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sandbox.backends.bubblewrap import BubblewrapSandbox
from sandbox.base import Limits, RunRequest
from sandbox.config import LocalSettings, SandboxSettings
from sandbox.errors import SandboxUnavailableError
from sandbox.host.launcher import SETUP_EXIT, SETUP_FAILED, build_launcher, launch_args
from sandbox.host.netns import NetnsPool

pytestmark = pytest.mark.privileged

LIMITS = Limits(
    cpu_seconds=5, cpus=1, memory_mb=256, wall_seconds=20, pids=32, disk_mb=16, output_bytes=65536
)
NETNS = "import os; print(os.stat('/proc/self/ns/net').st_ino)"


@pytest.fixture(scope="module")
async def local() -> AsyncIterator[BubblewrapSandbox]:
    async with BubblewrapSandbox(SandboxSettings(local=LocalSettings(cgroup_pool_size=2))) as box:
        yield box


def _py(code: str, *, network: bool = False) -> RunRequest:
    return RunRequest(
        language="python", files={"main.py": code}, entry="main.py", limits=LIMITS, network=network
    )


@pytest.fixture(scope="module")
def launcher() -> Path:
    return build_launcher(SandboxSettings().cache_dir)


def test_launcher_drops_to_the_uid_with_no_groups_and_no_new_privs(launcher: Path) -> None:
    argv = launch_args(launcher, uid=1_234_567, gid=1_234_568, rlimits={"nproc": 7, "core": 0})
    done = subprocess.run(
        [*argv, "/bin/cat", "/proc/self/status"], capture_output=True, text=True, check=True
    )
    fields = dict(line.split(":", 1) for line in done.stdout.splitlines() if ":" in line)
    assert fields["Uid"].split() == ["1234567"] * 4
    assert fields["Gid"].split() == ["1234568"] * 4
    assert fields["Groups"].strip() == ""
    assert fields["NoNewPrivs"].strip() == "1"
    limits = subprocess.run(
        [*argv, "/bin/cat", "/proc/self/limits"], capture_output=True, text=True, check=True
    )
    processes = next(line for line in limits.stdout.splitlines() if line.startswith("Max processes"))
    assert processes.split()[2:4] == ["7", "7"]


@pytest.mark.parametrize(
    ("args", "why"),
    [
        (["-u", "0", "-g", "0", "--", "/bin/true"], "not root"),  # never runs anything as root
        (["-u", "1200000", "--", "/bin/true"], "need -u UID -g GID"),
        (["-r", "bogus=1", "-u", "1200000", "-g", "1200000", "--", "/bin/true"], "bogus"),
        (["-t", "/nonexistent/tasks", "-u", "1200000", "-g", "1200000", "--", "/bin/true"], "join cgroup"),
        (["-n", "/nonexistent", "-u", "1200000", "-g", "1200000", "--", "/bin/true"], "network namespace"),
        (["-u", "1200000", "-g", "1200000", "--", "/nonexistent/program"], "exec"),
    ],
)
def test_launcher_refuses_bad_setups_with_a_clear_message(launcher: Path, args: list[str], why: str) -> None:
    done = subprocess.run([str(launcher), *args], capture_output=True, text=True, check=False)
    assert done.returncode == SETUP_EXIT
    assert done.stderr.startswith(SETUP_FAILED) and why in done.stderr, done.stderr


def test_missing_compiler_is_reported_with_the_fix(tmp_path: Path) -> None:
    with pytest.raises(SandboxUnavailableError, match="apt-get install gcc"):
        build_launcher(tmp_path, compiler="no-such-cc")


def test_a_launcher_others_could_replace_is_refused(tmp_path: Path) -> None:
    binary = build_launcher(tmp_path)
    binary.parent.chmod(0o777)
    try:
        with pytest.raises(SandboxUnavailableError, match="writable by another user"):
            build_launcher(tmp_path)
    finally:
        binary.parent.chmod(0o755)


async def test_runs_get_a_network_namespace_of_their_own_that_is_not_the_hosts(
    local: BubblewrapSandbox,
) -> None:
    host = os.stat("/proc/self/ns/net").st_ino
    # Two at once: each holds its namespace while the other starts.
    slow = NETNS + "; import time; time.sleep(0.5)"
    first, second = await asyncio.gather(local.run(_py(slow)), local.run(_py(slow)))
    inodes = {int(first.stdout), int(second.stdout)}
    assert len(inodes) == 2 and host not in inodes
    # Reused afterwards: a later run gets one of the pooled namespaces, not a new one.
    again = await local.run(_py(NETNS))
    assert int(again.stdout) in inodes
    # network=True: a new namespace of its own (with lo up for the egress forwarder), never the host's.
    own = await local.run(_py(NETNS, network=True))
    assert int(own.stdout) != host and int(own.stdout) not in inodes


async def test_concurrent_runs_cannot_meet_through_abstract_unix_sockets(local: BubblewrapSandbox) -> None:
    server = (
        "import socket, time\n"
        "s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n"
        "s.bind('\\0agentic-meet'); s.listen(1); print('listening', flush=True)\n"
        "time.sleep(2)\n"
    )
    client = (
        "import socket, time\n"
        "time.sleep(0.5)\n"
        "c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n"
        "try:\n    c.connect('\\0agentic-meet'); print('MET')\n"
        "except OSError as exc:\n    print('refused', exc.errno)\n"
    )
    listening, connecting = await asyncio.gather(local.run(_py(server)), local.run(_py(client)))
    assert listening.stdout.strip() == "listening", listening
    assert connecting.stdout.startswith("refused"), connecting


def test_closing_the_netns_pool_unmounts_namespaces_still_in_use(launcher: Path, tmp_path: Path) -> None:
    pool = NetnsPool(launcher, tmp_path / "netns")
    in_use, returned = pool.acquire(), pool.acquire()
    pool.release(returned)
    assert pool.acquire() == returned  # reused, not a new one
    mounted = Path("/proc/self/mountinfo").read_text()
    assert str(in_use) in mounted and str(returned) in mounted
    pool.close()
    pool.release(in_use)  # a run ending after close: nothing left to give back
    assert str(tmp_path) not in Path("/proc/self/mountinfo").read_text()
    assert not list((tmp_path / "netns").iterdir())
    with pytest.raises(OSError, match="closed"):
        pool.acquire()
