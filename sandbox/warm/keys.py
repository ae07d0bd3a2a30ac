"""Which pre-started sandbox can serve a request: the key, and the checks a run must pass to go warm.

A warm sandbox was started before its run was known, so only what can still be set at hand-over
may differ between the runs one key serves:

* fixed at start: backend, language, library set (and its preload), the scratch dir's size
  (``disk_mb``), no network; for TypeScript also the entry and arguments (Deno reads them from its
  command line) and whatever limits the backend cannot change later (``fixed_limits``);
* set at hand-over: files, stdin, the other limits (memory, pids, cpus, CPU seconds, wall time,
  output) and, for Python, the environment.

A run whose environment names a variable the interpreter (or a preloaded package) would have read
while starting goes cold: ``PYTHON*``, locale and time zone, the loader's and the allocator's, and,
for a set whose preload imports third-party packages (they read their own variables), any at all.
TypeScript runs with their own environment go cold too (Deno has no ``--allow-env`` to apply it).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath

from sandbox.base import Language, RunRequest
from sandbox.libsets import LIBRARY_SETS

__all__ = ["STARTUP_ENV", "WarmKey", "env_fits", "shadows_preload", "template_of", "warm_key"]

STARTUP_ENV = ("PYTHON", "LD_", "LC_", "LANG", "LANGUAGE", "TZ", "MALLOC", "GLIBC_", "HOME", "TMPDIR")
"""Variable names (or prefixes) a starting interpreter reads: a run setting one goes cold."""


@dataclass(frozen=True)
class WarmKey:
    """What pre-started sandboxes that can serve the same runs have in common."""

    backend: str
    language: Language
    library_set: str
    disk_mb: int
    entry: str = ""  # TypeScript only (Deno's main module is named when it starts)
    args: tuple[str, ...] = ()  # TypeScript only
    fixed: tuple[tuple[str, float | int], ...] = ()  # limits the backend sets only at start

    @property
    def label(self) -> str:
        """A short name for logs and metrics (``python/base/64MB``)."""
        parts = [self.language, self.library_set, f"{self.disk_mb}MB"]
        parts += [f"{name}={value:g}" for name, value in self.fixed]
        if self.entry:
            parts.append(self.entry)
        return "/".join(parts)


def env_fits(env: Mapping[str, str], language: Language, library_set: str) -> bool:
    """Whether a run's own environment can be applied at hand-over (see the module docstring)."""
    if not env:
        return True
    spec = LIBRARY_SETS.get(library_set)
    if language != "python" or spec is None or spec.requirements:
        return False
    return not any(key.startswith(STARTUP_ENV) for key in env)


def warm_key(request: RunRequest, backend: str, *, fixed_limits: Iterable[str] = ()) -> WarmKey | None:
    """The key of ``request`` on ``backend``, or None when only a cold start can serve it."""
    if (
        request.command is not None
        or request.language not in ("python", "typescript")
        or request.entry is None
        or request.network
        or request.pipe_fds
        or request.library_set not in LIBRARY_SETS
        or not env_fits(request.env, request.language, request.library_set)
    ):
        return None
    typescript = request.language == "typescript"
    fixed = tuple((name, getattr(request.limits, name)) for name in sorted(fixed_limits))
    return WarmKey(
        backend=backend,
        language=request.language,
        library_set=request.library_set,
        disk_mb=request.limits.disk_mb,
        entry=request.entry if typescript else "",
        args=request.args if typescript else (),
        fixed=fixed,
    )


def template_of(request: RunRequest) -> RunRequest:
    """What a sandbox for ``request``'s key starts from: the request without its run's own parts."""
    entry = request.entry or ""
    return RunRequest(
        files={entry: ""} if entry else {},
        language=request.language,
        entry=request.entry,
        args=request.args if request.language == "typescript" else (),
        limits=request.limits,
        library_set=request.library_set,
    )


def shadows_preload(request: RunRequest, preloaded: Iterable[str]) -> bool:
    """True when one of the run's files would be imported instead of a module the preload imported.

    A cold ``python3 main.py`` finds ``random.py`` beside ``main.py`` before the standard library; a
    warm interpreter that already imported ``random`` would not look. Such runs go cold.
    """
    names = set(preloaded)
    if not names or request.entry is None:
        return False
    home = PurePosixPath(request.entry).parent
    for raw in request.files:
        path = PurePosixPath(raw)
        try:
            rel = path.relative_to(home)
        except ValueError:
            continue
        top = rel.parts[0] if rel.parts else ""
        module = top.split(".", 1)[0] if len(rel.parts) == 1 else top
        if module in names:
            return True
    return False
