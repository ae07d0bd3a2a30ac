"""Host checks behind ``agentic doctor``: what is installed, what works, and how to fix the rest.

Each check is independent and never raises: a broken piece is a row with a fix hint.
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rich.table import Table

from server.config import Settings

__all__ = ["Check", "render_checks", "run_checks"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class Check:
    """One row of the doctor's table."""

    name: str
    ok: bool
    detail: str  # what was found, or the problem plus how to fix it
    required: bool = False  # needed for the default (local) backend


def _guard(name: str, required: bool, fn: Callable[[], tuple[bool, str]]) -> Check:
    try:
        ok, detail = fn()
    except Exception as exc:  # a check must never break the doctor
        ok, detail = False, f"check failed: {type(exc).__name__}: {exc}"
    return Check(name=name, ok=ok, detail=detail, required=required)


def _host(settings: Settings) -> dict[str, str | None]:
    from sandbox.factory import host_checks

    return host_checks(settings.sandbox)


def _seccomp() -> tuple[bool, str]:
    try:
        from sandbox.seccomp import bpf_program

        size = len(bpf_program(False))
    except Exception as exc:
        return False, f"{exc}; fix: apt-get install libseccomp2 and pip install pyseccomp==0.1.2"
    return True, f"libseccomp filter compiles ({size // 8} BPF instructions)"


def _browser(settings: Settings) -> tuple[bool, str]:
    """The sandboxed browser's parts: Chromium's binary (run for its version only) and Playwright."""
    s = settings.sandbox
    path = s.browser_path
    if not os.access(path, os.X_OK):
        return False, f"{path} not found; fix: apt-get install chromium (the sandboxed browser runs it)"
    try:
        from importlib.metadata import version

        playwright = version("playwright")
    except Exception:
        return False, "playwright missing; fix: pip install playwright (Debian's Chromium is used)"
    out = subprocess.run([str(path), "--version"], capture_output=True, text=True, timeout=20, check=False)
    limits = s.browser_limits
    return out.returncode == 0, (
        f"{out.stdout.strip() or out.stderr.strip()[:200]}, playwright {playwright}; sessions: "
        f"{s.browser_max_sessions} at once, {limits.wall_seconds:.0f} s, {limits.memory_mb} MB, "
        f"{limits.pids} pids (local backend only)"
    )


def _postgres() -> tuple[bool, str]:
    candidates = [shutil.which("initdb"), *sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))]
    for c in candidates:
        if c and os.access(c, os.X_OK):
            return True, str(Path(c).parent)
    return (
        False,
        "initdb / pg_ctl not found; fix: apt-get install postgresql (optional: SQLite is the default)",
    )


def _deno() -> tuple[bool, str]:
    from sandbox.libsets import deno_binary

    try:
        return True, str(deno_binary())
    except Exception as exc:
        return False, str(exc)


def _library_sets(settings: Settings) -> list[Check]:
    from sandbox.libsets import LIBRARY_SETS, get_library_set

    rows = []
    for name in sorted(LIBRARY_SETS):

        def check(name: str = name) -> tuple[bool, str]:
            libset = get_library_set(name, settings.sandbox)
            return True, str(libset.host_path or "stdlib only")

        rows.append(_guard(f"library set '{name}'", name == "base", check))
    return rows


def _model() -> tuple[bool, str]:
    """The embedded model's file; the agents package may not be installed or finished yet."""
    try:
        from agents.runtime.assembly import DEFAULT_MODEL
        from agents.settings import ModelSettings
    except ImportError as exc:
        return False, f"agents package not available ({exc})"
    path = ModelSettings().models_dir / DEFAULT_MODEL.filename
    if path.is_file():
        return True, f"{path} ({path.stat().st_size / 2**20:.0f} MiB)"
    return False, f"{path} missing; fix: make model (agentic model setup), or set OPENAI_BASE_URL"


def run_checks(settings: Settings) -> list[Check]:
    """Run every check; never raises."""
    try:
        host = _host(settings)
    except Exception as exc:
        host = {
            k: f"host checks failed: {exc}"
            for k in ("root", "launcher", "bwrap", "bwrap_works", "cgroups", "runsc", "runsc_works")
        }

    def from_host(*keys: str, ok_text: str) -> Callable[[], tuple[bool, str]]:
        def check() -> tuple[bool, str]:
            problems = [host[k] for k in keys if host.get(k)]
            return (False, str(problems[0])) if problems else (True, ok_text)

        return check

    rows = [
        _guard("root", True, from_host("root", ok_text="running as root")),
        _guard(
            "bubblewrap",
            True,
            from_host(
                "bwrap",
                "bwrap_works",
                "launcher",
                ok_text=f"{settings.sandbox.bwrap_path} creates namespaces",
            ),
        ),
        _guard("cgroups v1 writable", False, from_host("cgroups", ok_text=f"{settings.sandbox.cgroup_root}")),
        _guard("seccomp (libseccomp)", True, _seccomp),
        _guard("runsc (gVisor)", False, from_host("runsc", "runsc_works", ok_text="runsc runs")),
        _guard("browser", False, lambda: _browser(settings)),
        _guard("postgres binaries", False, _postgres),
        _guard("deno (TypeScript)", False, _deno),
        *_library_sets(settings),
        _guard("embedded model", False, _model),
    ]
    return rows


def render_checks(checks: list[Check]) -> Table:
    """A rich table: check, status, detail or fix."""
    table = Table(title="agentic doctor", show_lines=False)
    table.add_column("check")
    table.add_column("status")
    table.add_column("detail / fix", overflow="fold")
    for c in checks:
        if c.ok:
            status = "[green]ok[/]"
        else:
            status = "[red]missing[/]" if c.required else "[yellow]optional, missing[/]"
        table.add_row(c.name, status, c.detail)
    return table
