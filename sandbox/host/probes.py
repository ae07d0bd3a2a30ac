"""Preflight probes of this host, shared by its backends: root, cgroups, a binary that must run, Deno.

Each probe returns a :class:`~sandbox.base.Check` and never raises: a broken piece is a finding with
its fix. They block (files, short subprocesses): backends call them from a worker thread.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from sandbox.base import Check
from sandbox.errors import SandboxUnavailableError
from sandbox.host.cgroup import CONTROLLERS, own_cgroup_path
from sandbox.host.libset_dirs import deno_binary

__all__ = ["cgroups_check", "deno_check", "executable", "failed", "root_check", "run_probe"]

_PROBE_TIMEOUT_S = 10.0


def executable(path: Path | str) -> bool:
    """True when ``path`` is a file we may execute."""
    return os.access(path, os.X_OK) and Path(path).is_file()


def run_probe(argv: list[str]) -> str | None:
    """Run ``argv``; None when it exits 0, else a one-line reason."""
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


def root_check(why: str) -> Check:
    """Whether this process runs as root (``why``: what the backend needs root for)."""
    if os.geteuid() == 0:
        return Check(name="root", ok=True, detail="running as root")
    return Check(name="root", ok=False, detail=f"not running as root ({why})", fix="start the server as root")


def cgroups_check(root: Path, *, enabled: bool, fallback: str) -> Check:
    """Whether runs get cgroup v1 limits (optional: ``fallback`` says what the backend does instead)."""
    name = "cgroups v1"
    if not enabled:
        return Check(
            name=name,
            ok=False,
            detail=f"cgroups off in settings ({fallback})",
            fix="set use_cgroups back to true in the backend's settings section",
            required=False,
        )
    missing = [c for c in CONTROLLERS if not os.access(root / c / own_cgroup_path(c).lstrip("/"), os.W_OK)]
    if not missing:
        return Check(
            name=name, ok=True, detail=f"{', '.join(CONTROLLERS)} writable under {root}", required=False
        )
    return Check(
        name=name,
        ok=False,
        detail=f"not writable under {root}: {', '.join(missing)} ({fallback})",
        fix="run as root with cgroup v1 mounted read-write",
        required=False,
    )


def deno_check() -> Check:
    """Whether the Deno binary for TypeScript runs is there (optional: Python runs need none)."""
    try:
        return Check(name="deno", ok=True, detail=f"{deno_binary()} (TypeScript runs)", required=False)
    except SandboxUnavailableError as exc:
        return failed("deno", str(exc), required=False)


def failed(name: str, message: str, *, required: bool = True) -> Check:
    """A failed check from an error message of the form ``what is wrong; fix: what to do``."""
    detail, _, fix = message.partition("; fix: ")
    return Check(name=name, ok=False, detail=detail, fix=fix, required=required)
