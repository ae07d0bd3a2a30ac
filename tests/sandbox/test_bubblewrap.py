"""Tests specific to the ``local`` backend: seccomp details, uid, cgroup pool, rlimit fallback, speed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sandbox.backends.bubblewrap import BubblewrapSandbox
from sandbox.base import EndReason, Limits, RunRequest, RunResult
from sandbox.commands import build_argv
from sandbox.config import LocalSettings, SandboxSettings
from sandbox.errors import InvalidRunRequestError, SandboxStartError, SandboxUnavailableError
from sandbox.host.bwrap_run import UID_SLOTS
from sandbox.host.cgroup_pool import CgroupPool
from sandbox.host.seccomp import bpf_program
from tests.sandbox.test_conformance import fill_writable_places

pytestmark = pytest.mark.privileged


@pytest.fixture(scope="module")
async def local() -> AsyncIterator[BubblewrapSandbox]:
    async with BubblewrapSandbox(SandboxSettings(local=LocalSettings(cgroup_pool_size=2))) as box:
        yield box


@pytest.fixture(scope="module")
async def local_rlimits() -> AsyncIterator[BubblewrapSandbox]:
    async with BubblewrapSandbox(SandboxSettings(local=LocalSettings(use_cgroups=False))) as box:
        assert not box.uses_cgroups
        yield box


def pool_of(box: BubblewrapSandbox) -> CgroupPool:
    """The open backend's cgroup pool (the tests here need cgroups)."""
    assert box._host is not None and box._host.pool is not None
    return box._host.pool


def sleeper(seconds: int, marker: str) -> str:
    """Python source that replaces the process with a sleeper whose host cmdline carries ``marker``."""
    return (
        f"os.execv('/usr/bin/python3', ['python3', '-c', 'import time; time.sleep({seconds})', '{marker}'])"
    )


async def run_py(box: BubblewrapSandbox, code: str, **kwargs: object) -> RunResult:
    request = RunRequest(files={"main.py": code}, language="python", entry="main.py", **kwargs)  # type: ignore[arg-type]
    return await box.run(request)


SYSCALL_PROBE = r"""
import ctypes, errno, json, socket
libc = ctypes.CDLL(None, use_errno=True)
out = {}
def sys(name, nr, *args):
    rc = libc.syscall(nr, *args)
    out[name] = 0 if rc >= 0 else errno.errorcode[ctypes.get_errno()]
sys('clone3', 435, None, 0)
sys('io_uring_setup', 425, 1, None)
sys('userfaultfd', 323, 0)
sys('clone_newuser', 56, 0x10000000 | 17, 0, 0, 0, 0)
families = [
    ('inet', socket.AF_INET, socket.SOCK_STREAM), ('packet', 17, socket.SOCK_RAW),
    ('netlink', socket.AF_NETLINK, socket.SOCK_RAW), ('unix', socket.AF_UNIX, socket.SOCK_STREAM),
    ('raw', socket.AF_INET, socket.SOCK_RAW),
]
for name, fam, typ in families:
    try:
        socket.socket(fam, typ).close()
        out[name] = 0
    except OSError as exc:
        out[name] = errno.errorcode[exc.errno]
import threading, subprocess
t = threading.Thread(target=lambda: None); t.start(); t.join()
out['subprocess'] = subprocess.run(['/bin/echo', 'ok'], capture_output=True, text=True).stdout.strip()
print(json.dumps(out))
"""


async def test_seccomp_denials_without_network(local: BubblewrapSandbox) -> None:
    result = await run_py(local, SYSCALL_PROBE)
    assert result.ok, result.stderr
    data = json.loads(result.stdout)
    assert data["clone3"] == "ENOSYS"  # so libc falls back to clone, which we can inspect
    assert data["io_uring_setup"] == "ENOSYS"
    assert data["userfaultfd"] == "EPERM"
    assert data["clone_newuser"] == "EPERM"
    for family in ("inet", "packet", "netlink", "raw"):
        assert data[family] == "EAFNOSUPPORT", (family, data)
    assert data["unix"] == 0
    assert data["subprocess"] == "ok"  # threads and fork/exec still work


async def test_seccomp_with_network_allows_inet_only(local: BubblewrapSandbox) -> None:
    result = await run_py(local, SYSCALL_PROBE, network=True)
    assert result.ok, result.stderr
    data = json.loads(result.stdout)
    assert data["inet"] == 0 and data["unix"] == 0
    assert data["packet"] in ("EPERM", "EAFNOSUPPORT")
    assert data["raw"] in ("EPERM", "EAFNOSUPPORT")
    assert data["clone3"] == "ENOSYS"


def test_bpf_is_cached_per_network_setting() -> None:
    assert bpf_program(False) is bpf_program(False)
    assert bpf_program(False) != bpf_program(True)


async def test_runs_as_unprivileged_host_uid(local: BubblewrapSandbox) -> None:
    marker = f"agentic-uid-{uuid.uuid4().hex}"
    code = f"import os\nprint(os.getuid(), os.getgid(), os.getgroups(), flush=True)\n{sleeper(2, marker)}\n"
    task = asyncio.ensure_future(run_py(local, code, limits=Limits(wall_seconds=5)))
    host_uid: int | None = None
    for _ in range(100):
        await asyncio.sleep(0.05)
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    if marker.encode() in Path(f"/proc/{entry}/cmdline").read_bytes():
                        status = Path(f"/proc/{entry}/status").read_text()
                        host_uid = int(
                            next(x for x in status.splitlines() if x.startswith("Uid:")).split()[1]
                        )
                except (OSError, StopIteration):
                    continue
        if host_uid is not None:
            break
    result = await task
    assert result.stdout.startswith("65534 65534 [")
    base = local.settings.local.host_uid_base
    assert host_uid is not None and base is not None
    # really unprivileged on the host, not root mapped into a namespace
    assert base <= host_uid < base + UID_SLOTS


async def test_peak_memory_and_pool_reuse(local: BubblewrapSandbox) -> None:
    result = await run_py(local, "x = bytearray(64 * 1024 * 1024)\nprint(len(x))\n")
    assert result.ok
    assert result.peak_memory_mb is not None and 60 <= result.peak_memory_mb < 200
    small = await run_py(local, "print(1)")
    assert small.peak_memory_mb is not None and small.peak_memory_mb < 60
    dirs_before = sorted(p.name for p in pool_of(local).base_dirs["pids"].iterdir() if p.is_dir())
    for _ in range(5):
        assert (await run_py(local, "print(2)")).ok
    await asyncio.sleep(0.2)
    dirs_after = sorted(p.name for p in pool_of(local).base_dirs["pids"].iterdir() if p.is_dir())
    assert dirs_after == dirs_before  # groups are reused, not created per run


async def test_cpu_budget_covers_the_whole_tree(local: BubblewrapSandbox) -> None:
    """RLIMIT_CPU is per process; the cgroup watchdog stops 4 spinning workers at the *total* budget."""
    code = """
import os, sys, time
for _ in range(4):
    if os.fork() == 0:
        while True:
            for _ in range(200000):
                pass
            os.write(1, f"{time.process_time()}\\n".encode())
os.wait()
"""
    result = await run_py(local, code, limits=Limits(cpu_seconds=1, cpus=2, wall_seconds=30))
    assert result.reason is EndReason.KILLED, (result.reason, result.stderr[-300:])
    per_worker = [float(x) for x in result.stdout.split()]
    assert per_worker and max(per_worker) < 0.9  # each worker alone would have reached ~1 s


async def test_signal_exit_code_is_negative(local: BubblewrapSandbox) -> None:
    result = await run_py(local, "import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n")
    assert result.exit_code == -11 and result.reason is EndReason.KILLED


async def test_tmp_shares_the_scratch_cap(local: BubblewrapSandbox) -> None:
    code = (
        "import os\ntry:\n    open('/tmp/big', 'wb').write(b'x' * (12 << 20))\n    print('wrote')\n"
        "except OSError as exc:\n    print('refused', exc.errno)\n"
    )
    result = await run_py(local, code, limits=Limits(disk_mb=8))
    assert "wrote" not in result.stdout


async def test_close_is_idempotent_and_removes_groups() -> None:
    box = await BubblewrapSandbox(SandboxSettings(local=LocalSettings(cgroup_pool_size=1))).open()
    assert (await run_py(box, "print(1)")).ok
    bases = list(pool_of(box).base_dirs.values())
    assert box._host is not None
    etc = box._host.stage.root
    await box.close()
    await box.close()
    assert not any(b.exists() for b in bases)
    assert not etc.exists()


async def test_reused_group_survives_many_runs_in_a_row() -> None:
    """Zombies of earlier runs (reaped late by host pid 1) must not eat a reused group's pids cap."""
    async with BubblewrapSandbox(SandboxSettings(local=LocalSettings(cgroup_pool_size=1))) as box:
        request = RunRequest(command=("/bin/true",), limits=Limits(pids=4))
        results = [await box.run(request) for _ in range(40)]
    failed = [(i, r.exit_code, r.stderr[-200:]) for i, r in enumerate(results) if not r.ok]
    assert not failed, f"runs failed on a reused group: {failed[:3]}"


async def test_close_during_runs_ends_them_and_removes_every_group() -> None:
    box = await BubblewrapSandbox(SandboxSettings(local=LocalSettings(cgroup_pool_size=1))).open()
    bases = list(pool_of(box).base_dirs.values())
    # More runs than pooled groups: two groups are created on demand while close() may be running.
    runs = [asyncio.ensure_future(run_py(box, "import time\ntime.sleep(30)\n")) for _ in range(3)]
    await asyncio.sleep(1.0)
    started = time.monotonic()
    await box.close()
    results = await asyncio.wait_for(asyncio.gather(*runs, return_exceptions=True), timeout=10)
    assert time.monotonic() - started < 10
    assert all(isinstance(r, RunResult) and not r.ok for r in results), results
    assert not any(b.exists() for b in bases)
    with pytest.raises(SandboxStartError):
        await run_py(box, "print(1)")


async def test_leftovers_of_a_dead_server_are_swept() -> None:
    dead = subprocess.Popen(["/bin/true"])
    dead.wait()
    stage = Path(tempfile.gettempdir()) / f"agentic-bwrap-{dead.pid}-stale"
    (stage / "etc").mkdir(parents=True)
    pids_parent = CgroupPool(SandboxSettings().local.cgroup_root, 0).base_dirs["pids"].parent
    parent = pids_parent / f"agentic-{dead.pid}-0"
    (parent / "run-0").mkdir(parents=True)
    box = await BubblewrapSandbox(SandboxSettings(local=LocalSettings(cgroup_pool_size=1))).open()
    try:
        assert not stage.exists()
        assert not parent.exists()
    finally:
        await box.close()
        shutil.rmtree(stage, ignore_errors=True)
        for group in (parent / "run-0", parent):
            with contextlib.suppress(OSError):
                group.rmdir()


async def test_missing_bwrap_is_reported_by_open() -> None:
    box = BubblewrapSandbox(SandboxSettings(local=LocalSettings(bwrap_path=Path("/nonexistent/bwrap"))))
    with pytest.raises(SandboxUnavailableError, match="apt-get install bubblewrap"):
        await box.open()
    with pytest.raises(SandboxStartError, match="not open"):
        await run_py(box, "print(1)")


def test_build_argv() -> None:
    py = RunRequest(files={"a.py": ""}, language="python", entry="a.py", args=("x",))
    assert build_argv(py) == ["/usr/bin/python3", "-s", "-B", "a.py", "x"]
    assert build_argv(RunRequest(command=("ls", "-l"), args=("/",))) == ["ls", "-l", "/"]
    dash = RunRequest(files={"-c": ""}, language="python", entry="-c")
    assert build_argv(dash)[-1] == "./-c"
    for bad in (
        RunRequest(),
        RunRequest(files={"a.py": ""}, language="python", entry="/etc/passwd"),
        RunRequest(command=()),
        RunRequest(files={"a.py": ""}, language="ruby", entry="a.py"),  # type: ignore[arg-type]
    ):
        with pytest.raises(InvalidRunRequestError):
            build_argv(bad)


# --- rlimit fallback (cgroups not writable) --------------------------------------------------------


async def test_rlimit_fallback_basics(local_rlimits: BubblewrapSandbox) -> None:
    result = await run_py(local_rlimits, "print('hi')")
    assert result.ok and result.stdout == "hi\n" and result.peak_memory_mb is None


async def test_rlimit_fallback_every_writable_place_is_sized(local_rlimits: BubblewrapSandbox) -> None:
    """rlimits do not count tmpfs pages, so here every writable tmpfs must be sized."""
    await fill_writable_places(local_rlimits, disk_mb=8)


async def test_rlimit_fallback_memory(local_rlimits: BubblewrapSandbox) -> None:
    result = await run_py(local_rlimits, "x = bytearray(1024**3)\n", limits=Limits(memory_mb=256))
    assert result.reason is EndReason.OOM, (result.reason, result.stderr[-300:])


async def test_rlimit_fallback_fork_bomb(local_rlimits: BubblewrapSandbox) -> None:
    code = "import os, time\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n"
    code += "        time.sleep(0.01)\n"
    start = time.monotonic()
    result = await run_py(local_rlimits, code, limits=Limits(pids=16, wall_seconds=2))
    assert result.reason in (EndReason.TIMEOUT, EndReason.KILLED)
    assert time.monotonic() - start < 10
    assert (await run_py(local_rlimits, "print(1)")).ok


async def test_rlimit_fallback_timeout_kills_tree(local_rlimits: BubblewrapSandbox) -> None:
    marker = f"agentic-fallback-{uuid.uuid4().hex}"
    code = (
        "import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
        f"        {sleeper(300, marker)}\n"
        "    os._exit(0)\ntime.sleep(0.5)\n"
        "print(len([p for p in os.listdir('/proc') if p.isdigit()]), flush=True)\n"
        "time.sleep(60)\n"
    )
    result = await run_py(local_rlimits, code, limits=Limits(wall_seconds=1.5))
    assert result.reason is EndReason.TIMEOUT
    assert int(result.stdout) >= 3  # init, the parent and the daemon were all alive
    await asyncio.sleep(0.2)
    alive = [e for e in os.listdir("/proc") if e.isdigit() and _cmdline_has(e, marker)]
    assert alive == []


async def test_rlimit_fallback_typescript(local_rlimits: BubblewrapSandbox) -> None:
    hello = RunRequest(
        files={"m.ts": "console.log([1, 2].map((x) => x * 2))"}, language="typescript", entry="m.ts"
    )
    result = await local_rlimits.run(hello)
    assert result.ok and result.stdout == "[ 2, 4 ]\n", result.stderr[-300:]
    hog = "const a = []; while (true) a.push(new Array(1e6).fill(1));"
    request = RunRequest(
        files={"m.ts": hog}, language="typescript", entry="m.ts", limits=Limits(memory_mb=256)
    )
    assert (await local_rlimits.run(request)).reason is EndReason.OOM


async def test_network_true_does_not_reach_host_listener(local: BubblewrapSandbox) -> None:
    """network=True: a namespace of its own (only the egress proxy leads out), without host loopback."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    code = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=5).close()\nprint('ok')\n"
    try:
        result = await run_py(local, code, network=True)
        assert not result.ok and "ConnectionRefusedError" in result.stderr, result.stderr
    finally:
        listener.close()


def _cmdline_has(pid: str, marker: str) -> bool:
    try:
        return marker.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


# --- speed ----------------------------------------------------------------------------------------


async def test_print_one_overhead(local: BubblewrapSandbox) -> None:
    """``print(1)`` in the sandbox vs a bare interpreter; the figure is in the report (-s to see it)."""

    async def bare() -> None:
        proc = await asyncio.create_subprocess_exec(
            "/usr/bin/python3", "-c", "print(1)", stdout=asyncio.subprocess.PIPE
        )
        await proc.communicate()

    request = RunRequest(files={"main.py": "print(1)"}, language="python", entry="main.py")
    for _ in range(2):
        await bare()
        await local.run(request)
    bare_s: list[float] = []
    box_s: list[float] = []
    for _ in range(15):
        start = time.perf_counter()
        await bare()
        bare_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        await local.run(request)
        box_s.append(time.perf_counter() - start)
    ratio = statistics.median(box_s) / statistics.median(bare_s)
    figure = (
        f"print(1): bare {statistics.median(bare_s) * 1000:.1f} ms, "
        f"sandbox {statistics.median(box_s) * 1000:.1f} ms (medians), ratio {ratio:.2f}, "
        f"best-of ratio {min(box_s) / min(bare_s):.2f}, load {os.getloadavg()[0]:.1f}"
    )
    print(figure)
    if os.getloadavg()[0] > (os.cpu_count() or 1):
        # Five processes per run vs one: on an oversubscribed host every extra wake-up waits for a
        # time slice, so the ratio measures the neighbours, not us.
        pytest.skip(f"host is oversubscribed; not judging the ratio ({figure})")
    assert ratio < 2.0, figure  # target ~1.6x on a quiet host


async def test_lower_memory_cap_than_a_reused_groups_charge() -> None:
    """A pooled group still charged with unreclaimable pages (shmem, no swap) above the new cap.

    The kernel refuses ``memory.limit_in_bytes`` below that (EBUSY): the run must still start and
    the pool keep its size.
    """
    async with BubblewrapSandbox(SandboxSettings(local=LocalSettings(cgroup_pool_size=1))) as box:
        (group,) = pool_of(box)._free
        shm = Path("/dev/shm") / f"agentic-charge-{uuid.uuid4().hex}"
        join = " && ".join(f"echo 0 > {p}" for p in group.tasks_files)
        try:  # 48 MB of shmem charged to the group, held after the writer exits
            subprocess.run(["/bin/sh", "-c", f"{join} && head -c 48M /dev/zero > {shm}"], check=True)
            results = [
                await run_py(box, "print('small')", limits=Limits(memory_mb=mb)) for mb in (16, 16, 256)
            ]
        finally:
            shm.unlink(missing_ok=True)
        assert [r.stdout for r in results] == ["small\n"] * 3, [r.stderr[-300:] for r in results]
        assert len(pool_of(box)._free) == 1 and len(pool_of(box)._all) == 1
