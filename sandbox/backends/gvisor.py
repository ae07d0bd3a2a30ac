"""The ``gvisor`` backend: each run is a fresh gVisor sandbox (``runsc run``, ptrace platform).

Why gVisor: the program's syscalls are served by gVisor's user-space kernel (the Sentry), so a
kernel bug reachable from the program is not a host kernel bug. One run:

1. A size-capped host tmpfs (``disk_mb``) is mounted at the run's scratch dir and filled with the
   request's files (owned by the sandbox uid); it appears at ``/sandbox`` inside.
2. A ``config.json`` (see :mod:`sandbox.host.oci`) names the shared read-only root, the bind mounts,
   the argv / environment from :mod:`sandbox.commands`, rlimits and a seccomp profile (the
   bubblewrap backend's policy, enforced by the Sentry with ``--oci-seccomp``).
3. A one-line ``sh`` prelude moves itself into the run's pooled cgroups (:mod:`sandbox.host.cgroup_pool`:
   memory, pids, cpu, cpuacct) and execs ``runsc --platform=ptrace
   --network=none --ignore-cgroups run --bundle DIR ID``, so runsc, its gofer and the
   Sentry all stay in them (letting runsc make groups in all 11 controllers cost ~90 ms a run).
   Stdio are pipes, read by the shared runner :func:`sandbox.host.process.run_process`. runsc's
   command line is :class:`sandbox.host.runsc.Runsc` (never ``runsc do``: it shows the host's files).

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
  ``EAFNOSUPPORT`` / ``ENOSYS``), and ``clone3`` stays allowed (see :func:`sandbox.host.oci.seccomp_profile`).

Network: always ``--network=none`` (the Sentry's own stack with only ``lo``; never the host's). A
run with network reaches out only through the egress proxy: its per-run dir is bound at
``/sandbox/net`` and runsc gets ``--host-uds=open`` so the forwarder can connect to the proxy's
socket there (``create`` too for a service, whose forwarder makes ``app.sock`` for the host).

Warm sandboxes (:mod:`sandbox.warm`): ``prestart`` starts the same sandbox ahead of its run, the
interpreter up and preloaded, waiting for its program (:mod:`sandbox.host.warm_runsc`); only with
writable cgroups. It saves most of a cold run here: runsc's own start.

``boot_s`` is the cost of a ``/usr/bin/true`` run (measured once per instance, by ``open``): runsc's own
start and tear-down (~0.2 s on an idle 2-core host), included in every ``duration_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import json
import logging
import math
import os
import secrets
from pathlib import Path, PurePosixPath

from sandbox.base import Check, Limits, RunRequest, RunResult
from sandbox.commands import DENO_PATH, TMP_DIR, WORK_DIR, build_argv, build_env, check_exec_size, proxy_env
from sandbox.config import SandboxSettings
from sandbox.egress_proxy import EgressProxy
from sandbox.errors import SandboxError, SandboxStartError
from sandbox.host.cgroup import Cgroup, CgroupUsage, watch_cpu
from sandbox.host.egress_wiring import FORWARDER_PIDS, NET_DIR, NetWiring, open_wiring
from sandbox.host.host_sandbox import HostSandbox
from sandbox.host.libset_dirs import LibrarySet, deno_binary
from sandbox.host.oci import BindMount, RunSpec, build_config, prepare_scratch
from sandbox.host.outcome import run_result
from sandbox.host.probes import cgroups_check, deno_check, root_check
from sandbox.host.process import ProcessOutcome, run_process
from sandbox.host.runsc import (
    ROOT_NEEDED,
    RUNSC_ENV,
    GVisorHost,
    cleanup_run,
    join_cgroups_argv,
    kill_run,
    raise_start_failure,
    runsc_check,
)
from sandbox.host.warm_runsc import GVisorWarmSandbox
from sandbox.resources import check_limits
from sandbox.service import ServiceEndpoint, ServiceHandle
from sandbox.streaming import ChunkDecoder, ChunkSink
from sandbox.warm.keys import WarmKey, warm_key

__all__ = ["MEMORY_HEADROOM_MB", "GVisorSandbox"]

logger = logging.getLogger(__name__)

MEMORY_HEADROOM_MB = 48  # Sentry + gofer memory charged to the run's cgroup on top of the program's cap
_HOST_PIDS_MAX = 4096  # safety net only; RLIMIT_NPROC inside is the real cap
_PARTIAL_LINE_S = 0.05  # how long streamed output without a newline is held back
_ids = itertools.count()


class GVisorSandbox(HostSandbox[GVisorHost]):
    """Run untrusted code in gVisor (runsc). See :mod:`sandbox.base` for the contract."""

    name = "gvisor"

    def __init__(self, settings: SandboxSettings | None = None, *, egress: EgressProxy | None = None) -> None:
        """Keep the settings; no I/O here (``open`` finds runsc, builds the root, fills the pool).

        ``egress``: the proxy of runs with network (default: one with the settings' policy, made by ``open``).
        """
        super().__init__(settings, egress=egress)
        self._deno: Path | None = None
        self._boot_s: float | None = None

    def _open_host(self) -> GVisorHost:
        return GVisorHost.open(self.settings.gvisor)

    def _preflight(self) -> list[Check]:
        return _preflight(self.settings)

    async def _before_close(self, host: GVisorHost) -> None:
        await GVisorWarmSandbox.wait_teardowns()  # finished warm runs' state, mounts and cgroups

    def warm_key(self, request: RunRequest) -> WarmKey | None:
        """The key of the warm sandboxes that can serve ``request`` (None: cold only, or no cgroups here)."""
        if self._closed or self._host is None or self._host.pool is None:
            return None
        try:
            self._libsets.get(request.library_set)
        except SandboxError:  # unknown or not built: the cold path says so
            return None
        # Deno cannot lower RLIMIT_NPROC at hand-over (Python's stub does): it is part of the key.
        return warm_key(
            request, self.name, fixed_limits=("pids",) if request.language == "typescript" else ()
        )

    async def prestart(self, template: RunRequest) -> GVisorWarmSandbox:
        """Start a sandbox for ``template``'s key whose interpreter waits for its program.

        Raises:
            SandboxStartError: it could not be started (closed, no cgroups, a start failure).
        """
        host = self._opened()
        if host.pool is None:
            raise SandboxStartError("warm sandboxes need writable cgroups on this host")
        gvisor = self.settings.gvisor
        return await GVisorWarmSandbox.start(
            host,
            template,
            libset=self._libsets.get(template.library_set),
            mounts_for=lambda request, libset, scratch: self._extra_mounts(request, libset, scratch, None),
            uid=gvisor.sandbox_uid,
            gid=gvisor.sandbox_gid,
            maximums=self.settings.max_limits,
            headroom_mb=MEMORY_HEADROOM_MB,
            host_pids=_HOST_PIDS_MAX,
            timeout_s=self.settings.warm.start_timeout_s,
        )

    async def _after_open(self, host: GVisorHost) -> None:
        """Measure ``boot_s``: one ``/usr/bin/true`` run, runsc's own start and tear-down."""
        if host.pool is not None and "cpuacct" not in host.pool.base_dirs:
            logger.warning("no writable cpuacct cgroup: gvisor cannot enforce cpu_seconds")
        result = await self._execute(RunRequest(command=("/usr/bin/true",), limits=Limits()), None)
        self._boot_s = round(result.duration_s, 4)
        logger.info("gvisor: a /usr/bin/true run costs %.3fs", self._boot_s)

    def _extra_mounts(
        self, request: RunRequest, libset: LibrarySet, scratch: Path, wiring: NetWiring | None
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

    async def _execute(
        self, request: RunRequest, sink: ChunkSink | None, service: tuple[ServiceHandle, int] | None = None
    ) -> RunResult:
        host = self._opened()
        gvisor = self.settings.gvisor
        check_limits(request.limits, self.settings.max_limits)
        if request.pipe_fds:
            # runsc gives the container only its own stdio: host pipes cannot reach the program.
            raise SandboxStartError("the gvisor backend cannot pass host pipes (the browser runs on local)")
        libset = self._libsets.get(request.library_set)
        argv = build_argv(request, libset)
        env = build_env(request, libset, home=WORK_DIR, tmp=TMP_DIR)
        check_exec_size(argv, env)
        limits = request.limits
        cid = f"agentic-{os.getpid()}-{next(_ids)}-{secrets.token_hex(4)}"
        rundir = host.runs / cid
        scratch = rundir / "scratch"
        cgroup: Cgroup | None = None
        watcher: asyncio.Task[None] | None = None
        wiring: NetWiring | None = None
        cpu_exceeded = False
        decoder = ChunkDecoder(sink, hold_partial_s=_PARTIAL_LINE_S) if sink is not None else None

        async def kill(pid: int) -> None:
            await kill_run(host, cid, cgroup)

        async def exceeded() -> None:
            nonlocal cpu_exceeded
            cpu_exceeded = True
            await host.runsc.destroy(cid)

        try:
            rundir.mkdir(mode=0o700)
            try:
                await asyncio.to_thread(
                    prepare_scratch,
                    scratch,
                    request.files,
                    disk_mb=limits.disk_mb,
                    uid=gvisor.sandbox_uid,
                    gid=gvisor.sandbox_gid,
                )
            except OSError as exc:
                logger.warning("could not prepare the scratch dir of %s: %s", cid, exc)
                raise SandboxStartError(f"could not prepare the scratch dir: {exc.strerror}") from exc
            if request.network:
                assert self._egress is not None  # made by open()
                wiring = await open_wiring(
                    self._egress,
                    host.tmp / "net",
                    request.labels,
                    owner=(gvisor.sandbox_uid, gvisor.sandbox_gid) if service is not None else None,
                    ingress_port=service[1] if service is not None else None,
                )
                if service is not None:
                    service[0].endpoint = ServiceEndpoint(unix_socket=wiring.app_socket)
                argv, env = wiring.argv(argv), env | proxy_env()
                limits = dataclasses.replace(limits, pids=limits.pids + FORWARDER_PIDS)
            if host.pool is not None:
                # The memory cgroup holds runsc, the gofer and the Sentry too; the pids cgroup only a
                # safety cap (runsc needs ~256 host tasks; RLIMIT_NPROC inside is the real cap).
                padded = dataclasses.replace(
                    limits, memory_mb=limits.memory_mb + MEMORY_HEADROOM_MB, pids=_HOST_PIDS_MAX
                )
                cgroup = await asyncio.to_thread(host.pool.acquire, padded)
            spec = RunSpec(
                args=argv,
                env=env,
                limits=limits,
                uid=gvisor.sandbox_uid,
                gid=gvisor.sandbox_gid,
                network=request.network,
                extra_mounts=self._extra_mounts(request, libset, scratch, wiring),
                memory_headroom_mb=MEMORY_HEADROOM_MB,
                rlimit_memory=host.pool is None,
            )
            config = build_config(host.rootfs, host.static_mounts, spec)
            (rundir / "config.json").write_text(json.dumps(config))
            if cgroup is not None and cgroup.tracks_cpu:
                watcher = asyncio.ensure_future(watch_cpu(cgroup, limits.cpu_seconds, exceeded))
            host_uds = "none" if wiring is None else "all" if service is not None else "open"
            runsc = host.runsc.argv("run", "--bundle", str(rundir), cid, host_uds=host_uds)
            if cgroup is not None:
                runsc = join_cgroups_argv(cgroup.tasks_files, runsc)
            try:
                outcome: ProcessOutcome = await run_process(
                    runsc,
                    timeout_s=None if service is not None else limits.wall_seconds,
                    output_limit=limits.output_bytes,
                    stdin=request.stdin,
                    env=RUNSC_ENV,
                    cwd=rundir,
                    kill=kill,
                    on_output=decoder.add if decoder is not None else None,
                    output_pipe_size=limits.output_bytes + 1,
                )
            except OSError as exc:
                raise SandboxStartError(f"could not start runsc: {exc}") from exc
            usage: CgroupUsage | None = cgroup.usage() if cgroup is not None else None
        finally:
            if watcher is not None:
                watcher.cancel()
                with contextlib.suppress(BaseException):
                    await watcher
            cleanup = asyncio.ensure_future(cleanup_run(host, cid, rundir, scratch, cgroup, wiring))
            try:
                await asyncio.shield(cleanup)
            except asyncio.CancelledError:
                await cleanup  # cancelled mid-run: still leave nothing behind
                raise
        raise_start_failure(outcome)
        if decoder is not None:
            decoder.flush()
        boot_s = self._boot_s if self._boot_s is not None else math.inf  # the calibration run: all of it
        return run_result(outcome, usage, backend=self.name, cpu_exceeded=cpu_exceeded, boot_s=boot_s)


def _preflight(settings: SandboxSettings) -> list[Check]:
    """The gVisor backend's checks (blocking: runs ``runsc --version``)."""
    gvisor = settings.gvisor
    cgroups = cgroups_check(
        gvisor.cgroup_root,
        enabled=gvisor.use_cgroups,
        fallback="memory falls back to RLIMIT_AS, no CPU-seconds cap",
    )
    return [root_check(ROOT_NEEDED), runsc_check(gvisor), cgroups, deno_check()]
