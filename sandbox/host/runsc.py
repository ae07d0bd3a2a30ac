"""The gVisor backend on the host: runsc's command line, and what the backend holds while open.

:class:`Runsc` is the one place that builds a runsc command: ``--platform`` from settings,
``--oci-seccomp`` (the Sentry enforces ``config.json``'s seccomp profile), ``--network=none``
(never the host's stack; network goes through the egress proxy), ``--host-uds`` (the egress and app
sockets) and ``--ignore-cgroups`` (we put runsc into the run's pooled cgroups ourselves: letting
runsc make groups in all 11 controllers costs ~90 ms a run). Never ``runsc do``: it shows the
sandbox the host's filesystem.

:class:`GVisorHost` is made once by ``GVisorSandbox.open`` (in a worker thread): a private temp dir
for runsc's state, the run bundles, the shared read-only root and the warm sandboxes' stubs, and
the cgroup pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import shlex
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sandbox.base import Check
from sandbox.commands import DENO_PATH, PYTHON_PATH
from sandbox.config import GVisorSettings
from sandbox.errors import SandboxStartError, SandboxUnavailableError
from sandbox.host.cgroup import Cgroup, own_cgroup_path
from sandbox.host.cgroup_pool import CgroupPool, open_pool
from sandbox.host.egress_wiring import NetWiring
from sandbox.host.launcher import SETUP_EXIT
from sandbox.host.oci import BindMount, build_rootfs, release_scratch
from sandbox.host.probes import executable, root_check, run_probe
from sandbox.host.process import ProcessOutcome
from sandbox.libsets import MOUNT_POINT
from sandbox.warm.stubs import WARM_DIR, stage_stubs

__all__ = [
    "ROOT_NEEDED",
    "RUNSC_ENV",
    "GVisorHost",
    "Runsc",
    "cleanup_run",
    "hide_host_paths",
    "join_cgroups_argv",
    "kill_run",
    "raise_start_failure",
    "runsc_check",
]

logger = logging.getLogger(__name__)

ROOT_NEEDED = "runsc creates namespaces and mounts"
RUNSC_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
_SETUP_FAILED = "agentic-gvisor: could not join the cgroups of the run"
_START_ERROR = "running container:"  # runsc's own failures: exit 128 and this line on stderr
_FIX = "apt-get install runsc (or set AGENTIC_SANDBOX_GVISOR_RUNSC_PATH)"
_RUNSC_KILL_S = 2.0  # how long ``runsc kill`` may take before the cgroup SIGKILL takes over
_HOST_PATH = re.compile(r"(?<![\w.])/(?:tmp|root|home|run|var|proc|sys|work|srv|opt|mnt)(?:/[^\s\"':,]*)?")


def _find(settings: GVisorSettings) -> str | None:
    if settings.runsc_path is not None:
        return str(settings.runsc_path) if executable(settings.runsc_path) else None
    return shutil.which("runsc")


def runsc_check(settings: GVisorSettings) -> Check:
    """Whether runsc is there and answers ``--version`` (blocking: runs it once)."""
    runsc = _find(settings)
    if runsc is None:
        where = settings.runsc_path or "runsc on PATH"
        return Check(name="runsc", ok=False, detail=f"{where} not found", fix=_FIX)
    problem = run_probe([runsc, "--version"])
    if problem is not None:
        return Check(name="runsc", ok=False, detail=f"{runsc} does not run ({problem})", fix=_FIX)
    return Check(name="runsc", ok=True, detail=f"{runsc} runs")


class Runsc:
    """runsc with this backend's state dir and platform."""

    def __init__(self, path: str, state: Path, platform: str) -> None:
        self.path = path
        self.state = state
        self.platform = platform

    def argv(self, *args: str, host_uds: str = "none") -> list[str]:
        """A runsc command line (``host_uds``: none, open, create or all)."""
        flags = [f"--platform={self.platform}", "--oci-seccomp", "--network=none", f"--host-uds={host_uds}"]
        return [self.path, "--root", str(self.state), *flags, "--ignore-cgroups", *args]

    async def quiet(self, *args: str, timeout: float = 10.0) -> None:
        """Run a management command, ignoring its output (it fails for gone containers)."""
        proc = await asyncio.create_subprocess_exec(
            *self.argv(*args),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            env=RUNSC_ENV,
        )
        try:
            await asyncio.wait_for(proc.wait(), timeout=timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()

    async def destroy(self, cid: str) -> None:
        """Kill every process of container ``cid`` and delete it (idempotent)."""
        await self.quiet("kill", "--all", cid, "KILL")
        await self.quiet("delete", "--force", cid)

    def has_state(self, cid: str) -> bool:
        """True while runsc keeps anything of container ``cid``."""
        return any(self.state.glob(f"{cid}*"))

    def remove_state(self, cid: str) -> None:
        """Remove what runsc left of ``cid`` (under load ``delete`` can leave its lock file behind)."""
        for leftover in self.state.glob(f"{cid}*"):
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    leftover.unlink()


@dataclass
class GVisorHost:
    """What an open gVisor backend holds on the host; :meth:`close` removes all of it."""

    runsc: Runsc
    tmp: Path  # private: runsc's state, the run bundles, the shared root
    static_mounts: list[BindMount]
    pool: CgroupPool | None
    cgroup_root: Path
    python_stub: str  # the warm sandboxes' Python stub, inside (sandbox.warm.stubs.stage_stubs)

    @property
    def runs(self) -> Path:
        """Where each run's bundle (``config.json``) and scratch mount live."""
        return self.tmp / "runs"

    @property
    def rootfs(self) -> Path:
        """The shared read-only root of every run."""
        return self.tmp / "rootfs"

    @classmethod
    def open(cls, settings: GVisorSettings) -> GVisorHost:
        """Find runsc, build the shared root, fill the cgroup pool (blocking: use a thread).

        Raises:
            SandboxUnavailableError: runsc is missing or we are not root.
        """
        path = _find(settings)
        if path is None:
            raise SandboxUnavailableError(f"runsc not found; fix: {_FIX}")
        root = root_check(ROOT_NEEDED)
        if not root.ok:
            raise SandboxUnavailableError(root.summary())
        tmp = Path(tempfile.mkdtemp(prefix="agentic-gvisor-"))
        try:
            tmp.chmod(0o711)
            (tmp / "state").mkdir(mode=0o700)
            (tmp / "runs").mkdir(mode=0o711)
            static = build_rootfs(
                tmp / "rootfs",
                uid=settings.sandbox_uid,
                gid=settings.sandbox_gid,
                mount_points=(MOUNT_POINT, DENO_PATH, WARM_DIR),
            )
            python_stub = stage_stubs(tmp / "warm", PYTHON_PATH)
            pool = open_pool(
                settings.cgroup_root,
                settings.cgroup_pool_size,
                enabled=settings.use_cgroups,
                fallback="gvisor memory falls back to RLIMIT_AS, no CPU-seconds cap",
            )
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        runsc = Runsc(path, tmp / "state", settings.platform)
        return cls(
            runsc=runsc,
            tmp=tmp,
            static_mounts=static,
            pool=pool,
            cgroup_root=settings.cgroup_root,
            python_stub=python_stub,
        )

    def close(self) -> None:
        """Remove the cgroup pool, runsc's state and the shared root; idempotent (blocking)."""
        if self.pool is not None:
            prefix = self.pool.base_dirs["memory"].name
            self.pool.close()
            # runsc may have made (and own) groups in the other controllers under the same prefix.
            for ctrl_dir in self.cgroup_root.iterdir() if self.cgroup_root.is_dir() else ():
                base = ctrl_dir / own_cgroup_path(ctrl_dir.name).lstrip("/") / prefix
                if base.is_dir():
                    for leaf in sorted(base.glob("*/"), reverse=True):
                        with contextlib.suppress(OSError):
                            leaf.rmdir()
                    with contextlib.suppress(OSError):
                        base.rmdir()
        for run_dir in self.runs.glob("*"):
            release_scratch(run_dir / "scratch")
        shutil.rmtree(self.tmp, ignore_errors=True)


async def kill_run(host: GVisorHost, cid: str, cgroup: Cgroup | None) -> None:
    """Kill every process of run ``cid``: the container through runsc, then runsc through its cgroup."""
    if cgroup is None:
        await host.runsc.destroy(cid)
        return
    # ``runsc kill`` lets the Sentry stop cleanly (then ``runsc delete`` is quick), but under
    # load it can take seconds to answer (a 1 s deadline once ended after 6 s): give it a
    # bounded moment, then SIGKILL runsc, the gofer and the Sentry through the run's cgroup.
    # runsc's state is deleted by cleanup_run, after the run's duration is taken.
    await host.runsc.quiet("kill", "--all", cid, "KILL", timeout=_RUNSC_KILL_S)
    await asyncio.to_thread(cgroup.kill_all)


async def cleanup_run(
    host: GVisorHost,
    cid: str,
    rundir: Path,
    scratch: Path,
    cgroup: Cgroup | None,
    wiring: NetWiring | None,
) -> None:
    """Make sure nothing of run ``cid`` remains: container state, processes, mount, cgroup, files."""
    if wiring is not None:
        with contextlib.suppress(Exception):
            await wiring.close()
    if cgroup is not None:
        await asyncio.to_thread(cgroup.kill_all)
    if host.runsc.has_state(cid):
        await host.runsc.destroy(cid)
        # Under load ``runsc delete`` can leave the container's lock file behind; the processes
        # are gone (cgroup emptied above), so what remains is only files.
        await asyncio.to_thread(host.runsc.remove_state, cid)
    if cgroup is not None and host.pool is not None:
        await asyncio.to_thread(host.pool.release, cgroup, emptied=True)
    if scratch.exists():
        release_scratch(scratch)
    await asyncio.to_thread(shutil.rmtree, rundir, True)


def join_cgroups_argv(tasks_files: Sequence[Path], argv: list[str]) -> list[str]:
    """Wrap ``argv`` in a shell that moves itself into the given cgroups, then execs ``argv``.

    ``echo 0 > tasks`` moves the (single-threaded) shell as the current thread, which skips the
    kernel's threadgroup rwsem that ``echo $$ > cgroup.procs`` waits on (13-19 ms per run, see
    :attr:`sandbox.host.cgroup.Cgroup.tasks_files`); runsc and everything it starts inherit the groups.
    """
    joins = " && ".join(f"echo 0 >{shlex.quote(str(p))}" for p in tasks_files)
    script = f"{{ {joins}; }} || {{ echo '{_SETUP_FAILED}' >&2; exit {SETUP_EXIT}; }}\nexec \"$@\""
    return ["/bin/sh", "-c", script, "sh", *argv]


def raise_start_failure(outcome: ProcessOutcome) -> None:
    """Raise when the cgroup join or runsc itself failed (not the program's fault).

    Raises:
        SandboxStartError: with runsc's error line, host paths hidden (API callers see it).
    """
    stderr = outcome.stderr.decode("utf-8", "replace")
    lines = stderr.strip().splitlines()
    if outcome.exit_code == SETUP_EXIT and _SETUP_FAILED in stderr:
        logger.warning("gvisor setup failed: %s", stderr.strip()[-2000:])
        raise SandboxStartError("gvisor setup failed: could not join the run's cgroups")
    if outcome.exit_code == 128 and not outcome.timed_out and lines and lines[-1].startswith(_START_ERROR):
        logger.warning("runsc failed: %s", stderr.strip()[-2000:])
        raise SandboxStartError(f"runsc failed: {hide_host_paths(lines[-1])}")


def hide_host_paths(message: str) -> str:
    """Replace host paths (bundle, state, scratch, cgroups) in a runsc error with ``<host path>``."""
    return _HOST_PATH.sub("<host path>", message)
