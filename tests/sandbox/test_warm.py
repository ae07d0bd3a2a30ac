"""Warm sandboxes on both host backends: single use, limits from hand-over, a cold run's look.

Each test serves its runs from a warm sandbox (``pool.ready`` first, and the pool's hit counter is
checked), and compares with a cold run of the backend where the point is "as a cold run would".
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agents.code.diagnosis import diagnose
from sandbox.base import EndReason, Limits, RunRequest, RunResult
from sandbox.config import SandboxSettings, WarmSettings
from sandbox.host.warm_bwrap import BwrapWarmSandbox
from sandbox.host.warm_fork import ForkWarmSandbox
from sandbox.host.warm_runsc import GVisorWarmSandbox
from sandbox.registry import create_sandbox, verdict
from sandbox.warm import WarmPool, WarmUnusableError
from sandbox.warm.base import Prestartable

pytestmark = pytest.mark.privileged

LIBSET_BUILT = (SandboxSettings().data_dir / "libsets" / "datascience").is_dir()


@pytest.fixture(scope="module", params=["local", "local+fork", "gvisor"])
async def pool(request: pytest.FixtureRequest) -> AsyncIterator[WarmPool]:
    """A warm pool per host backend (``+fork``: forked warm sandboxes), no key warm until a test asks."""
    name, _, fork = str(request.param).partition("+")
    settings = SandboxSettings(warm=WarmSettings(prewarm=[], fork=bool(fork)))
    backend = create_sandbox(settings, name)
    problem = verdict(await backend.preflight())
    if problem is not None:
        pytest.skip(f"backend {name!r} unavailable: {problem}")
    async with WarmPool(backend, settings) as opened:
        yield opened


def py(code: str, **kwargs: object) -> RunRequest:
    files = {**dict(kwargs.pop("files", {})), "main.py": code}  # type: ignore[call-overload]
    return RunRequest(files=files, language="python", entry="main.py", **kwargs)  # type: ignore[arg-type]


async def warm_run(pool: WarmPool, request: RunRequest) -> RunResult:
    """Run ``request`` on a warm sandbox (and check that it was one)."""
    assert await pool.ready(request, timeout_s=120)
    hits = pool.stats().hits
    result = await pool.run(request)
    assert pool.stats().hits == hits + 1, pool.stats()
    return result


def backend_of(pool: WarmPool) -> Prestartable:
    inner = pool.inner
    assert isinstance(inner, Prestartable)
    return inner


# --- single use -----------------------------------------------------------------------------------


async def test_files_of_one_run_are_not_seen_by_the_next(pool: WarmPool) -> None:
    write = (
        "import os\nfor p in ('left.txt', '/tmp/left.txt', '/dev/shm/left'):\n    open(p, 'w').write('x')\n"
    )
    assert (await warm_run(pool, py(write))).ok
    look = (
        "import os\nprint([p for p in ('left.txt', '/tmp/left.txt', '/dev/shm/left') if os.path.exists(p)])\n"
    )
    result = await warm_run(pool, py(look))
    assert result.ok and result.stdout == "[]\n", result


async def test_processes_of_one_run_are_not_seen_by_the_next(pool: WarmPool) -> None:
    marker = f"agentic-left-{uuid.uuid4().hex}"
    leave = f"""
import os, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv('/usr/bin/python3', ['python3', '-c', 'import time; time.sleep(60)', '{marker}'])
    os._exit(0)
time.sleep(0.3)
print('left one')
"""
    assert (await warm_run(pool, py(leave))).stdout == "left one\n"
    look = f"""
import os
seen = []
for pid in os.listdir('/proc'):
    if pid.isdigit():
        try:
            if b'{marker}' in open(f'/proc/{{pid}}/cmdline', 'rb').read():
                seen.append(pid)
        except OSError:
            pass
print(seen)
"""
    result = await warm_run(pool, py(look))
    assert result.ok and result.stdout == "[]\n", result


async def test_environment_of_one_run_does_not_reach_the_next(pool: WarmPool) -> None:
    token = uuid.uuid4().hex
    first = (
        "import os\nos.environ['SET_BY_RUN'] = 'x'\nos.putenv('PUT_BY_RUN', 'y')\nprint(os.environ['MINE'])\n"
    )
    assert (await warm_run(pool, py(first, env={"MINE": token}))).stdout == f"{token}\n"
    look = (
        "import os, subprocess\n"
        "child = subprocess.run(['/usr/bin/env'], capture_output=True, text=True).stdout\n"
        "print(repr(dict(os.environ)), child, open('/proc/self/environ', 'rb').read())\n"
    )
    result = await warm_run(pool, py(look))
    assert result.ok, result.stderr
    assert (
        token not in result.stdout and "SET_BY_RUN" not in result.stdout and "PUT_BY_RUN" not in result.stdout
    )


async def test_a_listening_socket_of_one_run_is_not_reachable_by_the_next(pool: WarmPool) -> None:
    name = f"agentic-warm-{uuid.uuid4().hex[:12]}"
    listen = f"""
import os, socket, time
abstract = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
abstract.bind('\\0{name}')
abstract.listen(4)
path = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
path.bind('/tmp/{name}.sock')
path.listen(4)
if os.fork() == 0:  # a child keeps both open
    os.setsid()
    time.sleep(60)
time.sleep(0.2)
print('listening')
"""
    assert (await warm_run(pool, py(listen))).stdout == "listening\n"
    connect = f"""
import json, socket
out = {{}}
for label, address in (('abstract', '\\0{name}'), ('path', '/tmp/{name}.sock')):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(address)
        out[label] = 'connected'
    except OSError as exc:
        out[label] = type(exc).__name__
print(json.dumps(out))
"""
    result = await warm_run(pool, py(connect))
    data = json.loads(result.stdout)
    assert "connected" not in data.values(), data


async def test_preloaded_modules_carry_nothing_from_one_run_to_the_next(pool: WarmPool) -> None:
    first = (
        "import typing, re, sys\ntyping.LEFT = 1\nre.purge = None\nimport json\nsys.modules['left'] = json\n"
    )
    assert (await warm_run(pool, py(first))).ok
    look = "import typing, re, sys\nprint(hasattr(typing, 'LEFT'), re.purge is None, 'left' in sys.modules)\n"
    assert (await warm_run(pool, py(look))).stdout == "False False False\n"


def ts(code: str) -> RunRequest:
    return RunRequest(files={"main.ts": code}, language="typescript", entry="main.ts")


async def test_a_typescript_run_leaves_nothing_for_the_next(pool: WarmPool) -> None:
    """Deno's warm sandboxes are single-use too: a file or a global of one run is not in the next."""
    first = (
        "Deno.writeTextFileSync('left.txt', 'x');\n(globalThis as any).LEFT = 1;\n"
        "setTimeout(() => {}, 60_000);\nconsole.log('left');\nDeno.exit(0);\n"
    )
    assert (await warm_run(pool, ts(first))).stdout == "left\n"
    look = (
        "let file = 'absent';\ntry { Deno.statSync('left.txt'); file = 'present'; } catch { /* absent */ }\n"
        "console.log(file, (globalThis as any).LEFT === undefined ? 'no global' : 'global');\n"
    )
    result = await warm_run(pool, ts(look))
    assert result.ok and result.stdout == "absent no global\n", result


async def test_a_warm_sandbox_serves_exactly_one_run(pool: WarmPool) -> None:
    request = py("print('once')")
    sandbox = await backend_of(pool).prestart(request)
    assert sandbox.alive() and sandbox.preloaded == () and await sandbox.measure() > 1 << 20  # base: none
    assert (await sandbox.handover(request, None)).stdout == "once\n"
    assert not sandbox.alive()
    with pytest.raises(WarmUnusableError):
        await sandbox.handover(request, None)
    await sandbox.destroy()  # idempotent after use


async def test_the_waiting_interpreter_is_already_confined(pool: WarmPool) -> None:
    """Seccomp, no_new_privs, an unprivileged uid and its own namespaces hold before any code of a run."""
    sandbox = await backend_of(pool).prestart(py("pass"))
    try:
        if isinstance(sandbox, GVisorWarmSandbox):  # the Sentry starts the stub with the bundle's settings
            config = json.loads((sandbox._rundir / "config.json").read_text())
            process = config["process"]
            assert process["noNewPrivileges"] is True and process["user"]["uid"] != 0
            assert config["linux"]["seccomp"]["syscalls"] and "python_stub.py" in " ".join(process["args"])
            return
        if isinstance(sandbox, ForkWarmSandbox):  # confined by itself: wait until it is
            for _ in range(200):
                status = _status(sandbox.pids())
                if status.get("Seccomp", "").strip() == "2":
                    break
                await asyncio.sleep(0.01)
            assert status["Seccomp"].strip() == "2" and status["NoNewPrivs"].strip() == "1", status
            assert int(status["CapEff"], 16) == int(status["CapBnd"], 16) == 0, status
            assert all(int(uid) >= 1000 for uid in status["Uid"].split())
            return
        assert isinstance(sandbox, BwrapWarmSandbox)
        argvs = {pid: Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") for pid in sandbox.pids()}
        stubs = [pid for pid, argv in argvs.items() if argv[0].endswith(b"/python3")]
        assert len(stubs) == 1 and b"/opt/warm/python_stub.pyc" in argvs[stubs[0]], argvs  # compiled once
        status = dict(
            line.split(":", 1)
            for line in Path(f"/proc/{stubs[0]}/status").read_text().splitlines()
            if ":" in line
        )
        assert status["Seccomp"].strip() == "2" and status["NoNewPrivs"].strip() == "1"
        assert all(int(uid) >= 1000 for uid in status["Uid"].split())
        for ns in ("pid", "net", "mnt", "user", "ipc", "uts"):
            assert os.readlink(f"/proc/{stubs[0]}/ns/{ns}") != os.readlink(f"/proc/self/ns/{ns}"), ns
    finally:
        await sandbox.destroy()
    assert not sandbox.pids()


def _status(pids: set[int]) -> dict[str, str]:
    """``/proc/PID/status`` of a forked sandbox's pid 1 (pid 1 of its own pid namespace), or ``{}``."""
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        status = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        if status.get("NSpid", "").split()[-1:] == ["1"]:
            return status
    return {}


# --- limits from hand-over ------------------------------------------------------------------------


async def test_wall_time_counts_from_hand_over(pool: WarmPool) -> None:
    request = py("import time\ntime.sleep(1.2)\nprint('slept')\n", limits=Limits(wall_seconds=2))
    sandbox = await backend_of(pool).prestart(request)
    await asyncio.sleep(3)  # idle longer than the run's whole wall time
    result = await sandbox.handover(request, None)
    assert result.ok and result.stdout == "slept\n", result
    assert 1.2 <= result.duration_s < 2.0 and result.boot_s == 0.0


@pytest.mark.skipif(
    not LIBSET_BUILT, reason="the datascience library set is not built (agentic libsets build)"
)
async def test_cpu_seconds_count_from_hand_over(pool: WarmPool) -> None:
    """Importing numpy and pandas before the run takes CPU seconds the run does not pay for."""
    limits = Limits(cpu_seconds=1, memory_mb=1024, wall_seconds=30)
    template = py("pass", limits=limits, library_set="datascience")
    sandbox = await backend_of(pool).prestart(template)
    cgroup = sandbox._run.cgroup if isinstance(sandbox, BwrapWarmSandbox) else sandbox._cgroup  # type: ignore[attr-defined]
    if isinstance(sandbox, ForkWarmSandbox):  # the preload's CPU seconds went to the zygote
        await sandbox.destroy()
        pytest.skip("a forked sandbox's start is the zygote's: test_warm_fork checks CPU from hand-over")
    assert cgroup is not None
    before = await asyncio.to_thread(cgroup.cpu_seconds)
    assert before >= 0.2, before  # the start's CPU seconds, measured
    # Counted from the start, this run would pass its cap; counted from hand-over, it stays below.
    burn = limits.cpu_seconds - before / 2
    code = (
        f"import time\nstart = time.process_time()\nwhile time.process_time() - start < {burn}:\n    pass\n"
    )
    request = py(code + "print('done')\n", limits=limits, library_set="datascience")
    result = await sandbox.handover(request, None)
    assert result.ok and result.stdout == "done\n", (result.reason, result.stderr[-500:])
    spin = py("while True:\n    pass\n", limits=limits, library_set="datascience")
    killed = await warm_run(pool, spin)  # and the cap still holds
    assert killed.reason is EndReason.KILLED and killed.duration_s < 10, killed


async def test_memory_peak_counts_from_hand_over(pool: WarmPool) -> None:
    """The peak includes what the waiting interpreter holds, and what the run allocates."""
    small = await warm_run(pool, py("print(1)"))
    big = await warm_run(pool, py("x = bytearray(96 * 1024 * 1024)\nprint(len(x))\n"))
    assert small.peak_memory_mb is not None and big.peak_memory_mb is not None
    assert 0 < small.peak_memory_mb < 60, small.peak_memory_mb
    assert 96 <= big.peak_memory_mb < 96 + 60 + small.peak_memory_mb, big.peak_memory_mb


async def test_output_and_pids_count_for_the_run(pool: WarmPool) -> None:
    fork_count = (
        "import os, time\nn = 1\nwhile n < 40:\n    try:\n        pid = os.fork()\n    except OSError:\n"
        "        break\n    if pid == 0:\n        time.sleep(5)\n        os._exit(0)\n    n += 1\nprint(n)\n"
    )
    result = await warm_run(pool, py(fork_count, limits=Limits(pids=7, wall_seconds=20)))
    assert result.ok and result.stdout == "7\n", (result.stdout, result.stderr[-300:])
    capped = await warm_run(pool, py("print('y' * 5000)", limits=Limits(output_bytes=1000)))
    assert capped.stdout == "y" * 1000 and capped.stdout_truncated


# --- what the program sees: a cold run's ----------------------------------------------------------

FAILING = {
    "runtime": ("import helper\nhelper.boom(3)\n", {"helper.py": "def boom(n):\n    return [1, 2][n]\n"}),
    "syntax": ("def f(:\n    pass\n", {}),
    "assert": ("def add(a, b):\n    return a - b\n\nassert add(2, 2) == 4, add(2, 2)\n", {}),
    "exit": ("import sys\nprint('partial')\nsys.exit('stopped: no input')\n", {}),
}


@pytest.mark.parametrize("case", sorted(FAILING))
async def test_tracebacks_and_their_diagnosis_match_a_cold_run(pool: WarmPool, case: str) -> None:
    code, extra = FAILING[case]
    request = py(code, files=extra)
    cold = await pool.inner.run(request)
    warm = await warm_run(pool, request)
    assert (warm.exit_code, warm.stdout, warm.stderr) == (cold.exit_code, cold.stdout, cold.stderr)
    sources = {name: str(text) for name, text in request.files.items()}
    assert diagnose(warm, sources, "python") == diagnose(cold, sources, "python")
    assert not cold.ok and (case == "exit" or "/sandbox/work/" in cold.stderr)


PROBE = """
import os, sys
print(__name__, __file__, __spec__, __cached__, __loader__.path, sorted(globals()))
print(sys.argv, sys.orig_argv[1:], sys.path[0], os.getcwd(), sys.flags.no_user_site, sys.flags.optimize)
print(sorted(os.environ.items()))
print(sys.stdin.read(), sorted(os.listdir('.')), sorted(os.listdir('sub')))
if __name__ == "__main__":
    print("as main")
"""


async def test_the_program_sees_what_a_cold_run_sees(pool: WarmPool) -> None:
    request = py(
        PROBE, files={"sub/data.bin": bytes(range(256))}, args=("a", "b c"), stdin=b"in", env={"K": "v"}
    )
    cold = await pool.inner.run(request)
    warm = await warm_run(pool, request)
    assert cold.ok, cold.stderr
    assert (warm.stdout, warm.stderr, warm.exit_code) == (cold.stdout, cold.stderr, cold.exit_code)


async def test_typescript_runs_warm_as_it_runs_cold(pool: WarmPool) -> None:
    code = (
        "import { twice } from './lib.ts';\n"
        "console.log(twice(21), Deno.args, import.meta.main, Deno.mainModule);\n"
        "console.log(Deno.readTextFileSync('data.txt'));\n"
        "throw new Error('boom');\n"
    )
    files = {
        "main.ts": code,
        "lib.ts": "export const twice = (n: number): number => n * 2;\n",
        "data.txt": "d",
    }
    request = RunRequest(files=files, language="typescript", entry="main.ts", args=("x",))
    cold = await pool.inner.run(request)
    warm = await warm_run(pool, request)
    assert cold.stdout.startswith('42 [ "x" ] true file:///sandbox/work/main.ts\nd\n'), cold
    assert (warm.stdout, warm.stderr, warm.exit_code) == (cold.stdout, cold.stderr, cold.exit_code)


async def test_big_files_and_stdin_arrive_whole(pool: WarmPool) -> None:
    blob = os.urandom(3 * 1024 * 1024)
    stdin = os.urandom(2 * 1024 * 1024)
    code = (
        "import hashlib, sys\n"
        "print(hashlib.sha256(open('deep/dir/blob.bin', 'rb').read()).hexdigest())\n"
        "print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())\n"
    )
    result = await warm_run(pool, py(code, files={"deep/dir/blob.bin": blob}, stdin=stdin))
    assert result.stdout.split() == [hashlib.sha256(blob).hexdigest(), hashlib.sha256(stdin).hexdigest()]


async def test_an_entry_in_a_subdirectory(pool: WarmPool) -> None:
    files = {"app/main.py": "import util\nprint(util.X, __file__)\n", "app/util.py": "X = 1\n"}
    request = RunRequest(files=files, language="python", entry="app/main.py")
    cold = await pool.inner.run(request)
    warm = await warm_run(pool, request)
    assert warm.stdout == cold.stdout == "1 /sandbox/work/app/main.py\n"


RECURSE = (
    "import sys\nn = 0\ndef f():\n    global n\n    n += 1\n    f()\ntry:\n    f()\n"
    "except RecursionError:\n    pass\nprint(n)\n"
)


async def test_the_program_gets_a_cold_runs_recursion_depth(pool: WarmPool) -> None:
    cold = await pool.inner.run(py(RECURSE))
    warm = await warm_run(pool, py(RECURSE))
    assert cold.ok and warm.stdout == cold.stdout, (cold.stdout, warm.stdout)
