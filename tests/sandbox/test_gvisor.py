"""gVisor-specific checks (the shared containment suite runs against gVisor too: every registered backend)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sandbox.backends.gvisor import MEMORY_HEADROOM_MB, GVisorSandbox
from sandbox.base import EndReason, Limits, RunRequest, RunResult
from sandbox.config import GVisorSettings, SandboxSettings
from sandbox.egress_policy import EgressPolicy
from sandbox.errors import InvalidRunRequestError, SandboxStartError, SandboxUnavailableError
from sandbox.host.oci import BindMount, RunSpec, build_config, build_rootfs, seccomp_profile
from sandbox.host.runsc import GVisorHost, hide_host_paths
from tests.support.leftovers import descendants

pytestmark = [
    pytest.mark.gvisor,
    pytest.mark.skipif(
        shutil.which("runsc") is None, reason="runsc not installed; fix: apt-get install runsc"
    ),
    pytest.mark.skipif(os.geteuid() != 0, reason="runsc needs root here"),
]


@pytest.fixture(scope="module")
async def gvisor() -> AsyncIterator[GVisorSandbox]:
    async with GVisorSandbox(SandboxSettings(gvisor=GVisorSettings(cgroup_pool_size=1))) as box:
        yield box


def host_of(box: GVisorSandbox) -> GVisorHost:
    """What the open backend holds on the host (its runsc state, bundles, pool)."""
    assert box._host is not None
    return box._host


async def run_py(box: GVisorSandbox, code: str, **kwargs: object) -> RunResult:
    request = RunRequest(files={"main.py": code}, language="python", entry="main.py", **kwargs)  # type: ignore[arg-type]
    return await box.run(request)


# --- the bundle -----------------------------------------------------------------------------------


def test_bundle_shows_only_chosen_host_paths(tmp_path: Path) -> None:
    rootfs = tmp_path / "rootfs"
    static = build_rootfs(rootfs, uid=65534, gid=65534, mount_points=("/opt/libset",))
    spec = RunSpec(
        args=["/usr/bin/python3", "main.py"],
        env={"A": "1"},
        limits=Limits(pids=7, memory_mb=100),
        uid=65534,
        gid=65534,
        network=False,
        extra_mounts=[BindMount(tmp_path, "/sandbox", writable=True)],
        memory_headroom_mb=10,
    )
    config = build_config(rootfs, static, spec)
    assert config["root"] == {"path": str(rootfs), "readonly": True}
    sources = {m["source"] for m in config["mounts"] if m["type"] == "bind"}
    assert "/" not in sources and "/root" not in sources and "/etc" not in sources
    assert not any(s.startswith(("/etc/shadow", "/etc/passwd", "/root", "/home")) for s in sources)
    writable = {m["destination"]: m["source"] for m in config["mounts"] if "rw" in m.get("options", [])}
    # All writable places are dirs of the one scratch tmpfs (runsc's own /tmp would be unsized).
    assert writable == {
        "/sandbox": str(tmp_path),
        "/tmp": str(tmp_path / "tmp"),
        "/dev/shm": str(tmp_path / "shm"),
    }
    assert {"type": "network"} in config["linux"]["namespaces"]
    assert config["process"]["user"]["uid"] == 65534
    assert config["process"]["noNewPrivileges"] is True
    assert all(not caps for caps in config["process"]["capabilities"].values())
    rlimits = {r["type"]: r["hard"] for r in config["process"]["rlimits"]}
    assert rlimits["RLIMIT_NPROC"] == 7
    assert config["linux"]["resources"]["memory"]["limit"] == 110 * 1024 * 1024
    assert "root:x:0:0:root:/nonexistent" in (rootfs / "etc" / "passwd").read_text()
    assert not (rootfs / "etc" / "shadow").exists()


def test_network_on_keeps_its_own_stack(tmp_path: Path) -> None:
    spec = RunSpec(args=["x"], env={}, limits=Limits(), uid=1, gid=1, network=True)
    config = build_config(tmp_path, [], spec)
    assert {"type": "network"} in config["linux"]["namespaces"]
    assert not any(m["destination"] == "/etc/resolv.conf" for m in config["mounts"])


def test_seccomp_profile_blocks_sockets_without_network() -> None:
    names = {n for rule in seccomp_profile(network=False)["syscalls"] for n in rule["names"]}
    assert {"mount", "unshare", "ptrace", "bpf", "socket", "socketpair"} <= names
    with_net = seccomp_profile(network=True)["syscalls"]
    assert not any("socketpair" in rule["names"] for rule in with_net)


async def test_missing_runsc_is_reported_with_a_fix_by_open() -> None:
    box = GVisorSandbox(SandboxSettings(gvisor=GVisorSettings(runsc_path=Path("/nonexistent/runsc"))))
    with pytest.raises(SandboxUnavailableError, match="apt-get install runsc"):
        await box.open()


# --- runs -----------------------------------------------------------------------------------------


async def test_code_runs_on_the_gvisor_kernel(gvisor: GVisorSandbox) -> None:
    code = "import json, os\nprint(json.dumps([os.uname().release, open('/proc/version').read()]))\n"
    result = await run_py(gvisor, code)
    assert result.ok, result.stderr
    release, _version = json.loads(result.stdout)
    assert release != os.uname().release  # the Sentry's kernel, not the host's
    assert result.backend == "gvisor"
    assert 0 < result.boot_s <= result.duration_s
    assert result.peak_memory_mb is not None and result.peak_memory_mb > 1


async def test_memory_below_the_cap_is_usable(gvisor: GVisorSandbox) -> None:
    code = "x = bytearray(200 * 1024 * 1024)\nprint(len(x))\n"
    result = await run_py(gvisor, code, limits=Limits(memory_mb=256))
    assert result.ok, (result.reason, result.stderr)
    assert result.peak_memory_mb is not None
    assert 200 <= result.peak_memory_mb <= 256 + MEMORY_HEADROOM_MB


async def test_oom_is_reported(gvisor: GVisorSandbox) -> None:
    result = await run_py(gvisor, "x = bytearray(400 * 1024 * 1024)\n", limits=Limits(memory_mb=128))
    assert result.reason is EndReason.OOM
    assert result.exit_code < 0


async def test_cpu_cap_kills_with_sigkill(gvisor: GVisorSandbox) -> None:
    limits = Limits(cpu_seconds=0.5, wall_seconds=10)
    result = await run_py(gvisor, "while True: pass\n", limits=limits)
    assert (result.reason, result.exit_code) == (EndReason.KILLED, -9)
    # The CPU cap ended it, not the wall clock (how soon depends on the host's load: ptrace is slow).
    assert result.duration_s < limits.wall_seconds


async def test_network_true_does_not_reach_a_host_listener(gvisor: GVisorSandbox) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    code = (
        f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=5).sendall(b'hi')\n"
        "print('sent')\n"
    )
    listener.setblocking(False)
    try:
        result = await run_py(gvisor, code, network=True)
        assert not result.ok and "ConnectionRefusedError" in result.stderr, result.stderr
        with pytest.raises(BlockingIOError):
            listener.accept()
    finally:
        listener.close()


async def test_timeout_leaves_no_container_state(gvisor: GVisorSandbox) -> None:
    result = await run_py(gvisor, "import time\ntime.sleep(30)\n", limits=Limits(wall_seconds=1))
    assert result.reason is EndReason.TIMEOUT
    state = host_of(gvisor).runsc.state  # the runsc root dir is the ground truth here
    assert list(state.iterdir()) == []
    assert list(host_of(gvisor).runs.iterdir()) == []


async def test_start_failure_is_an_error() -> None:
    async with GVisorSandbox(SandboxSettings(gvisor=GVisorSettings(cgroup_pool_size=0))) as box:
        with pytest.raises(SandboxStartError, match="nonexistent") as info:
            await box.run(RunRequest(command=("/nonexistent/prog",)))
        # The message reaches API clients: no bundle / state / scratch path of the host.
        assert "/tmp/" not in str(info.value) and "/root" not in str(info.value), info.value
        assert "agentic-gvisor" not in str(info.value)


async def test_close_removes_everything_and_is_idempotent() -> None:
    box = await GVisorSandbox(SandboxSettings(gvisor=GVisorSettings(cgroup_pool_size=0))).open()
    tmp = host_of(box).tmp
    assert (await box.run(RunRequest(command=("/bin/echo", "x")))).stdout == "x\n"
    pool = host_of(box).pool
    prefix = pool.base_dirs["memory"].name if pool is not None else None
    await box.close()
    await box.close()
    assert not tmp.exists()
    if prefix is not None:  # runsc also made groups in freezer, devices, blkio, ... under our prefix
        assert [p for p in Path("/sys/fs/cgroup").glob(f"*/**/{prefix}") if p.is_dir()] == []
    with pytest.raises(SandboxStartError):
        await box.run(RunRequest(command=("/bin/true",)))


async def test_files_too_big_for_scratch_are_refused(gvisor: GVisorSandbox) -> None:
    request = RunRequest(
        command=("/bin/true",), files={"big.bin": b"x" * (2 * 1024 * 1024)}, limits=Limits(disk_mb=1)
    )
    with pytest.raises(InvalidRunRequestError, match="do not fit"):
        await gvisor.run(request)
    assert list(host_of(gvisor).runs.iterdir()) == []


async def test_cancelled_run_leaves_nothing(gvisor: GVisorSandbox) -> None:
    code = "import time\nprint('up', flush=True)\ntime.sleep(60)\n"
    task = asyncio.ensure_future(run_py(gvisor, code))
    await asyncio.sleep(1.5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert list(host_of(gvisor).runsc.state.iterdir()) == []
    assert list(host_of(gvisor).runs.iterdir()) == []
    assert str(host_of(gvisor).runs) not in Path("/proc/self/mountinfo").read_text()


async def test_daemon_dies_with_the_run(gvisor: GVisorSandbox) -> None:
    """Guest processes are not host processes, so prove the daemon is gone by what it would do.

    Its one way out is the egress proxy (here allow-listed to a test listener on 127.0.0.2): a
    daemon outliving the run would connect to it after the run returned.
    """
    listener = socket.socket()
    listener.bind(("127.0.0.2", 0))
    listener.listen(1)
    listener.settimeout(3.0)
    port = listener.getsockname()[1]
    assert gvisor.egress is not None
    saved = gvisor.egress.policy
    gvisor.egress.policy = EgressPolicy.from_entries(["127.0.0.2"], allow_internet=False)
    daemon = "import socket, time\ntime.sleep(1.0)\n"
    daemon += "s = socket.create_connection(('127.0.0.1', 3128))\n"
    daemon += f"s.sendall(b'CONNECT 127.0.0.2:{port} HTTP/1.1\\r\\n\\r\\n')\n"
    daemon += "s.recv(100); s.sendall(b'alive')\n"
    code = f"""
import os
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv('/usr/bin/python3', ['python3', '-c', {daemon!r}])
    os._exit(0)
print('parent leaving')
"""
    try:
        result = await run_py(gvisor, code, network=True)
        assert result.ok and "parent leaving" in result.stdout, result.stderr
        assert not descendants(os.getpid())  # no Sentry, gofer or runsc of the run is left on the host
        with pytest.raises(TimeoutError):
            await asyncio.to_thread(listener.accept)
    finally:
        gvisor.egress.policy = saved
        listener.close()


def test_runsc_errors_lose_their_host_paths() -> None:
    line = (
        "running container: starting container: mount /tmp/agentic-gvisor-123/runs/x/scratch "
        'to "/sandbox": open /root/.local/share/agentic/libsets/base: no such file'
    )
    cleaned = hide_host_paths(line)
    assert "/tmp/" not in cleaned and "/root" not in cleaned and "agentic-gvisor" not in cleaned
    assert '"/sandbox"' in cleaned and "no such file" in cleaned
