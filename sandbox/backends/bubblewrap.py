"""The ``local`` backend: bubblewrap + seccomp + cgroup v1 limits, as an unprivileged uid.

How one run is built (cheap parts are made once by ``open``, so a ``print(1)`` costs a few ms more
than a bare interpreter start):

1. ``agentic-launch`` (:mod:`sandbox.host.launcher`, a small static C program, as root) puts itself
   into the run's pooled cgroups (:mod:`sandbox.host.cgroup_pool`), lowers rlimits (CPU seconds, file
   size, no core dumps; data size and process count too when cgroups are not writable), enters a
   pooled empty network namespace (:mod:`sandbox.host.netns`) unless the request wants network, and
   drops to a per-run host uid (``host_uid_base + slot``, shown as ``sandbox_uid`` inside) with no
   supplementary groups and ``no_new_privs``.
2. ``bwrap`` (now unprivileged) creates user, pid, ipc, uts and cgroup namespaces (and a network
   namespace itself when the pool is unusable on this host) and builds the sandbox described in
   :mod:`sandbox.host.bwrap_args` from the stage :mod:`sandbox.host.bwrap_stage` made: read-only
   system dirs, a synthesized ``/etc``, a size-capped scratch tmpfs filled from memfds. Without
   cgroups (rlimits do not count tmpfs pages) a run whose arguments hold an unsized writable tmpfs is
   refused. Python runs as ``/opt/python/bin/python3``, a venv-style launcher of the system
   interpreter without system site-packages: host ``.pth`` hooks stay out. The sandbox sees no host
   path, server pid or set-up argument in ``/proc/1/cmdline`` or ``/proc/self/mountinfo`` (tmpfs mount
   options still show the run's host uid, a number from the per-run range).
3. The seccomp BPF (:mod:`sandbox.host.seccomp`) is passed with ``--seccomp FD`` so it applies to
   the program only. The launchers run with a fixed minimal env; bwrap ``--clearenv`` / ``--setenv``
   gives the program exactly :func:`sandbox.commands.build_env` (the request's env never reaches
   root-side code: think ``LD_PRELOAD``).

``network=True`` gives the run a new network namespace of its own with only ``lo`` up (never the
host's: no host loopback service, port or abstract Unix socket is reachable). Its one way out is the
egress proxy (:mod:`sandbox.egress_proxy`): a per-run Unix socket bound at ``/sandbox/net`` and the
forwarder (:mod:`sandbox.host.forwarder`) serving ``HTTP_PROXY`` on the sandbox's loopback. The
seccomp profile with network allows ``AF_INET`` sockets (they reach that loopback only).
Warm sandboxes (:mod:`sandbox.warm`): ``prestart`` builds the same sandbox ahead of its run, with
the interpreter started and preloaded, waiting for its program (:mod:`sandbox.host.warm_bwrap`);
only with writable cgroups (the run's limits are set on its cgroup at hand-over). With
``warm.fork`` a Python key's warm sandboxes are forks of the key's fork server instead
(:mod:`sandbox.host.warm_fork`); if a fork server cannot start here, the backend says why in the
log and goes back to the path above.

``start_service`` runs the same way without a wall-clock cap, with the forwarder also relaying
``/sandbox/net/app.sock`` (the host's way in, the service's endpoint) to the program's port.

A run ends by itself, by the wall-clock deadline (the bwrap tree and every pid in the cgroup are
SIGKILLed; the pid namespace takes double-forked children with it), or by a limit: memory (cgroup
OOM kill -> ``oom``), pids, CPU seconds (RLIMIT_CPU per process plus a cpuacct watchdog over the
whole tree -> ``killed``), scratch size (tmpfs ``--size`` and RLIMIT_FSIZE). A program killed by a
signal reports ``-signal`` (:func:`sandbox.host.outcome.signal_exit_code`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from pathlib import Path

from sandbox.base import Check, RunRequest, RunResult
from sandbox.commands import TMP_DIR, WORK_DIR, build_argv, build_env, check_exec_size, proxy_env
from sandbox.config import SandboxSettings
from sandbox.egress_proxy import EgressProxy
from sandbox.errors import InvalidRunRequestError, SandboxError, SandboxStartError, SandboxUnavailableError
from sandbox.host import seccomp
from sandbox.host.bwrap_args import PYTHON_VENV
from sandbox.host.bwrap_run import (
    ROOT_NEEDED,
    BwrapHost,
    BwrapRun,
    UidSlots,
    bwrap_present,
    raise_setup_failure,
)
from sandbox.host.cgroup import CgroupUsage
from sandbox.host.egress_wiring import NetWiring, open_wiring
from sandbox.host.fork_server import Zygote, Zygotes
from sandbox.host.host_sandbox import HostSandbox
from sandbox.host.launcher import build_launcher, launch_args
from sandbox.host.outcome import run_result
from sandbox.host.probes import cgroups_check, deno_check, failed, root_check, run_probe
from sandbox.host.process import ProcessOutcome, run_process
from sandbox.host.warm_bwrap import BwrapWarmSandbox
from sandbox.host.warm_fork import ForkWarmSandbox, landlock_abi
from sandbox.resources import check_limits
from sandbox.service import ServiceEndpoint, ServiceHandle
from sandbox.streaming import ChunkDecoder, ChunkSink
from sandbox.warm.base import WarmSandbox
from sandbox.warm.keys import WarmKey, warm_key

__all__ = ["BubblewrapSandbox"]

logger = logging.getLogger(__name__)

_LAUNCHER_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C"}
_PYTHON = f"{PYTHON_VENV}/bin/python3"
_LANDLOCK_SCOPE_ABI = 6  # LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET and LANDLOCK_SCOPE_SIGNAL
_USERNS_FIX = (
    "sysctl -w kernel.unprivileged_userns_clone=1 user.max_user_namespaces=15000, or run outside a "
    "container that forbids user namespaces"
)


class BubblewrapSandbox(HostSandbox[BwrapHost]):
    """Run untrusted code locally with bubblewrap. See :mod:`sandbox.base` for the contract."""

    name = "local"

    def __init__(self, settings: SandboxSettings | None = None, *, egress: EgressProxy | None = None) -> None:
        """Keep the settings; no I/O here (``open`` builds the launcher, stages ``/etc``, fills the pools).

        ``egress``: the proxy of runs with network (default: one with the settings' policy, made by ``open``).
        """
        super().__init__(settings, egress=egress)
        local = self.settings.local
        self._slots = UidSlots(local.host_uid_base, (local.sandbox_uid, local.sandbox_gid))
        self._inflight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        warm = self.settings.warm
        self._zygotes = Zygotes(
            self._start_zygote,
            max_children=warm.fork_max_children,
            max_age_s=warm.fork_max_age_s,
            idle_ttl_s=warm.idle_ttl_s,
        )
        self._fork = warm.fork  # False once a fork server could not start here

    def _open_host(self) -> BwrapHost:
        return BwrapHost.open(self.settings)

    def _preflight(self) -> list[Check]:
        return _preflight(self.settings)

    async def _before_close(self, host: BwrapHost) -> None:
        await self._zygotes.close()  # their children (idle ones left by a caller) end with them
        if self._inflight:
            # Runs still going (a stream nobody closed, a concurrent caller): end them, then let
            # each return its cgroup, so every group this sandbox made is gone when we return.
            if host.pool is not None:
                await asyncio.to_thread(host.pool.kill_everything)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), timeout=10.0)

    def _run_started(self) -> None:
        self._inflight += 1
        self._idle.clear()

    def _run_ended(self) -> None:
        self._inflight -= 1
        if not self._inflight:
            self._idle.set()

    def warm_key(self, request: RunRequest) -> WarmKey | None:
        """The key of the warm sandboxes that can serve ``request`` (None: cold only, or no cgroups here)."""
        if self._closed or self._host is None or self._host.pool is None:
            return None
        try:
            self._libsets.get(request.library_set)
        except SandboxError:  # unknown or not built: the cold path says so
            return None
        return warm_key(request, self.name)

    async def prestart(self, template: RunRequest) -> WarmSandbox:
        """Start a sandbox for ``template``'s key whose interpreter waits for its program.

        Raises:
            SandboxStartError: it could not be started (closed, no cgroups, a start failure).
        """
        host = self._opened()
        if host.pool is None:
            raise SandboxStartError("warm sandboxes need writable cgroups on this host")
        libset = self._libsets.get(template.library_set)
        key = warm_key(template, self.name)
        if self._fork and template.language == "python" and key is not None:
            try:
                zygote = await self._zygotes.get(key, template)
            except SandboxStartError as exc:
                logger.warning("warm fork servers unusable here (%s); warm sandboxes start whole", exc)
                self._fork = False
            else:
                self._run_started()
                return await ForkWarmSandbox.start(
                    zygote,
                    host,
                    template,
                    libset=libset,
                    python=_PYTHON,
                    maximums=self.settings.max_limits,
                    timeout_s=self.settings.warm.start_timeout_s,
                    on_end=self._run_ended,
                )
        slot = self._slots.take()
        self._run_started()

        def ended() -> None:
            self._slots.release(slot)  # the sandbox's processes are gone
            self._run_ended()

        return await BwrapWarmSandbox.start(
            host,
            template,
            libset=libset,
            ids=self._slots.ids(slot),
            maximums=self.settings.max_limits,
            timeout_s=self.settings.warm.start_timeout_s,
            on_end=ended,
        )

    def warm_helper_pids(self) -> set[int]:
        """Host processes of the fork servers (not of a run nor of a warm sandbox; blocking, for checks)."""
        return self._zygotes.pids()

    async def _start_zygote(self, template: RunRequest) -> Zygote:
        """Start a fork server for ``template``'s key, on a host uid of its own."""
        host = self._opened()
        slot = self._slots.take()
        self._run_started()

        def ended() -> None:
            self._slots.release(slot)
            self._run_ended()

        scope = "landlock" if landlock_abi() >= _LANDLOCK_SCOPE_ABI else "netns"
        return await Zygote.start(
            host,
            template,
            libset=self._libsets.get(template.library_set),
            ids=self._slots.ids(slot),
            maximums=self.settings.max_limits,
            scope=scope,
            python=_PYTHON,
            timeout_s=self.settings.warm.start_timeout_s,
            on_end=ended,
        )

    async def _execute(
        self, request: RunRequest, sink: ChunkSink | None, service: tuple[ServiceHandle, int] | None = None
    ) -> RunResult:
        host = self._opened()
        check_limits(request.limits, self.settings.max_limits)
        if request.pipe_fds and not request.network:
            raise InvalidRunRequestError("pipe_fds need network=True (the forwarder places them)")
        libset = self._libsets.get(request.library_set)
        argv = build_argv(request, libset, python=f"{PYTHON_VENV}/bin/python3")
        if host.pool is None and request.language == "typescript":
            # No memory cgroup: cap V8's heap instead of RLIMIT_DATA (V8 reserves far more than it uses).
            heap_mb = max(16, request.limits.memory_mb * 3 // 4)
            argv.insert(2, f"--v8-flags=--max-old-space-size={heap_mb}")
        env = build_env(request, libset, home=WORK_DIR, tmp=TMP_DIR)
        check_exec_size(argv, env)
        decoder = ChunkDecoder(sink) if sink is not None else None
        slot = self._slots.take()
        ids = self._slots.ids(slot)
        wiring: NetWiring | None = None
        outcome: ProcessOutcome | None = None
        usage: CgroupUsage | None = None
        self._run_started()
        try:
            if request.network:
                assert self._egress is not None  # made by open()
                wiring = await open_wiring(
                    self._egress,
                    host.stage.root / "net",
                    request.labels,
                    owner=ids if service is not None else None,
                    ingress_port=service[1] if service is not None else None,
                )
                if service is not None:
                    service[0].endpoint = ServiceEndpoint(unix_socket=wiring.app_socket)
                argv, env = wiring.argv(argv, request.pipe_fds), env | proxy_env()
            run = BwrapRun(host, request, argv, env, ids=ids, libset=libset, wiring=wiring)
            try:
                outcome = await run_process(
                    run.spawn_args,
                    timeout_s=None if service is not None else request.limits.wall_seconds,
                    output_limit=request.limits.output_bytes,
                    stdin=request.stdin,
                    env=_LAUNCHER_ENV,
                    cwd="/",
                    kill=run.kill,
                    on_output=decoder.add if decoder is not None else None,
                    on_spawn=run.on_spawn,
                )
            except OSError as exc:
                raise SandboxStartError(f"could not start bwrap: {exc}") from exc
            finally:
                run.stop_watchdog()
                # Nothing of this run survives its return: memfds, processes, then group and namespace.
                done = asyncio.ensure_future(asyncio.to_thread(run.finish, outcome is not None))
                try:
                    usage = await asyncio.shield(done)
                except asyncio.CancelledError:
                    await done  # cancelled while cleaning up: still finish before leaving
                    raise
        finally:
            if wiring is not None:
                with contextlib.suppress(Exception):
                    await asyncio.shield(wiring.close())
            self._slots.release(slot)  # bwrap exited: its pid namespace is empty
            self._run_ended()
        raise_setup_failure(outcome)
        if decoder is not None:
            decoder.flush()
        return run_result(outcome, usage, backend=self.name, cpu_exceeded=run.cpu_exceeded)


def _preflight(settings: SandboxSettings) -> list[Check]:
    """The local backend's checks (blocking: the probe runs bwrap once)."""
    local = settings.local
    root = root_check(ROOT_NEEDED)
    try:
        launcher = build_launcher(settings.cache_dir, local.launcher_cc)
        launcher_check = Check(name="launcher", ok=True, detail=str(launcher))
    except SandboxUnavailableError as exc:
        launcher, launcher_check = None, failed("launcher", str(exc))
    bwrap = bwrap_present(local.bwrap_path)
    if bwrap.ok:
        # The same shape as a real run: an unprivileged uid creating its own user / pid / net namespaces.
        argv = [
            str(local.bwrap_path),
            "--unshare-user",
            "--unshare-pid",
            "--unshare-net",
            "--die-with-parent",
        ]
        argv += ["--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev", "/bin/true"]
        if root.ok and launcher is not None:
            argv = launch_args(launcher, uid=local.sandbox_uid, gid=local.sandbox_gid) + argv
        problem = run_probe(argv)
        bwrap = (
            dataclasses.replace(bwrap, detail=f"{local.bwrap_path} creates namespaces")
            if problem is None
            else failed("bubblewrap", f"bubblewrap cannot create namespaces ({problem}); fix: {_USERNS_FIX}")
        )
    try:
        seccomp_check = Check(
            name="seccomp",
            ok=True,
            detail=f"libseccomp filter compiles ({len(seccomp.bpf_program(False)) // 8} BPF instructions)",
        )
    except Exception as exc:  # pyseccomp or libseccomp missing or broken
        seccomp_check = Check(
            name="seccomp",
            ok=False,
            detail=str(exc),
            fix="apt-get install libseccomp2 and pip install pyseccomp==0.1.2",
        )
    cgroups = cgroups_check(
        local.cgroup_root, enabled=local.use_cgroups, fallback="limits fall back to rlimits"
    )
    checks = [root, launcher_check, bwrap, seccomp_check, cgroups, deno_check()]
    if settings.warm.enabled and settings.warm.fork:
        checks.append(_fork_check(cgroups.ok))
    return checks


def _fork_check(cgroups: bool) -> Check:
    """Whether forked warm sandboxes can work here (else warm sandboxes start whole, as without them)."""
    try:
        userns = int(Path("/proc/sys/user/max_user_namespaces").read_text())
    except (OSError, ValueError):
        userns = 0
    if not cgroups or userns < 2:
        why = "no writable cgroups" if not cgroups else "user.max_user_namespaces is below 2"
        return Check(
            name="warm fork",
            ok=False,
            detail=f"forked warm sandboxes unusable ({why}); warm sandboxes start whole",
            fix="sysctl -w user.max_user_namespaces=15000 and writable cgroup v1 controllers",
            required=False,  # not fatal: warm sandboxes start whole instead
        )
    abi = landlock_abi()
    scope = (
        f"Landlock ABI {abi}: concurrent runs scoped apart by Landlock"
        if abi >= _LANDLOCK_SCOPE_ABI
        else f"Landlock ABI {abi} (< {_LANDLOCK_SCOPE_ABI}): a network namespace per run instead"
    )
    detail = f"Python warm sandboxes fork from a zygote per key; {scope}"
    return Check(name="warm fork", ok=True, detail=detail, required=False)
