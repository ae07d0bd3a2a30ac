"""The ``local`` backend: bubblewrap + seccomp + cgroup v1 limits, as an unprivileged uid.

How one run is built (cheap parts are cached per instance, so a ``print(1)`` costs a few ms more
than a bare interpreter start):

1. ``agentic-launch`` (:mod:`sandbox.launcher`, a small static C program, as root) puts itself
   into the run's pooled cgroups, lowers rlimits (CPU seconds, file size, no core dumps; data size
   and process count too when cgroups are not writable), enters a pooled empty network namespace
   (:mod:`sandbox.netns`) unless the request wants network, and drops to a per-run host uid
   (``host_uid_base + slot``, shown as ``sandbox_uid`` inside) with no supplementary groups and
   ``no_new_privs``.
2. ``bwrap`` (now unprivileged) creates user, pid, ipc, uts and cgroup namespaces (and a network
   namespace itself when the pool is unusable on this host); the root is an empty tmpfs with
   read-only system dirs, a synthesized ``/etc`` (no host passwd / shadow), ``/proc``, a minimal
   ``/dev`` and a size-capped tmpfs scratch dir (``/sandbox/work`` = cwd and ``$HOME``, ``/tmp`` ->
   ``/sandbox/tmp``) filled from memfds. ``/dev`` is remounted read-only and ``/dev/shm`` is its
   own tmpfs of :func:`~sandbox.bwrap_host.shm_bytes` (``min(disk_mb, 64)`` MB), so everything a
   run can write is sized: at most ``disk_mb + min(disk_mb, 64)`` MB in all. Without cgroups
   (rlimits do not count tmpfs pages) a run whose arguments hold an unsized writable tmpfs is refused.
   Paths only root may traverse (library sets under ``/root``) are bind-staged by root into a
   world-traversable dir first (:mod:`sandbox.bwrap_host`).
   Python runs as ``/opt/python/bin/python3``, a venv-style launcher of the system interpreter
   without system site-packages (:data:`sandbox.bwrap_host.PYTHON_VENV`): host ``.pth`` hooks stay out.
   bwrap reads its options from a memfd (``--args FD``) and the stage dir is its own tmpfs, so the
   program sees no host path, server pid or set-up argument in ``/proc/1/cmdline`` or
   ``/proc/self/mountinfo`` (tmpfs mount options still show the run's host uid, a number from the
   per-run range: an unprivileged bwrap cannot mount a tmpfs owned by anyone else).
3. The seccomp BPF (see :mod:`sandbox.seccomp`) is passed with ``--seccomp FD`` so it applies to
   the program only. The launchers run with a fixed minimal env; bwrap ``--clearenv`` / ``--setenv``
   gives the program exactly :func:`sandbox.commands.build_env` (the request's env never reaches
   root-side code: think ``LD_PRELOAD``).

``network=True`` gives the run a new network namespace of its own with only ``lo`` up (never the
host's: no host loopback service, port or abstract Unix socket is reachable). Its one way out is the
egress proxy (:mod:`sandbox.egress_proxy`): a per-run Unix socket bound at ``/sandbox/net`` and
the forwarder (:mod:`sandbox.forwarder`) serving ``HTTP_PROXY`` on the sandbox's loopback. The
seccomp profile with network allows ``AF_INET`` sockets (they reach that loopback only).
``start_service`` runs the same way without a wall-clock cap, with the forwarder also relaying
``/sandbox/net/app.sock`` (the host's way in) to the program's port.

Event-loop cost per run: two worker-thread hops (cgroup setup + memfds + spawn; then usage, kill
and the group's return to the pool), since hosts like ``langgraph dev`` forbid blocking calls there.

A run ends by itself, by the wall-clock deadline (the bwrap tree and every pid in the cgroup are
SIGKILLed; the pid namespace takes double-forked children with it), or by a limit: memory (cgroup
OOM kill -> ``oom``), pids, CPU seconds (RLIMIT_CPU per process plus a cpuacct watchdog over the
whole tree -> ``killed``), scratch size (tmpfs ``--size`` and RLIMIT_FSIZE). A program killed by
a signal reports ``-signal`` (bwrap's ``128 + n`` is mapped back; an exit code above 128 that
matches a signal number is therefore read as that signal).
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import dataclasses
import logging
import os
import secrets
import signal
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import Self

from sandbox import seccomp
from sandbox.base import EndReason, OutputChunk, RunRequest, RunResult
from sandbox.bwrap_host import (
    BWRAP_PIDS,
    PYTHON_VENV,
    SCRATCH_DIR,
    TMP_DIR,
    WORK_DIR,
    HostStage,
    launcher_rlimits,
    shm_bytes,
    static_args,
    unsized_tmpfs,
)
from sandbox.cgroups import Cgroup, CgroupPool, CgroupUsage, PoolClosedError, open_pool
from sandbox.commands import DENO_PATH, build_argv, build_env, check_exec_size, check_relative_path
from sandbox.config import SandboxSettings, egress_policy
from sandbox.egress_proxy import EgressProxy
from sandbox.egress_wiring import FORWARDER_PIDS, NET_DIR, NetWiring, open_wiring
from sandbox.errors import InvalidRunRequestError, SandboxStartError, SandboxUnavailableError
from sandbox.guard import check_file_count
from sandbox.launcher import SETUP_EXIT, SETUP_FAILED, build_launcher, launch_args
from sandbox.libsets import LibrarySet, deno_binary, get_library_set
from sandbox.netns import NetnsPool
from sandbox.process import StreamName, run_process
from sandbox.resources import check_limits
from sandbox.service import ServiceHandle
from sandbox.streaming import ChunkSink, stream_chunks

__all__ = ["SCRATCH_DIR", "TMP_DIR", "WORK_DIR", "BubblewrapSandbox"]

logger = logging.getLogger(__name__)

UID_SLOTS = 4096  # host uids host_uid_base .. +4095, one per concurrent run

_LAUNCHER_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C"}
_FALLBACK_OOM_MARKERS = ("MemoryError", "JavaScript heap out of memory", "out of memory")
# bwrap reports a signal death of the program as 128 + signal number.
_SIGNALS = {s.value for s in signal.Signals}


def _args_memfd(args: list[str]) -> int:
    """A memfd holding ``args`` NUL-separated, for ``bwrap --args FD`` (the caller closes it)."""
    fd = os.memfd_create("agentic-args", os.MFD_CLOEXEC)
    data = memoryview(b"".join(arg.encode() + b"\0" for arg in args))
    while data:
        data = data[os.write(fd, data) :]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _cleanup(pool: CgroupPool | None, netns: NetnsPool | None, stage: HostStage) -> None:
    """Free what a sandbox holds on the host (runs from ``close`` or from the GC / exit finalizer)."""
    if pool is not None:
        pool.close()
    if netns is not None:
        netns.close()
    stage.cleanup()


def _open_netns_pool(launcher: Path, directory: Path) -> NetnsPool | None:
    """A pool of reusable network namespaces, or None (bwrap makes one per run) if unusable here."""
    pool = NetnsPool(launcher, directory)
    try:
        pool.release(pool.acquire())
    except OSError as exc:
        logger.warning("pooled network namespaces unusable (%s); bwrap creates one per run", exc)
        pool.close()
        return None
    return pool


async def _cpu_watchdog(
    cgroup: Cgroup, cpu_seconds: float, spawned: list[int], kill: Callable[[int], Awaitable[None]]
) -> None:
    """Kill the run when the whole tree used more than ``cpu_seconds`` (RLIMIT_CPU is per process)."""
    while True:
        await asyncio.sleep(0.1)
        if spawned and cgroup.cpu_seconds() > cpu_seconds:
            logger.debug("run passed its %.1fs CPU budget; killing the tree", cpu_seconds)
            await kill(spawned[0])
            return


class BubblewrapSandbox:
    """Run untrusted code locally with bubblewrap. See :mod:`sandbox.base` for the contract."""

    name = "local"

    def __init__(self, settings: SandboxSettings | None = None, *, egress: EgressProxy | None = None) -> None:
        """Check the host tools, prepare the static parts of every run and fill the cgroup pool.

        ``egress``: the proxy of runs with network (default: one with the settings' policy).

        Raises:
            SandboxUnavailableError: bubblewrap or a C compiler for the launcher is missing, or we
                are not root.
        """
        self.settings = settings or SandboxSettings()
        s = self.settings
        if not os.access(s.bwrap_path, os.X_OK):
            raise SandboxUnavailableError(f"{s.bwrap_path} not found; fix: apt-get install bubblewrap")
        if os.geteuid() != 0:
            raise SandboxUnavailableError("the local sandbox must run as root to drop to an unprivileged uid")
        self._launcher = build_launcher(s.cache_dir, s.launcher_cc)
        self.egress = egress if egress is not None else EgressProxy(egress_policy(s))
        self._closed = False
        # Host uids rotate (random start, round robin): zombies of a finished run are reaped late by
        # host pid 1 and still count in their uid's RLIMIT_NPROC, so a uid is not reused right away.
        self._busy_slots: set[int] = set()
        self._next_slot = secrets.randbelow(UID_SLOTS)
        self._libsets: dict[str, LibrarySet] = {}
        self._deno: Path | None = None
        self._inflight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._stage = HostStage(s.sandbox_uid, s.sandbox_gid, s.python_path)
        self._netns: NetnsPool | None = None
        self._pool: CgroupPool | None = None
        try:
            self._netns = _open_netns_pool(self._launcher, self._stage.netns_dir)
            self._prefix = {
                net: static_args(
                    s, self._stage.etc, network=net, new_netns=self._netns is None, venv=self._stage.venv
                )
                for net in (False, True)
            }
            self._pool = open_pool(
                s.cgroup_root, s.cgroup_pool_size, enabled=s.use_cgroups, fallback="rlimits instead"
            )
            seccomp.bpf_program(False)
            seccomp.bpf_program(True)
        except BaseException:
            _cleanup(self._pool, self._netns, self._stage)  # a failed start leaves nothing behind
            raise
        # If the owner forgets close(), still remove groups, mounts and temp files at exit / GC.
        self._finalizer = weakref.finalize(self, _cleanup, self._pool, self._netns, self._stage)

    @property
    def uses_cgroups(self) -> bool:
        """True when limits are enforced with cgroups (False: rlimit fallback)."""
        return self._pool is not None

    def _library_set(self, name: str) -> LibrarySet:
        libset = self._libsets.get(name)
        if libset is None:
            libset = get_library_set(name, self.settings)
            self._libsets[name] = libset
        return libset

    def _run_args(
        self, request: RunRequest, libset: LibrarySet, fds: list[int], wiring: NetWiring | None = None
    ) -> list[str]:
        """Per-run bwrap arguments: scratch tmpfs, request files (memfds), library set, seccomp."""
        limits = request.limits
        size = str(max(1, limits.disk_mb) * 1024 * 1024)
        args = ["--size", size, "--perms", "0755", "--tmpfs", SCRATCH_DIR]
        args += ["--dir", WORK_DIR, "--dir", TMP_DIR, "--symlink", TMP_DIR, "/tmp"]
        made: set[str] = set()
        check_file_count(len(request.files))  # defence in depth: the guard checked it already
        total = sum(len(c.encode() if isinstance(c, str) else c) for c in request.files.values())
        if total > max(1, limits.disk_mb) * 1024 * 1024:
            raise InvalidRunRequestError(f"files ({total} bytes) exceed the {limits.disk_mb} MB scratch dir")
        for raw, content in request.files.items():
            rel = check_relative_path(raw)
            parents = list(PurePosixPath(rel).parents)[:-1]
            for parent in reversed(parents):
                if str(parent) not in made:
                    made.add(str(parent))
                    args += ["--dir", f"{WORK_DIR}/{parent}"]
            data = content.encode() if isinstance(content, str) else bytes(content)
            fd = os.memfd_create("agentic-file", os.MFD_CLOEXEC)
            fds.append(fd)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.lseek(fd, 0, os.SEEK_SET)
            args += ["--perms", "0644", "--file", str(fd), f"{WORK_DIR}/{rel}"]
        # /dev (bwrap's --dev tmpfs) becomes read-only; /dev/shm its own small sized tmpfs.
        args += ["--size", str(shm_bytes(limits)), "--perms", "1777", "--tmpfs", "/dev/shm"]
        args += ["--remount-ro", "/dev"]
        if libset.host_path is not None:
            args += ["--ro-bind", str(self._stage.reachable(libset.host_path)), libset.mount_point]
        if request.language == "typescript":
            if self._deno is None:
                self._deno = self._stage.reachable(deno_binary())
            args += ["--ro-bind", str(self._deno), DENO_PATH]
        if wiring is not None:  # writable for a service: its forwarder creates app.sock there
            bind = "--bind" if wiring.ingress_port is not None else "--ro-bind"
            args += [bind, str(wiring.host_dir), NET_DIR]
        bpf = seccomp.bpf_fd(request.network)
        fds.append(bpf)
        args += ["--remount-ro", "/", "--chdir", WORK_DIR, "--seccomp", str(bpf), "--"]
        return args

    async def run(self, request: RunRequest) -> RunResult:
        """Run ``request`` to completion (never raises for program failures)."""
        return await self._execute(request, None)

    async def stream(self, request: RunRequest) -> AsyncIterator[OutputChunk]:
        """Yield stdout / stderr chunks as produced, then one ``result`` chunk."""
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
        handle = ServiceHandle(request.labels.get("app", "service"))
        # A service listens on its own loopback: it gets the network profile and the proxy, always.
        request = dataclasses.replace(request, network=True)
        handle.start(self._execute(request, handle, service=(handle, port)))
        return handle

    async def _execute(
        self, request: RunRequest, queue: ChunkSink | None, service: tuple[ServiceHandle, int] | None = None
    ) -> RunResult:
        if self._closed:
            raise SandboxStartError("sandbox is closed")
        check_limits(request.limits, self.settings.max_limits)
        if request.pipe_fds and not request.network:
            raise InvalidRunRequestError("pipe_fds need network=True (the forwarder places them)")
        libset = self._library_set(request.library_set)
        argv = build_argv(request, libset, python=f"{PYTHON_VENV}/bin/python3")
        if self._pool is None and request.language == "typescript":
            # No memory cgroup: cap V8's heap instead of RLIMIT_DATA (V8 reserves far more than it uses).
            heap_mb = max(16, request.limits.memory_mb * 3 // 4)
            argv.insert(2, f"--v8-flags=--max-old-space-size={heap_mb}")
        env = build_env(request, libset, home=WORK_DIR, tmp=TMP_DIR)
        check_exec_size(argv, env)
        limits = request.limits
        fds: list[int] = []
        cgroup: Cgroup | None = None
        decoders = {n: codecs.getincrementaldecoder("utf-8")("replace") for n in ("stdout", "stderr")}

        def on_output(stream: StreamName, data: bytes) -> None:
            assert queue is not None
            text = decoders[stream].decode(data)
            if text:
                queue.put_nowait(OutputChunk(stream=stream, data=text))

        async def kill(pid: int) -> None:
            # bwrap first: --die-with-parent takes the pid namespace (and every fork in it) down.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
            if cgroup is not None:  # then anything left in the cgroup, off the event loop
                await asyncio.to_thread(cgroup.kill_all)

        slot = self._take_slot()
        pool = self._pool
        netns_pool = None if request.network else self._netns
        netns: Path | None = None
        watchdog: asyncio.Future[None] | None = None
        wiring: NetWiring | None = None

        def prepare() -> tuple[list[str], list[int]]:
            # File I/O (cgroup knobs, memfds) and the spawn share one worker-thread hop: hosts that
            # forbid blocking calls in the event loop (``langgraph dev``) accept it, and each hop
            # costs a loop wake-up (0.1-0.5 ms on a busy 2-core host).
            nonlocal cgroup, netns
            if pool is not None:
                try:  # +2 pids: bwrap and the namespace's init (+1: the network forwarder).
                    extra = BWRAP_PIDS + (FORWARDER_PIDS if wiring is not None else 0)
                    cgroup = pool.acquire(limits, extra_pids=extra)
                except PoolClosedError:
                    raise SandboxStartError("sandbox is closed") from None
            if netns_pool is not None:
                try:
                    netns = netns_pool.acquire()
                except OSError as exc:
                    raise SandboxStartError(f"no network namespace for the run: {exc}") from exc
            uid, gid = self._host_ids(slot)
            full = launch_args(
                self._launcher,
                uid=uid,
                gid=gid,
                tasks_files=cgroup.tasks_files if cgroup is not None else (),
                rlimits=launcher_rlimits(limits, cgroup, data_rlimit=request.language != "typescript"),
                netns=netns,
            )
            prefix = self._prefix[request.network]
            # The request's env must never reach the launcher or bwrap (root or setup code: think
            # LD_PRELOAD, LOCPATH): they run with _LAUNCHER_ENV and bwrap sets the program's env.
            rest = [*prefix[1:], "--clearenv"]
            for key, value in (env | wiring.env() if wiring is not None else env).items():
                rest += ["--setenv", key, value]
            run_args = self._run_args(request, libset, fds, wiring)
            if pool is None and (unsized := unsized_tmpfs([*prefix, *run_args])):
                # rlimits do not count tmpfs pages: an unsized writable one would be unbounded memory.
                raise SandboxStartError(f"refusing to run with unsized writable tmpfs {unsized}")
            # bwrap reads its arguments from a memfd: its argv is the sandbox's /proc/1/cmdline, and
            # must not show the program host paths (stage dir, server pid) or the run's set-up.
            # (The program's own argv, paths inside the sandbox only, stays on the command line:
            # bwrap takes options, not the command, from the file.)
            assert run_args[-1] == "--"
            args_fd = _args_memfd([*rest, *run_args[:-1]])
            fds.append(args_fd)
            program = wiring.argv(argv, request.pipe_fds) if wiring is not None else argv
            # The browser's pipe ends pass through unchanged (the caller owns and closes them).
            passed = sorted({*fds, *request.pipe_fds})
            return [*full, prefix[0], "--args", str(args_fd), "--", *program], passed

        def on_spawn(pid: int) -> None:
            nonlocal watchdog
            spawned.append(pid)
            if cgroup is not None and cgroup.tracks_cpu:
                watchdog = asyncio.ensure_future(_cpu_watchdog(cgroup, limits.cpu_seconds, spawned, kill))

        def finish(read_usage: bool) -> CgroupUsage | None:
            # One hop after the run: nothing of this run survives its return, then the counters,
            # then the group (already empty: no second kill pass) and the network namespace go back.
            for fd in fds:
                os.close(fd)
            fds.clear()
            usage = None
            try:
                if cgroup is not None and pool is not None:
                    try:
                        cgroup.kill_all()
                        usage = cgroup.usage() if read_usage else None
                    finally:
                        pool.release(cgroup, emptied=True)
            finally:
                if netns is not None and netns_pool is not None:
                    netns_pool.release(netns)
            return usage

        spawned: list[int] = []
        usage: CgroupUsage | None = None
        outcome = None
        self._inflight += 1
        self._idle.clear()
        try:
            if request.network:
                wiring = await open_wiring(
                    self.egress,
                    self._stage.root / "net",
                    request.labels,
                    owner=self._host_ids(slot) if service is not None else None,
                    ingress_port=service[1] if service is not None else None,
                )
                if service is not None:
                    service[0].socket_path = wiring.app_socket
            try:
                outcome = await run_process(
                    prepare,
                    timeout_s=None if service is not None else limits.wall_seconds,
                    output_limit=limits.output_bytes,
                    stdin=request.stdin,
                    env=_LAUNCHER_ENV,
                    cwd="/",
                    kill=kill,
                    on_output=on_output if queue is not None else None,
                    on_spawn=on_spawn,
                )
            except OSError as exc:
                raise SandboxStartError(f"could not start bwrap: {exc}") from exc
            finally:
                if watchdog is not None:
                    watchdog.cancel()
                done = asyncio.ensure_future(asyncio.to_thread(finish, outcome is not None))
                try:
                    usage = await asyncio.shield(done)
                except asyncio.CancelledError:
                    await done  # cancelled while cleaning up: still finish before leaving
                    raise
        finally:
            if wiring is not None:
                with contextlib.suppress(Exception):
                    await asyncio.shield(wiring.close())
            self._busy_slots.discard(slot)  # bwrap exited: its pid namespace is empty
            self._inflight -= 1
            if not self._inflight:
                self._idle.set()
        assert outcome is not None  # run_process returned (it raises otherwise)
        stderr = outcome.stderr.decode("utf-8", "replace")
        code = outcome.exit_code
        if code == SETUP_EXIT and SETUP_FAILED in stderr:
            raise SandboxStartError(f"sandbox setup failed: {stderr.strip()[:500]}")
        if code == 1 and stderr.startswith("bwrap: ") and "\n" not in stderr.strip():
            raise SandboxStartError(f"bubblewrap failed: {stderr.strip()}")
        if code > 128 and (code - 128) in _SIGNALS:
            code = -(code - 128)
        if outcome.timed_out:
            reason = EndReason.TIMEOUT
        elif usage is not None and usage.oom:
            reason = EndReason.OOM
        elif usage is None and code != 0 and any(m in stderr for m in _FALLBACK_OOM_MARKERS):
            reason = EndReason.OOM  # rlimit fallback: no OOM counter, the runtime says it
        elif code < 0 or (watchdog is not None and watchdog.done() and not watchdog.cancelled()):
            reason = EndReason.KILLED
        else:
            reason = EndReason.EXIT
        if queue is not None:
            for name in ("stdout", "stderr"):
                tail = decoders[name].decode(b"", final=True)
                if tail:
                    queue.put_nowait(OutputChunk(stream=name, data=tail))
        return RunResult(
            exit_code=code,
            stdout=outcome.stdout.decode("utf-8", "replace"),
            stderr=stderr,
            stdout_truncated=outcome.stdout_truncated,
            stderr_truncated=outcome.stderr_truncated,
            reason=reason,
            duration_s=outcome.duration_s,
            peak_memory_mb=usage.peak_memory_mb if usage is not None else None,
            boot_s=0.0,
            backend=self.name,
        )

    def _take_slot(self) -> int:
        for _ in range(UID_SLOTS):
            slot = self._next_slot
            self._next_slot = (slot + 1) % UID_SLOTS
            if slot not in self._busy_slots:
                self._busy_slots.add(slot)
                return slot
        raise SandboxStartError(f"all {UID_SLOTS} sandbox uids are in use by running programs")

    def _host_ids(self, slot: int) -> tuple[int, int]:
        """The host uid/gid of the run in ``slot`` (unique among concurrent runs)."""
        base = self.settings.host_uid_base
        if base is None:
            return self.settings.sandbox_uid, self.settings.sandbox_gid
        return base + slot, base + slot

    async def close(self) -> None:
        """Kill what is left, remove the cgroup pool and temp files; idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._inflight:
            # Runs still going (a stream nobody closed, a concurrent caller): end them, then let
            # each return its cgroup, so every group this sandbox made is gone when we return.
            if self._pool is not None:
                await asyncio.to_thread(self._pool.kill_everything)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), timeout=10.0)
        await asyncio.to_thread(self._finalizer)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
