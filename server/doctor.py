"""Host checks behind ``agentic doctor``: what is installed, what works, and how to fix the rest.

The sandbox rows are each backend's own preflight (:mod:`sandbox.registry`), named ``backend: piece``;
a backend's required pieces are required here only for the configured backend. The library sets are
the configured backend's answer. The rest (browser, Postgres binaries, the embedded model) are the
server's own checks. Every check is independent and never raises: a broken piece is a row with a fix.
"""

from __future__ import annotations

import asyncio
import dataclasses
import glob
import logging
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from rich.table import Table

from sandbox.base import Check
from sandbox.registry import create_sandbox, preflight
from server.config import Settings

__all__ = ["render_checks", "run_checks"]

logger = logging.getLogger(__name__)


def _guard(name: str, fn: Callable[[], tuple[bool, str]]) -> Check:
    try:
        ok, detail = fn()
    except Exception as exc:  # a check must never break the doctor
        ok, detail = False, f"check failed: {type(exc).__name__}: {exc}"
    detail, _, fix = detail.partition("; fix: ")
    return Check(name=name, ok=ok, detail=detail, fix=fix, required=False)


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


async def _backends(settings: Settings) -> list[Check]:
    """Every backend's preflight rows; required ones count only for the configured backend."""
    chosen = settings.sandbox.backend
    try:
        by_backend = await preflight(settings.sandbox)
    except Exception as exc:  # a check must never break the doctor
        return [Check(name="sandbox backends", ok=False, detail=f"preflight failed: {exc}")]
    return [
        dataclasses.replace(check, name=f"{name}: {check.name}", required=check.required and name == chosen)
        for name, checks in by_backend.items()
        for check in checks
    ]


async def _library_sets(settings: Settings) -> list[Check]:
    """The configured backend's library sets (``base`` is required: every run needs one)."""
    backend = settings.sandbox.backend
    try:
        sandbox = await asyncio.to_thread(create_sandbox, settings.sandbox)  # importing may do I/O
        sets = await sandbox.library_sets()
    except Exception as exc:  # a check must never break the doctor
        return [Check(name="library sets", ok=False, detail=f"{type(exc).__name__}: {exc}", required=False)]
    rows = []
    for name, problem in sorted(sets.items()):
        detail, _, fix = (problem or f"ready on the {backend} backend").partition("; fix: ")
        rows.append(
            Check(
                name=f"library set '{name}'",
                ok=problem is None,
                detail=detail,
                fix=fix,
                required=name == "base",
            )
        )
    return rows


async def run_checks(settings: Settings) -> list[Check]:
    """Run every check; never raises."""
    backends, libsets = await asyncio.gather(_backends(settings), _library_sets(settings))
    others = await asyncio.to_thread(
        lambda: [
            _guard("browser", lambda: _browser(settings)),
            _guard("postgres binaries", _postgres),
            _guard("embedded model", _model),
        ]
    )
    return [*backends, *libsets, *others]


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
        table.add_row(c.name, status, c.detail if c.ok else c.summary())
    return table
