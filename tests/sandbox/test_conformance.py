"""The conformance suite every backend passes: hostile probes (contained, host unchanged) and basics.

Each probe is a program trying to break out; it prints what it managed, and the test asserts that
nothing succeeded *and* checks the host side where it can (files, listeners, processes).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import resource
import socket
import time
import uuid
from pathlib import Path

import pytest

from sandbox.base import EndReason, Limits, OutputChunk, RunRequest, RunResult, Sandbox
from sandbox.config import SandboxSettings
from sandbox.errors import InvalidRunRequestError, LimitsExceededError, UnknownLibrarySetError
from tests.support.leftovers import without_idle


def sleeper(seconds: int, marker: str) -> str:
    """Python source that replaces the process with a sleeper whose host cmdline carries ``marker``."""
    return (
        f"os.execv('/usr/bin/python3', ['python3', '-c', 'import time; time.sleep({seconds})', '{marker}'])"
    )


async def run_py(sandbox: Sandbox, code: str, **kwargs: object) -> RunResult:
    files = dict(kwargs.pop("files", {}))  # type: ignore[call-overload]
    files["main.py"] = code
    return await sandbox.run(RunRequest(files=files, language="python", entry="main.py", **kwargs))  # type: ignore[arg-type]


def probe_json(result: RunResult) -> dict[str, object]:
    assert result.ok, (result.exit_code, result.reason, result.stderr[-2000:])
    data: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    return data


# --- isolation ------------------------------------------------------------------------------------


async def test_host_files_are_hidden(sandbox: Sandbox, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("host secret")
    data_dir = SandboxSettings().data_dir
    targets = [
        "/etc/shadow",
        "/etc/gshadow",
        "/root",
        "/root/.bashrc",
        "/home",
        str(secret),
        str(tmp_path),
        __file__,
        str(Path(__file__).parents[2]),
        str(data_dir),
        "/work",
        "/var/lib",
        "/run",
        "/sys/fs/cgroup",
        "/proc/1/root/etc/shadow",
        "/boot",
    ]
    code = f"""
import json, os
found = {{}}
for path in {targets!r}:
    try:
        if os.path.isdir(path):
            found[path] = os.listdir(path)
        else:
            found[path] = open(path).read(100)
    except OSError as exc:
        pass
pw = open('/etc/passwd').read()
print(json.dumps({{"found": found, "passwd": pw}}))
"""
    data = probe_json(await run_py(sandbox, code))
    assert data["found"] == {}
    host_passwd = Path("/etc/passwd").read_text()
    assert data["passwd"] != host_passwd
    assert "root:x:0:0:root:/root:" not in str(data["passwd"])


async def test_host_details_stay_out_of_proc(sandbox: Sandbox, sandbox_settings: SandboxSettings) -> None:
    code = """
import json
seen = {}
for path in ("/proc/1/cmdline", "/proc/self/cmdline", "/proc/self/mountinfo", "/proc/self/uid_map",
             "/proc/self/cgroup", "/proc/1/environ", "/proc/self/environ"):
    try:
        seen[path] = open(path, "rb").read().replace(b"\\0", b" ").decode(errors="replace")
    except OSError as exc:
        seen[path] = str(exc)
print(json.dumps(seen))
"""
    result = await run_py(sandbox, code)
    assert result.ok, result.stderr
    seen = json.loads(result.stdout)
    text = "\n".join(seen.values())
    assert "agentic-" not in text, text  # host stage and scratch dirs are named agentic-<backend>-<pid>-*
    assert f"-{os.getpid()}-" not in text and str(sandbox_settings.cache_dir) not in text, text
    assert "--ro-bind" not in text and "--seccomp" not in text, seen["/proc/1/cmdline"]  # no set-up args


async def test_server_environment_does_not_leak(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    token = f"s3cr3t-{uuid.uuid4()}"
    monkeypatch.setenv("AGENTIC_TEST_SECRET", token)
    monkeypatch.setenv("OPENAI_API_KEY", token)
    code = """
import os, glob
out = [repr(dict(os.environ))]
for path in glob.glob('/proc/*/environ'):
    try:
        out.append(open(path, 'rb').read().decode(errors='replace'))
    except OSError:
        pass
print('\\n'.join(out))
"""
    result = await run_py(sandbox, code, env={"MINE": "visible"})
    assert result.ok, result.stderr
    assert token not in result.stdout
    assert "AGENTIC_TEST_SECRET" not in result.stdout
    assert "visible" in result.stdout  # the request's own env does arrive


async def test_request_env_reaches_only_the_program(sandbox: Sandbox) -> None:
    """The request's env (LD_PRELOAD, LD_DEBUG, LOCPATH ...) must not reach host-side launchers."""
    request = RunRequest(command=("/usr/bin/python3", "-c", "pass"), env={"LD_DEBUG": "libs"})
    result = await sandbox.run(request)
    programs = {
        line.split("initialize program:")[1].strip()
        for line in result.stderr.splitlines()
        if "initialize program:" in line
    }
    assert programs and all("python3" in p for p in programs), programs


async def test_cannot_write_outside_scratch(sandbox: Sandbox) -> None:
    marker = f"agentic-probe-{uuid.uuid4().hex}"
    targets = [f"/usr/{marker}", f"/etc/{marker}", f"/{marker}", f"/bin/{marker}", f"/proc/{marker}"]
    code = f"""
import json, os
wrote = []
for path in {targets!r}:
    try:
        with open(path, 'w') as fh:
            fh.write('x')
        wrote.append(path)
    except OSError:
        pass
for path in ['/proc/sys/kernel/hostname', '/proc/sysrq-trigger', '/proc/sys/vm/drop_caches']:
    try:
        with open(path, 'w') as fh:
            fh.write('1')
        wrote.append(path)
    except OSError:
        pass
with open('inside.txt', 'w') as fh:  # scratch is writable
    fh.write('ok')
with open('/tmp/t.txt', 'w') as fh:
    fh.write('ok')
print(json.dumps({{"wrote": wrote}}))
"""
    data = probe_json(await run_py(sandbox, code))
    assert data["wrote"] == []
    for path in targets:
        assert not Path(path).exists()


async def test_no_network_to_host_listener(sandbox: Sandbox) -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.setblocking(False)
    port = listener.getsockname()[1]
    code = f"""
import json, socket
results = {{}}
for host in ['127.0.0.1', '10.0.2.2', '8.8.8.8']:
    try:
        s = socket.create_connection((host, {port}), timeout=2)
        results[host] = 'connected'
        s.close()
    except OSError as exc:
        results[host] = type(exc).__name__
try:
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.sendto(b'x', ('127.0.0.1', {port}))
    results['udp'] = 'sent'
except OSError as exc:
    results['udp'] = type(exc).__name__
print(json.dumps(results))
"""
    try:
        data = probe_json(await run_py(sandbox, code, limits=Limits(wall_seconds=20)))
        assert "connected" not in data.values()
        assert data["udp"] != "sent"
        with pytest.raises(BlockingIOError):
            listener.accept()
    finally:
        listener.close()


async def test_cannot_resolve_hostnames(sandbox: Sandbox) -> None:
    code = """
import socket
try:
    print(socket.getaddrinfo('example.com', 80))
except OSError as exc:
    print('failed', type(exc).__name__)
"""
    result = await run_py(sandbox, code, limits=Limits(wall_seconds=20))
    assert result.ok, result.stderr
    assert result.stdout.startswith("failed"), result.stdout


async def test_privileged_syscalls_fail(sandbox: Sandbox) -> None:
    code = r"""
import ctypes, ctypes.util, json, os
libc = ctypes.CDLL(None, use_errno=True)
res = {}
def attempt(name, fn):
    try:
        rc = fn()
        failed = isinstance(rc, int) and rc < 0
        res[name] = 'errno %d' % ctypes.get_errno() if failed else 'ok'
    except OSError as exc:
        res[name] = 'OSError %s' % exc.errno
attempt('setuid0', lambda: os.setuid(0))
attempt('setgid0', lambda: os.setgid(0))
attempt('mount', lambda: libc.mount(b'none', b'/tmp', b'tmpfs', 0, None))
attempt('umount', lambda: libc.umount2(b'/proc', 2))
attempt('unshare_user', lambda: libc.unshare(0x10000000))
attempt('unshare_net', lambda: libc.unshare(0x40000000))
attempt('unshare_ns', lambda: libc.unshare(0x00020000))
attempt('ptrace_attach_1', lambda: libc.ptrace(16, 1, None, None))
attempt('chroot', lambda: libc.chroot(b'/tmp'))
attempt('sethostname', lambda: libc.sethostname(b'evil', 4))
attempt('bpf', lambda: libc.syscall(321, 0, None, 0))
attempt('keyctl', lambda: libc.syscall(250, 0, 0, 0, 0, 0))
attempt('perf_event_open', lambda: libc.syscall(298, None, 0, -1, -1, 0))
print(json.dumps(res))
"""
    data = probe_json(await run_py(sandbox, code))
    assert all(value != "ok" for value in data.values()), data


async def test_io_uring_and_clone3_are_refused(sandbox: Sandbox) -> None:
    """Both backends build their seccomp policy from one table (gVisor once let io_uring_setup through)."""
    code = r"""
import ctypes, errno, json, os
libc = ctypes.CDLL(None, use_errno=True)
params = ctypes.create_string_buffer(120)
out = {}
for name, nr, args in [('io_uring_setup', 425, (4, params)), ('io_uring_enter', 426, (0, 0, 0, 0, None, 0)),
                       ('io_uring_register', 427, (0, 0, None, 0))]:
    rc = libc.syscall(nr, *args)
    out[name] = 'ok' if rc >= 0 else errno.errorcode[ctypes.get_errno()]
pid = os.fork()  # clone3 refused must still leave fork / threads working
if pid == 0:
    os._exit(7)
out['fork'] = os.waitpid(pid, 0)[1] >> 8
print(json.dumps(out))
"""
    data = probe_json(await run_py(sandbox, code))
    assert data.pop("fork") == 7
    assert all(value in ("ENOSYS", "EPERM") for value in data.values()), data


# --- limits ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["pids", "memory_mb", "wall_seconds", "disk_mb", "cpu_seconds"])
async def test_limits_above_the_server_maximum_are_refused(
    sandbox: Sandbox, sandbox_settings: SandboxSettings, field: str
) -> None:
    """Every backend refuses a request above ``max_limits`` itself (not only the guard upstream)."""
    maximum = getattr(sandbox_settings.max_limits, field)
    value = maximum * 2 if isinstance(maximum, int) else maximum + 1.0
    limits = dataclasses.replace(Limits(), **{field: value})
    with pytest.raises(LimitsExceededError) as info:
        await run_py(sandbox, "print('ran')", limits=limits)
    assert field in str(info.value) and str(value) in str(info.value) and str(maximum) in str(info.value)
    with pytest.raises(InvalidRunRequestError, match=field):
        await run_py(sandbox, "print('ran')", limits=dataclasses.replace(Limits(), **{field: 0}))


async def test_fork_bomb_is_contained(sandbox: Sandbox) -> None:
    code = """
import os, time
while True:
    try:
        os.fork()
    except OSError:
        time.sleep(0.01)
"""
    start = time.monotonic()
    result = await run_py(sandbox, code, limits=Limits(pids=32, wall_seconds=3))
    assert time.monotonic() - start < 15
    assert result.reason in (EndReason.TIMEOUT, EndReason.KILLED)
    after = await run_py(sandbox, "print('fine')")
    assert after.ok and after.stdout == "fine\n"


FORK_COUNT = """
import os, time
alive, deadline = 1, time.monotonic() + 3  # 1: this process
while time.monotonic() < deadline and alive <= 64:  # retry: slots freed later must not add any
    try:
        pid = os.fork()
    except OSError:
        time.sleep(0.02)
        continue
    if pid == 0:
        time.sleep(30)
        os._exit(0)
    alive += 1
print(alive)
"""


async def test_pids_cap_is_exact_after_runs_that_leave_zombies(sandbox: Sandbox) -> None:
    """Late-reaped processes of earlier runs must neither widen nor eat the next run's pids cap."""
    spawner = "import os, time\nfor _ in range(4):\n    os.fork() or time.sleep(30)\ntime.sleep(30)\n"
    for end in ("timeout", "exit", "timeout"):  # killed trees and normal exits both leave zombies
        code = spawner if end == "timeout" else "import os\nos.fork()\nprint(1)\n"
        await run_py(sandbox, code, limits=Limits(pids=8, wall_seconds=0.5 if end == "timeout" else 5))
    for pids in (6, 6, 9):
        result = await run_py(sandbox, FORK_COUNT, limits=Limits(pids=pids, wall_seconds=10))
        assert result.ok, result.stderr[-500:]
        assert int(result.stdout) == pids, f"{result.stdout.strip()} processes alive with pids={pids}"


async def test_memory_cap_ends_with_oom(sandbox: Sandbox) -> None:
    code = "x = bytearray(2 * 1024**3)\nprint('allocated', len(x))\n"
    result = await run_py(sandbox, code, limits=Limits(memory_mb=256, wall_seconds=30))
    assert result.reason is EndReason.OOM, (result.reason, result.exit_code, result.stderr[-500:])
    assert "allocated" not in result.stdout


async def test_cpu_spin_past_cpu_limit_is_killed(sandbox: Sandbox) -> None:
    start = time.monotonic()
    result = await run_py(sandbox, "while True:\n    pass\n", limits=Limits(cpu_seconds=1, wall_seconds=20))
    assert time.monotonic() - start < 10
    assert result.reason is EndReason.KILLED, (result.reason, result.exit_code, result.stderr)
    assert result.exit_code < 0


async def test_filling_the_disk_stops_at_the_cap(sandbox: Sandbox) -> None:
    code = """
import json, os
written = 0
error = None
try:
    with open('big.bin', 'wb') as fh:
        for _ in range(64):
            fh.write(b'x' * 1024 * 1024)
            fh.flush()
            written += 1024 * 1024
except OSError as exc:
    error = exc.errno
print(json.dumps({"written": written, "error": error}))
"""
    result = await run_py(sandbox, code, limits=Limits(disk_mb=8, memory_mb=256))
    if result.ok:
        data = json.loads(result.stdout.strip().splitlines()[-1])
        assert data["error"] is not None
        assert data["written"] <= 8 * 1024 * 1024
    else:  # killed by SIGXFSZ is also a refusal
        assert result.exit_code != 0
        assert "written" not in result.stdout or '"error": null' not in result.stdout


FILL_WRITABLE = """
import errno, json, os
out = {}
for place in ['/dev', '/dev/shm', '/tmp', '/sandbox/tmp', '.']:
    written, error = 0, None
    try:  # many 1 MB files: RLIMIT_FSIZE caps one file, not a place
        for i in range(48):
            with open(f'{place}/fill-{len(out)}-{i}', 'wb') as fh:
                fh.write(b'x' * (1 << 20))
            written += 1 << 20
    except OSError as exc:
        error = errno.errorcode[exc.errno]
    out[place] = [written, error]
print(json.dumps(out))
"""


async def fill_writable_places(sandbox: Sandbox, disk_mb: int) -> None:
    """Every writable place is sized: /dev refuses, the rest stops at its cap, all within the bound."""
    result = await run_py(
        sandbox, FILL_WRITABLE, limits=Limits(disk_mb=disk_mb, memory_mb=512, wall_seconds=30)
    )
    data = probe_json(result)
    assert data["/dev"] == [0, data["/dev"][1]] and data["/dev"][1] in ("EROFS", "EACCES"), data
    for place, (_written, error) in data.items():
        assert error in ("ENOSPC", "EFBIG", "EROFS", "EACCES"), (place, data)
    # Documented bound: the scratch tmpfs (disk_mb, holding /tmp) plus /dev/shm (min(disk_mb, 64) MB).
    total = sum(written for written, _ in data.values())
    assert total <= (disk_mb + min(disk_mb, 64)) * 1024 * 1024, data


async def test_every_writable_place_is_sized(sandbox: Sandbox) -> None:
    await fill_writable_places(sandbox, disk_mb=8)


async def test_huge_output_is_truncated_with_bounded_memory(sandbox: Sandbox) -> None:
    code = (
        "import sys\nchunk = 'y' * (1 << 20)\nfor _ in range(100):\n    sys.stdout.write(chunk)\n"
        "print('done', file=sys.stderr)\n"
    )
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = await run_py(sandbox, code, limits=Limits(output_bytes=1_000_000, wall_seconds=60))
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert result.ok, (result.reason, result.stderr)
    assert result.stdout_truncated and not result.stderr_truncated
    assert len(result.stdout.encode()) <= 1_000_000
    assert result.stderr == "done\n"
    assert grown_mb < 50


async def test_one_big_write_arrives_whole_or_flagged(sandbox: Sandbox) -> None:
    """A single write over the 64 KiB pipe buffer (gVisor once returned it short, unflagged)."""
    code = "import os, sys\nn = os.write(1, b'x' * 200_000)\nprint(n, file=sys.stderr)\n"
    result = await run_py(sandbox, code)
    assert result.ok, result.stderr
    assert len(result.stdout) == 200_000 and result.stderr == "200000\n" and not result.stdout_truncated
    capped = await run_py(sandbox, code, limits=Limits(output_bytes=100_000))
    assert capped.stdout_truncated and len(capped.stdout) == 100_000


async def test_sleep_past_timeout(sandbox: Sandbox) -> None:
    result = await run_py(sandbox, "import time\ntime.sleep(30)\n", limits=Limits(wall_seconds=1))
    assert result.reason is EndReason.TIMEOUT
    assert 0.9 <= result.duration_s < 3.5


def _host_pids_with(marker: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if marker.encode() in Path(f"/proc/{entry}/cmdline").read_bytes():
                    found.append(int(entry))
            except OSError:
                pass
    return found


async def _run_pids(sandbox: Sandbox, marker: str) -> set[int]:
    """Host processes of a run: the marked program itself (local), or its runsc / gofer / Sentry.

    gVisor programs are invisible on the host (the Sentry runs them), so there the check is that no
    process of one of our containers (ids ``agentic-<our pid>-...``, on each one's command line) lives,
    but those of the warm pool's idle sandboxes (waiting while the pool starts one).
    """
    if sandbox.name == "local":
        return set(_host_pids_with(marker))
    return await without_idle(sandbox, lambda: _host_pids_with(f"agentic-{os.getpid()}-"))


@pytest.mark.parametrize("end", ["exit", "timeout"])
async def test_double_forked_children_do_not_survive(sandbox: Sandbox, end: str) -> None:
    marker = f"agentic-daemon-{uuid.uuid4().hex}"
    code = f"""
import os, sys, time
if os.fork() == 0:
    os.setsid()
    pid = os.fork()
    if pid == 0:
        {sleeper(300, marker)}
    open('daemon.pid', 'w').write(str(pid))
    os._exit(0)
time.sleep(0.5)
pid = int(open('daemon.pid').read())
if '{marker}' in open(f'/proc/{{pid}}/cmdline').read():
    print('daemon alive')
print('parent leaving')
if {end!r} == 'timeout':
    time.sleep(60)
"""
    result = await run_py(sandbox, code, limits=Limits(wall_seconds=3))
    assert "daemon alive" in result.stdout and "parent leaving" in result.stdout
    assert result.reason is (EndReason.EXIT if end == "exit" else EndReason.TIMEOUT)
    for _ in range(20):
        if not await _run_pids(sandbox, marker):
            break
        await asyncio.sleep(0.1)
    assert await _run_pids(sandbox, marker) == set()


# --- functional -----------------------------------------------------------------------------------


async def test_exit_codes_stdout_stderr(sandbox: Sandbox) -> None:
    result = await run_py(sandbox, "import sys\nprint('out')\nprint('err', file=sys.stderr)\nsys.exit(3)\n")
    assert (result.exit_code, result.reason, result.ok) == (3, EndReason.EXIT, False)
    assert result.stdout == "out\n" and result.stderr == "err\n"
    assert result.backend


async def test_stdin_and_args(sandbox: Sandbox) -> None:
    code = "import sys\nprint(sys.stdin.read().upper(), sys.argv[1:])\n"
    result = await run_py(sandbox, code, stdin=b"hello", args=("a", "b c"))
    assert result.ok and result.stdout == "HELLO ['a', 'b c']\n"


async def test_files_in_and_out(sandbox: Sandbox) -> None:
    code = """
import os, pathlib
from pkg.helper import VALUE
data = pathlib.Path('data/blob.bin').read_bytes()
pathlib.Path('out/result.txt').parent.mkdir()
pathlib.Path('out/result.txt').write_text(f'{VALUE}:{len(data)}')
print(pathlib.Path('out/result.txt').read_text(), sorted(os.listdir('.')))
"""
    files = {"pkg/__init__.py": "", "pkg/helper.py": "VALUE = 42\n", "data/blob.bin": bytes(range(256))}
    result = await run_py(sandbox, code, files=files)
    assert result.ok, result.stderr
    assert result.stdout == "42:256 ['data', 'main.py', 'out', 'pkg']\n"


async def test_command_runs_in_scratch(sandbox: Sandbox) -> None:
    command = ("/bin/sh", "-c", "cat in.txt; echo $((6*7))")
    result = await sandbox.run(RunRequest(command=command, files={"in.txt": "x\n"}))
    assert result.ok and result.stdout == "x\n42\n"


async def test_typescript_hello_world(sandbox: Sandbox) -> None:
    code = "const n: number = 6 * 7;\nconsole.log(`hello ${n}`);\nDeno.writeTextFileSync('o.txt', 'w');\n"
    result = await sandbox.run(RunRequest(files={"main.ts": code}, language="typescript", entry="main.ts"))
    assert result.ok, result.stderr
    assert result.stdout == "hello 42\n"


async def test_typescript_has_no_network(sandbox: Sandbox) -> None:
    code = (
        "try { await fetch('http://127.0.0.1:9/'); console.log('fetched'); }\n"
        "catch (e) { console.log('blocked'); }\n"
    )
    result = await sandbox.run(RunRequest(files={"main.ts": code}, language="typescript", entry="main.ts"))
    assert result.stdout.strip() == "blocked" or not result.ok


async def test_streaming_yields_chunks_in_order(sandbox: Sandbox) -> None:
    code = "import time\nfor i in range(3):\n    print(f'line {i}', flush=True)\n    time.sleep(0.3)\n"
    request = RunRequest(files={"main.py": code}, language="python", entry="main.py")
    chunks: list[tuple[float, OutputChunk]] = []
    async for chunk in sandbox.stream(request):
        chunks.append((time.monotonic(), chunk))
    assert chunks[-1][1].stream == "result"
    result = chunks[-1][1].result
    assert result is not None and result.ok
    text = "".join(c.data for _, c in chunks if c.stream == "stdout")
    assert text == "line 0\nline 1\nline 2\n" == result.stdout
    first_line_at = next(t for t, c in chunks if "line 0" in c.data)
    assert chunks[-1][0] - first_line_at > 0.4  # the first line came before the run ended


async def test_stream_consumer_leaving_early_kills_the_run(sandbox: Sandbox) -> None:
    marker = f"agentic-early-{uuid.uuid4().hex}"
    code = f"import os\nprint('go', flush=True)\n{sleeper(60, marker)}\n"
    request = RunRequest(files={"main.py": code}, language="python", entry="main.py")
    agen = sandbox.stream(request)
    seen = ""
    async for chunk in agen:
        seen += chunk.data
        if seen == "go\n":
            break
    for _ in range(50):  # the run is really going (so the check below can fail)
        if await _run_pids(sandbox, marker):
            break
        await asyncio.sleep(0.05)
    assert await _run_pids(sandbox, marker)
    await agen.aclose()  # type: ignore[attr-defined]
    await asyncio.sleep(0.2)
    assert await _run_pids(sandbox, marker) == set()


async def test_concurrent_runs(sandbox: Sandbox) -> None:
    results = await asyncio.gather(*(run_py(sandbox, f"print({i} * 2)") for i in range(6)))
    assert [r.stdout for r in results] == [f"{i * 2}\n" for i in range(6)]


@pytest.mark.parametrize(
    "args, env",
    [(("x" * 200_000,), {}), (("y" * 100_000,) * 12, {}), ((), {"BIG": "z" * 200_000})],
    ids=["one-200kB-arg", "1.2MB-of-args", "200kB-env"],
)
async def test_too_long_argument_list_is_a_bad_request(
    sandbox: Sandbox, args: tuple[str, ...], env: dict[str, str]
) -> None:
    """E2BIG used to surface as a start failure (a 500 upstream); it is the request's fault."""
    with pytest.raises(InvalidRunRequestError, match=r"argument list is too long.*maximum \d+ bytes"):
        await run_py(sandbox, "print(1)", args=args, env=env)
    fits = await run_py(sandbox, "import sys\nprint(len(sys.argv[1]))", args=("x" * 100_000,))
    assert fits.ok and fits.stdout == "100000\n", fits.stderr


async def test_bad_requests_raise(sandbox: Sandbox) -> None:
    with pytest.raises(InvalidRunRequestError):
        await sandbox.run(RunRequest(language="python", entry="missing.py"))
    with pytest.raises(InvalidRunRequestError):
        await sandbox.run(RunRequest(files={"../x.py": ""}, language="python", entry="../x.py"))
    with pytest.raises(UnknownLibrarySetError):
        await run_py(sandbox, "print(1)", library_set="no-such-set")
