"""Forked warm sandboxes (``warm.fork``): what siblings of one zygote share and what they never see.

The shared suites (conformance, containment, ``test_warm``) run with fork mode too (``local+fork``,
``local+warm+fork``). Here: runs going at the same time, the zygote out of reach, limits from
hand-over, the zygote's death and replacement, and nothing left after close.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sandbox.backends.bubblewrap import BubblewrapSandbox
from sandbox.base import EndReason, Limits, RunRequest, RunResult
from sandbox.config import SandboxSettings, WarmSettings
from sandbox.host.seccomp_policy import ZYGOTE_ALLOWED, policy, zygote_policy
from sandbox.host.warm_fork import ForkWarmSandbox
from sandbox.registry import verdict
from sandbox.warm import WarmPool

pytestmark = pytest.mark.privileged


def _settings(**warm: object) -> SandboxSettings:
    return SandboxSettings(warm=WarmSettings(prewarm=[], fork=True, **warm))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
async def backend() -> AsyncIterator[BubblewrapSandbox]:
    """An open local backend in fork mode."""
    box = BubblewrapSandbox(_settings())
    problem = verdict(await box.preflight())
    if problem is not None:
        pytest.skip(f"local backend unavailable: {problem}")
    async with box:
        yield box


def py(code: str, **kwargs: object) -> RunRequest:
    return RunRequest(files={"main.py": code}, language="python", entry="main.py", **kwargs)  # type: ignore[arg-type]


async def forked(backend: BubblewrapSandbox, request: RunRequest) -> ForkWarmSandbox:
    sandbox = await backend.prestart(request)
    assert isinstance(sandbox, ForkWarmSandbox), type(sandbox)
    return sandbox


async def run_forked(backend: BubblewrapSandbox, request: RunRequest) -> RunResult:
    return await (await forked(backend, request)).handover(request, None)


def _argv0(pid: int | str) -> bytes:
    return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]


def zygote_pids() -> set[int]:
    """Host pids of running zygotes (not their children, which share their command line)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if b"/opt/warm/zygote.py" not in (entry / "cmdline").read_bytes():
                    continue
                status = (entry / "status").read_text().splitlines()
                ppid = next(line.split()[1] for line in status if line.startswith("PPid:"))
                if _argv0(entry.name).endswith(b"python3") and _argv0(ppid).endswith(b"bwrap"):
                    found.add(int(entry.name))
            except (OSError, StopIteration):
                pass
    return found


def test_the_zygote_filter_allows_only_what_its_children_need() -> None:
    run, zygote = {r.name for r in policy(network=False)}, {r.name for r in zygote_policy()}
    assert run - zygote == set(ZYGOTE_ALLOWED) == {"unshare", "mount"}
    assert {"ptrace", "process_vm_readv", "pidfd_getfd", "keyctl", "add_key", "bpf", "setns"} <= zygote
    assert any(r.name == "clone" and r.arg is not None for r in zygote_policy())  # no namespaces by clone


SIBLING = """
import ctypes, json, os, socket, sys, time
os.environ['SIBLING_SECRET'] = '{token}'
json.SIBLING_ATTR = 1
open('/tmp/{token}', 'w').write('x')
open('/dev/shm/{token}', 'w').write('x')
libc = ctypes.CDLL(None, use_errno=True)
assert libc.shmget(0x5EED, 4096, 0o1666) >= 0  # IPC_CREAT | 0666: a SysV segment
abstract = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
abstract.bind('\\0{token}')
abstract.listen(4)
path = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
path.bind('/tmp/{token}.sock')
path.listen(4)
import pty
terminal = pty.openpty()  # a pseudo-terminal of its own (in /dev/pts)
print(os.getpid(), flush=True)
time.sleep(4)
"""

LOOK = """
import ctypes, json, os, socket, sys
out = {{}}
for label, address in (('abstract', '\\0{token}'), ('path', '/tmp/{token}.sock')):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(address)
        out[label] = 'connected'
    except OSError as exc:
        out[label] = type(exc).__name__
out['files'] = [p for p in ('/tmp/{token}', '/dev/shm/{token}') if os.path.exists(p)]
out['env'] = 'SIBLING_SECRET' in os.environ
out['ptys'] = [n for n in os.listdir('/dev/pts') if n.isdigit()]  # a sibling's terminal would be here
out['attr'] = hasattr(json, 'SIBLING_ATTR')
libc = ctypes.CDLL(None, use_errno=True)
out['shm'] = libc.shmget(0x5EED, 0, 0) >= 0
out['procs'] = sorted(int(p) for p in os.listdir('/proc') if p.isdigit())
signalled = []
for pid in range(1, 400):
    try:
        os.kill(pid, 0)
        signalled.append(pid)
    except OSError:
        pass
out['signalled'] = signalled
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
out['ptrace'] = [libc.ptrace(16, pid, None, None) for pid in (1, 2, 3)]  # PTRACE_ATTACH
print(json.dumps(out))
"""


async def test_a_concurrent_sibling_is_out_of_reach(backend: BubblewrapSandbox) -> None:
    """While run A holds a file, env var, module attribute, SysV segment and sockets, run B sees none."""
    token = f"agentic-sib-{uuid.uuid4().hex[:10]}"
    first, second = py(SIBLING.format(token=token)), py(LOOK.format(token=token))
    a, b = await forked(backend, first), await forked(backend, second)
    running = asyncio.ensure_future(a.handover(first, None))
    await asyncio.sleep(1.0)  # A is listening
    look = await b.handover(second, None)
    assert look.ok, look.stderr
    seen = json.loads(look.stdout)
    assert "connected" not in (seen["abstract"], seen["path"]), seen
    assert seen["files"] == [] and not seen["env"] and not seen["attr"] and not seen["shm"], seen
    assert seen["ptys"] == [], seen  # each run mounts its own devpts
    assert seen["procs"] == [1], seen  # its own pid 1 only: no sibling, no zygote
    assert seen["signalled"] == [1], seen
    assert all(code == -1 for code in seen["ptrace"]), seen
    assert (await running).ok


async def test_a_run_leaves_nothing_for_the_next_sibling(backend: BubblewrapSandbox) -> None:
    token = f"agentic-next-{uuid.uuid4().hex[:10]}"
    leave = SIBLING.format(token=token).replace("time.sleep(4)", "os.fork() or os.setsid()")
    assert (await run_forked(backend, py(leave))).ok
    seen = json.loads((await run_forked(backend, py(LOOK.format(token=token)))).stdout)
    assert "connected" not in (seen["abstract"], seen["path"]) and seen["files"] == [], seen
    assert not (seen["env"] or seen["attr"] or seen["shm"]) and seen["procs"] == [1], seen


async def test_a_run_cannot_reach_the_zygote_by_its_host_pid(backend: BubblewrapSandbox) -> None:
    await run_forked(backend, py("pass"))  # the key's zygote runs
    zygotes = zygote_pids()
    assert zygotes
    code = f"import os\nfor pid in {sorted(zygotes)}:\n    try:\n"
    code += "        os.kill(pid, 9)\n        print('killed')\n"
    code += "    except OSError as exc:\n        print(type(exc).__name__)\n"
    result = await run_forked(backend, py(code))
    assert "killed" not in result.stdout, result
    assert zygote_pids() >= zygotes


async def test_cpu_seconds_count_from_hand_over(backend: BubblewrapSandbox) -> None:
    limits = Limits(cpu_seconds=1, wall_seconds=20)
    burn = "import time\nstart = time.process_time()\nwhile time.process_time() - start < 0.7:\n    pass\n"
    sandbox = await forked(backend, py("pass", limits=limits))
    await asyncio.sleep(1.5)  # waiting costs no CPU second
    done = await sandbox.handover(py(burn + "print('done')", limits=limits), None)
    assert done.ok and done.stdout == "done\n", done
    spun = await run_forked(backend, py("while True:\n    pass\n", limits=limits))
    assert spun.reason is EndReason.KILLED and spun.duration_s < 8, spun


async def test_memory_pids_wall_and_output_hold(backend: BubblewrapSandbox) -> None:
    big = await run_forked(backend, py("x = bytearray(200 * 1024 * 1024)", limits=Limits(memory_mb=128)))
    assert big.reason is EndReason.OOM, big
    sleepy = await run_forked(backend, py("import time\ntime.sleep(30)", limits=Limits(wall_seconds=1)))
    assert sleepy.reason is EndReason.TIMEOUT and sleepy.duration_s < 5, sleepy
    loud = await run_forked(backend, py("print('z' * 10000)", limits=Limits(output_bytes=100)))
    assert loud.stdout == "z" * 100 and loud.stdout_truncated


HOLD = """
import os, time
n = 1
while True:
    try:
        pid = os.fork()
    except OSError:
        break
    if pid == 0:
        time.sleep(6)
        os._exit(0)
    n += 1
print(n, flush=True)
time.sleep(3)
"""


async def test_one_run_at_its_pids_cap_does_not_starve_a_sibling(backend: BubblewrapSandbox) -> None:
    """Siblings share a uid: its RLIMIT_NPROC must not be what caps them (their pids cgroups are)."""
    hog_request = py(HOLD, limits=Limits(pids=32, wall_seconds=20))
    hog, other = await forked(backend, hog_request), await forked(backend, py("pass"))
    running = asyncio.ensure_future(hog.handover(hog_request, None))
    await asyncio.sleep(1.5)
    forks = (
        "import os\nfor _ in range(8):\n    pid = os.fork()\n    if pid == 0:\n        os._exit(0)\n"
        "    os.waitpid(pid, 0)\nprint('forked')\n"
    )
    result = await other.handover(py(forks), None)
    assert result.ok and result.stdout == "forked\n", result
    held = await running
    assert held.stdout.split()[0] == "32", held


async def test_runs_survive_the_zygotes_death() -> None:
    """Its idle children die with it: the pool runs them elsewhere, and a new zygote takes over."""
    settings = _settings()
    async with WarmPool(BubblewrapSandbox(settings), settings) as pool:
        request = py("print('fine')")
        assert await pool.ready(request, timeout_s=60)
        first = zygote_pids()
        for pid in first:
            os.kill(pid, signal.SIGKILL)
        await asyncio.sleep(0.3)
        for _ in range(3):
            result = await pool.run(request)
            assert result.ok and result.stdout == "fine\n", result
        assert await pool.ready(request, timeout_s=60)
        assert (await pool.run(request)).ok
        assert zygote_pids() and not zygote_pids() & first


async def test_a_zygote_is_replaced_after_its_children_and_close_leaves_nothing() -> None:
    box = BubblewrapSandbox(_settings(fork_max_children=2))
    before = zygote_pids()
    async with box:
        seen = set()
        for _ in range(5):
            result = await run_forked(box, py("print(1)"))
            assert result.ok
            seen |= zygote_pids() - before
        await asyncio.sleep(0.5)
        assert len(seen) >= 2, seen  # replaced at least once
        assert len(zygote_pids() - before) == 1  # the retired ones stopped with their last child
        idle = await forked(box, py("pass"))
        assert idle.alive()
        host = box._host
        assert host is not None and host.pool is not None
        groups = host.pool.base_dirs
    assert zygote_pids() == before
    assert not idle.alive() and not idle.pids()
    assert all(not d.exists() for d in groups.values()), groups


async def test_a_zygote_without_children_stops_after_the_idle_ttl() -> None:
    before = zygote_pids()
    async with BubblewrapSandbox(_settings(idle_ttl_s=1.0)) as box:
        assert (await run_forked(box, py("print(1)"))).ok
        assert zygote_pids() - before
        await asyncio.sleep(2.5)
        assert zygote_pids() == before and not box.warm_helper_pids()
        assert (await run_forked(box, py("print(2)"))).stdout == "2\n"  # a new one starts


async def test_each_fork_draws_its_own_random_numbers(backend: BubblewrapSandbox) -> None:
    """``random`` is reseeded in every child (a fork would otherwise repeat the zygote's stream)."""
    draws = [
        (await run_forked(backend, py("import random; print(random.getrandbits(64))"))).stdout
        for _ in range(3)
    ]
    assert len(set(draws)) == 3 and all(d.strip().isdigit() for d in draws), draws
