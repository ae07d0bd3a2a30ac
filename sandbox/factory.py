"""Create a sandbox backend by name, and tell which backends this host can run.

Backends are imported lazily so a host without runsc (or a module with heavy imports) costs nothing
until that backend is asked for. :func:`host_checks` probes the host pieces one by one (each with a
fix hint); :func:`available_backends` folds them into one verdict per backend for ``/health`` and
start-up logs.
"""

from __future__ import annotations

import importlib
import logging
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from sandbox.base import Sandbox
from sandbox.config import SandboxSettings
from sandbox.errors import SandboxError, SandboxUnavailableError
from sandbox.launcher import build_launcher, launch_args

__all__ = ["BACKENDS", "available_backends", "create_sandbox", "host_checks"]

logger = logging.getLogger(__name__)

# name -> (module, class); each class takes the settings as its only argument.
BACKENDS: dict[str, tuple[str, str]] = {
    "local": ("sandbox.bubblewrap", "BubblewrapSandbox"),
    "gvisor": ("sandbox.gvisor", "GVisorSandbox"),
}
# Which host checks each backend needs (cgroups are optional for local: rlimits are the fallback).
_NEEDS: dict[str, tuple[str, ...]] = {
    "local": ("root", "launcher", "bwrap", "bwrap_works"),
    "gvisor": ("root", "runsc", "runsc_works"),
}
_PROBE_TIMEOUT_S = 10.0


def create_sandbox(settings: SandboxSettings, backend: str | None = None) -> Sandbox:
    """Return a new backend instance (``backend`` or ``settings.backend``); the caller closes it.

    Raises:
        SandboxError: the name is not a known backend (the message lists them).
        SandboxUnavailableError: the backend cannot run on this host (raised by its constructor).
    """
    name = backend or settings.backend
    try:
        module_name, class_name = BACKENDS[name]
    except KeyError:
        raise SandboxError(
            f"unknown sandbox backend {name!r}; known backends: {', '.join(sorted(BACKENDS))}"
        ) from None
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise SandboxUnavailableError(f"sandbox backend {name!r} is not installed ({exc})") from exc
    factory: Callable[[SandboxSettings], Sandbox] = getattr(module, class_name)
    sandbox = factory(settings)
    logger.info("created sandbox backend %s", name)
    return sandbox


def _run_probe(argv: list[str]) -> str | None:
    """Run a probe; return None when it exits 0, else a one-line reason."""
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=_PROBE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return f"`{argv[0]}` did not answer within {_PROBE_TIMEOUT_S:.0f} s"
    except OSError as exc:
        return f"`{argv[0]}` cannot start: {exc}"
    if proc.returncode == 0:
        return None
    detail = (proc.stderr or proc.stdout).strip().splitlines()
    return f"exit {proc.returncode}: {detail[-1] if detail else 'no output'}"


def _executable(path: Path | str) -> bool:
    return os.access(path, os.X_OK) and Path(path).is_file()


def _cgroups_problem(root: Path) -> str | None:
    missing = [c for c in ("memory", "pids", "cpu") if not os.access(root / c, os.W_OK)]
    if not missing:
        return None
    return (
        f"cgroup v1 controllers not writable under {root}: {', '.join(missing)} "
        "(limits fall back to rlimits; fix: run as root with cgroup v1 mounted read-write)"
    )


def _runsc_path(settings: SandboxSettings) -> str | None:
    if settings.runsc_path is not None:
        return str(settings.runsc_path) if _executable(settings.runsc_path) else None
    return shutil.which("runsc")


def host_checks(settings: SandboxSettings) -> dict[str, str | None]:
    """Probe each host piece a backend may need: name -> None if fine, else reason + fix hint.

    Keys: ``root``, ``launcher``, ``bwrap``, ``bwrap_works``, ``cgroups``, ``runsc``, ``runsc_works``.
    """
    checks: dict[str, str | None] = {}
    checks["root"] = None if os.geteuid() == 0 else "not running as root; fix: start the server as root"
    launcher: Path | None = None
    try:
        launcher = build_launcher(settings.cache_dir, settings.launcher_cc)
        checks["launcher"] = None
    except SandboxUnavailableError as exc:
        checks["launcher"] = str(exc)
    bwrap = settings.bwrap_path
    checks["bwrap"] = None if _executable(bwrap) else f"{bwrap} not found; fix: apt-get install bubblewrap"
    if checks["bwrap"] is not None:
        checks["bwrap_works"] = "bubblewrap is not installed"
    else:
        # The same shape as a real run: an unprivileged uid creating its own user / pid / net namespaces.
        argv = [
            str(bwrap),
            "--unshare-user",
            "--unshare-pid",
            "--unshare-net",
            "--die-with-parent",
            "--ro-bind",
            "/",
            "/",
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            "/bin/true",
        ]
        if checks["root"] is None and launcher is not None:
            argv = launch_args(launcher, uid=settings.sandbox_uid, gid=settings.sandbox_gid) + argv
        problem = _run_probe(argv)
        checks["bwrap_works"] = (
            None
            if problem is None
            else (
                f"bubblewrap cannot create namespaces ({problem}); fix: sysctl -w "
                "kernel.unprivileged_userns_clone=1 user.max_user_namespaces=15000, or run outside a "
                "container that forbids user namespaces"
            )
        )
    checks["cgroups"] = _cgroups_problem(settings.cgroup_root)
    runsc = _runsc_path(settings)
    if runsc is None:
        checks["runsc"] = "runsc not found; fix: apt-get install runsc (or set AGENTIC_SANDBOX_RUNSC_PATH)"
        checks["runsc_works"] = "runsc is not installed"
    else:
        checks["runsc"] = None
        problem = _run_probe([runsc, "--version"])
        checks["runsc_works"] = None if problem is None else f"runsc does not run ({problem})"
    return checks


def available_backends(settings: SandboxSettings) -> dict[str, str | None]:
    """Return backend name -> None if usable here, else the first reason with its fix hint."""
    checks = host_checks(settings)
    verdict: dict[str, str | None] = {}
    for name in BACKENDS:
        problems = [checks[c] for c in _NEEDS.get(name, ()) if checks.get(c) is not None]
        verdict[name] = problems[0] if problems else None
    if checks["cgroups"] is not None:
        logger.warning("%s", checks["cgroups"])
    return verdict
