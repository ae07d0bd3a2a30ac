"""The ``gvisor`` backend: each run is a fresh gVisor sandbox (``runsc run``, ptrace platform).

Why gVisor: the program's syscalls are served by gVisor's user-space kernel (the Sentry), so a
kernel bug reachable from the program is not a host kernel bug. One run:

1. A size-capped host tmpfs (``disk_mb``) is mounted at the run's scratch dir and filled with the
   request's files (owned by the sandbox uid); it appears at ``/sandbox`` inside.
2. A ``config.json`` (see :mod:`sandbox.oci`) names the shared read-only root, the bind mounts,
   the argv / environment from :mod:`sandbox.commands`, rlimits and a seccomp profile (the
   bubblewrap backend's policy, enforced by the Sentry with ``--oci-seccomp``).
3. A one-line ``sh`` prelude moves itself into the run's pooled cgroups (``sandbox.cgroups``:
   memory, pids, cpu, plus a ``cpuacct`` group) and execs ``runsc --platform=ptrace
   --network=none --ignore-cgroups run --bundle DIR ID``, so runsc, its gofer and the
   Sentry all stay in them (letting runsc make groups in all 11 controllers cost ~90 ms a run).
   Stdio are pipes, read by the shared runner :func:`sandbox.process.run_process`. Never
   ``runsc do``: it shows the sandbox the host's filesystem.

Limits on this host (runsc 2022-12, cgroup v1):

* memory: the memory cgroup covers runsc, the gofer and the Sentry too, so
  :data:`MEMORY_HEADROOM_MB` is added to the program's cap; ``peak_memory_mb`` includes that
  overhead (~20 MB for ``print(1)``) and the scratch tmpfs pages the run wrote. An OOM kill takes
  the whole sandbox down and is read from the cgroup's ``oom_kill`` counter -> ``reason="oom"``.
* processes: ``RLIMIT_NPROC`` inside (gVisor enforces it, threads included). The host pids cgroup
  only gets a high safety cap: runsc crashes when it may not create ~256 host tasks.
* CPU seconds: gVisor ignores ``RLIMIT_CPU``, so the run's ``cpuacct`` usage (Sentry included) is
  polled every 100 ms and the sandbox killed past the cap -> ``reason="killed"``, ``exit_code=-9``.
  ``cpus`` is the cgroup CFS quota.
* wall clock: ``runsc kill --all`` + ``runsc delete --force``, then the cgroup is emptied.
* Without writable cgroups: memory falls back to ``RLIMIT_AS`` (a ``MemoryError`` is reported as
  ``oom``) and CPU seconds are not enforced (wall clock only); a warning says so at start-up.
* A program that exits by itself with code 129..159 is reported as killed by that signal
  (runsc reports a signal death as 128 + signal, like a shell).
* Output: the Sentry writes to our stdout / stderr pipes without blocking and hands a partial
  write back to the program (one 200 kB ``write`` came back as 65,536 bytes, the rest lost). So
  each pipe holds more than ``output_bytes``: a write is then either taken whole, or what the
  pipe took already passes the cap and the stream is flagged ``*_truncated``.
* This runsc ignores seccomp ``errnoRet``: refused calls fail with ``EPERM`` (bubblewrap: some
  ``EAFNOSUPPORT`` / ``ENOSYS``), and ``clone3`` stays allowed (see :func:`sandbox.oci.seccomp_profile`).

Network: always ``--network=none`` (the Sentry's own stack with only ``lo``; never the host's). A
run with network reaches out only through the egress proxy: its per-run dir is bound at
``/sandbox/net`` and runsc gets ``--host-uds=open`` so the forwarder can connect to the proxy's
socket there (``create`` too for a service, whose forwarder makes ``app.sock`` for the host).

``boot_s`` is the cost of a ``/usr/bin/true`` run (measured once per instance): runsc's own
start and tear-down (~0.2 s on an idle 2-core host), included in every ``duration_s``.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import dataclasses
import itertools
import json
import logging
import os
import re
import secrets
import shlex
import shutil
import signal
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import Self

from sandbox.base import EndReason, Limits, OutputChunk, RunRequest, RunResult
from sandbox.cgroups import Cgroup, CgroupUsage, open_pool
from sandbox.commands import DENO_PATH, build_argv, build_env, check_exec_size
from sandbox.config import SandboxSettings, egress_policy
from sandbox.egress_proxy import EgressProxy
from sandbox.egress_wiring import FORWARDER_PIDS, NET_DIR, NetWiring, open_wiring
from sandbox.errors import SandboxStartError, SandboxUnavailableError
from sandbox.launcher import SETUP_EXIT
from sandbox.libsets import MOUNT_POINT, LibrarySet, deno_binary, get_library_set
from sandbox.oci import (
    TMP_DIR,
    WORK_DIR,
    BindMount,
    RunSpec,
    build_config,
    build_rootfs,
    prepare_scratch,
    release_scratch,
)
from sandbox.process import ProcessOutcome, StreamName, run_process
from sandbox.resources import check_limits
from sandbox.service import ServiceHandle
from sandbox.streaming import ChunkSink, stream_chunks

__all__ = ["MEMORY_HEADROOM_MB", "GVisorSandbox"]

logger = logging.getLogger(__name__)

MEMORY_HEADROOM_MB = 48  # Sentry + gofer memory charged to the run's cgroup on top of the program's cap
_HOST_PIDS_MAX = 4096  # safety net only; RLIMIT_NPROC inside is the real cap
_CPU_POLL_S = 0.1
_PARTIAL_LINE_S = 0.05  # how long streamed output without a newline is held back
_RUNSC_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
_SETUP_FAILED = "agentic-gvisor: could not join the cgroups of the run"
_START_ERROR = "running container:"  # runsc's own failures: exit 128 and this line on stderr
_SIGNALS = {s.value for s in signal.Signals}
_ids = itertools.count()
_RUNSC_KILL_S = 2.0  # how long ``runsc kill`` may take before the cgroup SIGKILL takes over


def _join_cgroups_argv(tasks_files: list[Path], argv: list[str]) -> list[str]:
    """Wrap ``argv`` in a shell that moves itself into the given cgroups, then execs ``argv``.

    ``echo 0 > tasks`` moves the (single-threaded) shell as the current thread, which skips the
    kernel's threadgroup rwsem that ``echo $$ > cgroup.procs`` waits on (13-19 ms per run, see
    :attr:`sandbox.cgroups.Cgroup.tasks_files`); runsc and everything it starts inherit the groups.
    """
    unique = list(dict.fromkeys(str(p) for p in tasks_files))
    joins = " && ".join(f"echo 0 >{shlex.quote(p)}" for p in unique)
    script = f"{{ {joins}; }} || {{ echo '{_SETUP_FAILED}' >&2; exit {SETUP_EXIT}; }}\nexec \"$@\""
    return ["/bin/sh", "-c", script, "sh", *argv]


def _own_cgroup(controller: str) -> str:
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, names, path = line.split(":", 2)
        if controller in names.split(","):
            return path.lstrip("/")
    return ""


class _ChunkQueue:
    """Decodes streamed output and hands it on in whole lines where it can.

    Why: the Sentry forwards each of the program's writes separately and slower than a native pipe,
    so ``print`` (unbuffered: text, then newline) would often arrive as two chunks. A partial line
    is held back until more output comes or :data:`_PARTIAL_LINE_S` passes.
    """

    def __init__(self, queue: ChunkSink) -> None:
        self.queue = queue
        self.decoders = {n: codecs.getincrementaldecoder("utf-8")("replace") for n in ("stdout", "stderr")}
        self.pending: dict[StreamName, str] = {"stdout": "", "stderr": ""}
        self.timers: dict[StreamName, asyncio.TimerHandle] = {}

    def add(self, stream: StreamName, data: bytes) -> None:
        """Take one chunk read from ``stream``."""
        text = self.pending[stream] + self.decoders[stream].decode(data)
        if (timer := self.timers.pop(stream, None)) is not None:
            timer.cancel()
        cut = text.rfind("\n") + 1
        if cut:
            self.queue.put_nowait(OutputChunk(stream=stream, data=text[:cut]))
        self.pending[stream] = text[cut:]
        if self.pending[stream]:
            self.timers[stream] = asyncio.get_running_loop().call_later(_PARTIAL_LINE_S, self._emit, stream)

    def _emit(self, stream: StreamName) -> None:
        self.timers.pop(stream, None)
        if self.pending[stream]:
            self.queue.put_nowait(OutputChunk(stream=stream, data=self.pending[stream]))
            self.pending[stream] = ""

    def flush(self) -> None:
        """Hand on everything held back (the run is over)."""
        names: tuple[StreamName, ...] = ("stdout", "stderr")
        for name in names:
            if (timer := self.timers.pop(name, None)) is not None:
                timer.cancel()
            self.pending[name] += self.decoders[name].decode(b"", final=True)
            self._emit(name)


class GVisorSandbox:
    """Run untrusted code in gVisor (runsc). See :mod:`sandbox.base` for the contract."""

    name = "gvisor"

    def __init__(self, settings: SandboxSettings | None = None, *, egress: EgressProxy | None = None) -> None:
        """Find runsc, build the shared read-only root and fill the cgroup pool.

        ``egress``: the proxy of runs with network (default: one with the settings' policy).

        Raises:
            SandboxUnavailableError: runsc is missing or we are not root.
        """
        self.settings = settings or SandboxSettings()
        s = self.settings
        runsc = str(s.runsc_path) if s.runsc_path is not None else shutil.which("runsc")
        if runsc is None or not os.access(runsc, os.X_OK):
            raise SandboxUnavailableError(
                "runsc not found; fix: apt-get install runsc (or set AGENTIC_SANDBOX_RUNSC_PATH)"
            )
        if os.geteuid() != 0:
            raise SandboxUnavailableError(
                "the gvisor sandbox must run as root (runsc creates namespaces and mounts)"
            )
        self._runsc = runsc
        self.egress = egress if egress is not None else EgressProxy(egress_policy(s))
        self._closed = False
        self._libsets: dict[str, LibrarySet] = {}
        self._deno: Path | None = None
        self._boot_s: float | None = None
        self._boot_lock = asyncio.Lock()
        self._tmp = Path(tempfile.mkdtemp(prefix="agentic-gvisor-"))
        self._tmp.chmod(0o711)
        self._state = self._tmp / "state"
        self._runs = self._tmp / "runs"
        self._rootfs = self._tmp / "rootfs"
        self._state.mkdir(mode=0o700)
        self._runs.mkdir(mode=0o711)
        self._static = build_rootfs(
            self._rootfs, uid=s.sandbox_uid, gid=s.sandbox_gid, mount_points=(MOUNT_POINT, DENO_PATH)
        )
        self._pool = open_pool(
            s.cgroup_root,
            s.cgroup_pool_size,
            enabled=s.use_cgroups,
            fallback="gvisor memory falls back to RLIMIT_AS, no CPU-seconds cap",
        )

    @property
    def uses_cgroups(self) -> bool:
        """True when memory / CPU limits are enforced with cgroups (False: rlimit fallback)."""
        return self._pool is not None

    def _library_set(self, name: str) -> LibrarySet:
        libset = self._libsets.get(name)
        if libset is None:
            libset = get_library_set(name, self.settings)
            self._libsets[name] = libset
        return libset

    def _runsc_argv(self, *args: str, host_uds: str = "none") -> list[str]:
        argv = [self._runsc, "--root", str(self._state), f"--platform={self.settings.gvisor_platform}"]
        argv.append("--oci-seccomp")  # enforce config.json's seccomp profile inside the Sentry
        argv.append("--network=none")  # never the host's stack; network goes through the egress proxy
        argv.append(f"--host-uds={host_uds}")
        # We put runsc into the run's pooled cgroups ourselves (it and everything it starts stay
        # there); letting runsc make groups in all 11 controllers costs ~90 ms per run.
        argv.append("--ignore-cgroups")
        return [*argv, *args]

    async def _runsc_quiet(self, *args: str, timeout: float = 10.0) -> None:
        """Run a runsc management command, ignoring its output (it fails for gone containers)."""
        proc = await asyncio.create_subprocess_exec(
            *self._runsc_argv(*args),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            env=_RUNSC_ENV,
        )
        try:
            await asyncio.wait_for(proc.wait(), timeout=timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()

    async def _destroy(self, cid: str) -> None:
        """Kill every process of container ``cid`` and delete it (idempotent)."""
        await self._runsc_quiet("kill", "--all", cid, "KILL")
        await self._runsc_quiet("delete", "--force", cid)

    def _extra_mounts(
        self, request: RunRequest, libset: LibrarySet, scratch: Path, wiring: NetWiring | None = None
    ) -> list[BindMount]:
        mounts = [BindMount(scratch, str(PurePosixPath(WORK_DIR).parent), writable=True)]
        if wiring is not None:  # writable for a service: its forwarder creates app.sock there
            mounts.append(BindMount(wiring.host_dir, NET_DIR, writable=wiring.ingress_port is not None))
        if libset.host_path is not None:
            mounts.append(BindMount(libset.host_path, libset.mount_point))
        if request.language == "typescript":
            if self._deno is None:
                self._deno = deno_binary()
            mounts.append(BindMount(self._deno, DENO_PATH))
        return mounts

    def _prepare_cgroup(self, cgroup: Cgroup) -> Path | None:
        """Adapt a pooled group to gVisor; return the run's ``cpuacct`` group (None: no CPU cap)."""
        (cgroup.dirs["pids"] / "pids.max").write_text(str(_HOST_PIDS_MAX))
        assert self._pool is not None
        prefix = self._pool.base_dirs["memory"].name
        cpuacct = self.settings.cgroup_root / "cpuacct" / _own_cgroup("cpuacct") / prefix / cgroup.name
        try:
            cpuacct.mkdir(parents=True, exist_ok=True)
            (cpuacct / "cpuacct.usage").write_text("0")
        except OSError as exc:
            logger.warning("no cpuacct cgroup (%s): gvisor cannot enforce cpu_seconds", exc)
            return None
        return cpuacct

    async def _watch_cpu(self, cpuacct: Path, limit_s: float, on_exceeded: asyncio.Event, cid: str) -> None:
        """Kill the sandbox once its CPU time (Sentry included) passes ``limit_s`` (gVisor: no RLIMIT_CPU)."""
        limit_ns = limit_s * 1e9
        while True:
            await asyncio.sleep(_CPU_POLL_S)
            try:
                used = int(cpuacct.read_text().strip())
            except (OSError, ValueError):
                continue  # not created yet, or already gone
            if used > limit_ns:
                logger.debug("container %s used %.2fs CPU (cap %.1fs); killing", cid, used / 1e9, limit_s)
                on_exceeded.set()
                await self._destroy(cid)
                return

    async def run(self, request: RunRequest) -> RunResult:
        """Run ``request`` to completion (never raises for program failures)."""
        await self._calibrate()
        return await self._execute(request, None)

    async def stream(self, request: RunRequest) -> AsyncIterator[OutputChunk]:
        """Yield stdout / stderr chunks as produced, then one ``result`` chunk."""
        await self._calibrate()
        # aclosing: when our consumer leaves early, the inner generator must stop (and kill the run)
        # now, not whenever the garbage collector finalizes it.
        async with contextlib.aclosing(stream_chunks(lambda q: self._execute(request, q))) as chunks:
            async for chunk in chunks:
                yield chunk

    async def start_service(self, request: RunRequest, *, port: int) -> ServiceHandle:
        """Start ``request`` as a service on ``port`` (no wall-clock cap; network through the proxy)."""
        if self._closed:
            raise SandboxStartError("sandbox is closed")
        check_limits(request.limits, self.settings.max_limits)
        await self._calibrate()
        handle = ServiceHandle(request.labels.get("app", "service"))
        # A service listens on its own loopback: it gets the network profile and the proxy, always.
        request = dataclasses.replace(request, network=True)
        handle.start(self._execute(request, handle, service=(handle, port)))
        return handle

    async def _calibrate(self) -> None:
        """Measure runsc's start + tear-down once (``boot_s``) with a ``/usr/bin/true`` run."""
        if self._boot_s is not None:
            return
        async with self._boot_lock:
            if self._boot_s is None:
                result = await self._execute(RunRequest(command=("/usr/bin/true",), limits=Limits()), None)
                self._boot_s = round(result.duration_s, 4)
                logger.info("gvisor: a /usr/bin/true run costs %.3fs", self._boot_s)

    async def _execute(
        self, request: RunRequest, queue: ChunkSink | None, service: tuple[ServiceHandle, int] | None = None
    ) -> RunResult:
        if self._closed:
            raise SandboxStartError("sandbox is closed")
        s = self.settings
        check_limits(request.limits, s.max_limits)
        if request.pipe_fds:
            # runsc gives the container only its own stdio: host pipes cannot reach the program.
            raise SandboxStartError("the gvisor backend cannot pass host pipes (the browser runs on local)")
        libset = self._library_set(request.library_set)
        argv = build_argv(request, libset)
        env = build_env(request, libset, home=WORK_DIR, tmp=TMP_DIR)
        check_exec_size(argv, env)
        limits = request.limits
        cid = f"agentic-{os.getpid()}-{next(_ids)}-{secrets.token_hex(4)}"
        rundir = self._runs / cid
        scratch = rundir / "scratch"
        cgroup: Cgroup | None = None
        watcher: asyncio.Task[None] | None = None
        wiring: NetWiring | None = None
        cpu_exceeded = asyncio.Event()
        chunks = _ChunkQueue(queue) if queue is not None else None

        async def kill(pid: int) -> None:
            if cgroup is None:
                await self._destroy(cid)
                return
            # ``runsc kill`` lets the Sentry stop cleanly (then ``runsc delete`` is quick), but under
            # load it can take seconds to answer (a 1 s deadline once ended after 6 s): give it a
            # bounded moment, then SIGKILL runsc, the gofer and the Sentry through the run's cgroup.
            # runsc's state is deleted in _cleanup, after the run's duration is taken.
            await self._runsc_quiet("kill", "--all", cid, "KILL", timeout=_RUNSC_KILL_S)
            await asyncio.to_thread(cgroup.kill_all)

        try:
            rundir.mkdir(mode=0o700)
            try:
                await asyncio.to_thread(
                    prepare_scratch,
                    scratch,
                    request.files,
                    disk_mb=limits.disk_mb,
                    uid=s.sandbox_uid,
                    gid=s.sandbox_gid,
                )
            except OSError as exc:
                logger.warning("could not prepare the scratch dir of %s: %s", cid, exc)
                raise SandboxStartError(f"could not prepare the scratch dir: {exc.strerror}") from exc
            if request.network:
                wiring = await open_wiring(
                    self.egress,
                    self._tmp / "net",
                    request.labels,
                    owner=(s.sandbox_uid, s.sandbox_gid) if service is not None else None,
                    ingress_port=service[1] if service is not None else None,
                )
                if service is not None:
                    service[0].socket_path = wiring.app_socket
                argv, env = wiring.argv(argv), env | wiring.env()
                limits = dataclasses.replace(limits, pids=limits.pids + FORWARDER_PIDS)
            cpuacct: Path | None = None
            if self._pool is not None:
                padded = dataclasses.replace(limits, memory_mb=limits.memory_mb + MEMORY_HEADROOM_MB)
                cgroup = await asyncio.to_thread(self._pool.acquire, padded)
                cpuacct = await asyncio.to_thread(self._prepare_cgroup, cgroup)
            spec = RunSpec(
                args=argv,
                env=env,
                limits=limits,
                uid=s.sandbox_uid,
                gid=s.sandbox_gid,
                network=request.network,
                extra_mounts=self._extra_mounts(request, libset, scratch, wiring),
                memory_headroom_mb=MEMORY_HEADROOM_MB,
                rlimit_memory=self._pool is None,
            )
            config = build_config(self._rootfs, self._static, spec)
            (rundir / "config.json").write_text(json.dumps(config))
            if cgroup is not None and cpuacct is not None:
                watcher = asyncio.ensure_future(
                    self._watch_cpu(cpuacct / "cpuacct.usage", limits.cpu_seconds, cpu_exceeded, cid)
                )
            host_uds = "none" if wiring is None else "all" if service is not None else "open"
            runsc = self._runsc_argv("run", "--bundle", str(rundir), cid, host_uds=host_uds)
            if cgroup is not None:
                joins = [*cgroup.tasks_files, *([cpuacct / "tasks"] if cpuacct is not None else [])]
                runsc = _join_cgroups_argv(joins, runsc)
            try:
                outcome = await run_process(
                    runsc,
                    timeout_s=None if service is not None else limits.wall_seconds,
                    output_limit=limits.output_bytes,
                    stdin=request.stdin,
                    env=_RUNSC_ENV,
                    cwd=rundir,
                    kill=kill,
                    on_output=chunks.add if chunks is not None else None,
                    output_pipe_size=limits.output_bytes + 1,
                )
            except OSError as exc:
                raise SandboxStartError(f"could not start runsc: {exc}") from exc
            usage = cgroup.usage() if cgroup is not None else None
        finally:
            if watcher is not None:
                watcher.cancel()
                with contextlib.suppress(BaseException):
                    await watcher
            cleanup = asyncio.ensure_future(self._cleanup(cid, rundir, scratch, cgroup, wiring))
            try:
                await asyncio.shield(cleanup)
            except asyncio.CancelledError:
                await cleanup  # cancelled mid-run: still leave nothing behind
                raise
        if chunks is not None:
            chunks.flush()
        return self._result(outcome, usage, cpu_exceeded.is_set())

    async def _cleanup(
        self, cid: str, rundir: Path, scratch: Path, cgroup: Cgroup | None, wiring: NetWiring | None = None
    ) -> None:
        """Make sure nothing of run ``cid`` remains: container state, processes, mount, cgroup, files."""
        if wiring is not None:
            with contextlib.suppress(Exception):
                await wiring.close()
        if cgroup is not None:
            await asyncio.to_thread(cgroup.kill_all)
        if any(self._state.glob(f"{cid}*")):
            await self._destroy(cid)
            # Under load ``runsc delete`` can leave the container's lock file behind; the processes
            # are gone (cgroup emptied above), so what remains is only files.
            await asyncio.to_thread(_remove_state_files, self._state, cid)
        if cgroup is not None and self._pool is not None:
            await asyncio.to_thread(self._pool.release, cgroup, emptied=True)
        if scratch.exists():
            release_scratch(scratch)
        await asyncio.to_thread(shutil.rmtree, rundir, True)

    def _result(
        self,
        outcome: ProcessOutcome,
        usage: CgroupUsage | None,
        cpu_exceeded: bool,
    ) -> RunResult:
        stderr = outcome.stderr.decode("utf-8", "replace")
        code = outcome.exit_code
        lines = stderr.strip().splitlines()
        if code == SETUP_EXIT and _SETUP_FAILED in stderr:
            logger.warning("gvisor setup failed: %s", stderr.strip()[-2000:])
            raise SandboxStartError("gvisor setup failed: could not join the run's cgroups")
        if code == 128 and not outcome.timed_out and lines and lines[-1].startswith(_START_ERROR):
            logger.warning("runsc failed: %s", stderr.strip()[-2000:])
            raise SandboxStartError(f"runsc failed: {_hide_host_paths(lines[-1])}")
        if code > 128 and (code - 128) in _SIGNALS:
            code = -(code - 128)
        if outcome.timed_out:
            reason = EndReason.TIMEOUT
        elif usage is not None and usage.oom:
            reason = EndReason.OOM
        elif usage is None and code != 0 and "MemoryError" in stderr:
            reason = EndReason.OOM  # RLIMIT_AS fallback
        elif cpu_exceeded:
            reason = EndReason.KILLED
            code = -signal.SIGKILL
        elif code < 0:
            reason = EndReason.KILLED
        else:
            reason = EndReason.EXIT
        return RunResult(
            exit_code=code,
            stdout=outcome.stdout.decode("utf-8", "replace"),
            stderr=stderr,
            stdout_truncated=outcome.stdout_truncated,
            stderr_truncated=outcome.stderr_truncated,
            reason=reason,
            duration_s=outcome.duration_s,
            peak_memory_mb=usage.peak_memory_mb if usage is not None else None,
            boot_s=min(self._boot_s, outcome.duration_s) if self._boot_s is not None else outcome.duration_s,
            backend=self.name,
        )

    async def close(self) -> None:
        """Remove the cgroup pool, runsc's state and the shared root; idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._pool is not None:
            prefix = self._pool.base_dirs["memory"].name
            await asyncio.to_thread(self._pool.close)
            # runsc made (and owns) groups in the other controllers under the same prefix.
            for ctrl_dir in self.settings.cgroup_root.iterdir():
                base = ctrl_dir / _own_cgroup(ctrl_dir.name) / prefix if ctrl_dir.is_dir() else None
                if base is not None and base.is_dir():
                    for leaf in sorted(base.glob("*/"), reverse=True):
                        with contextlib.suppress(OSError):
                            leaf.rmdir()
                    with contextlib.suppress(OSError):
                        base.rmdir()
        for run_dir in self._runs.glob("*"):
            release_scratch(run_dir / "scratch")
        await asyncio.to_thread(shutil.rmtree, self._tmp, True)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


_HOST_PATH = re.compile(r"(?<![\w.])/(?:tmp|root|home|run|var|proc|sys|work|srv|opt|mnt)(?:/[^\s\"':,]*)?")


def _hide_host_paths(message: str) -> str:
    """Replace host paths (bundle, state, scratch, cgroups) in a runsc error: API callers see it."""
    return _HOST_PATH.sub("<host path>", message)


def _remove_state_files(state: Path, cid: str) -> None:
    """Remove what runsc left of container ``cid`` in its state dir."""
    for leftover in state.glob(f"{cid}*"):
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                leftover.unlink()
