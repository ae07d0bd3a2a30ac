"""The programs a warm sandbox starts instead of the run's: where they live, and their command lines.

A host backend copies :data:`STUB_FILES` once into a directory of its own (:func:`stage_stubs`,
which also compiles the Python stub with the sandbox's interpreter: compiling it in every sandbox
cost ~1 ms of CPU) and binds it read-only at :data:`WARM_DIR` in each warm sandbox. The command
line is the cold run's with the stub in the entry's place (Python), or with ``--preload`` before
the entry (Deno).
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from pathlib import Path

from sandbox.base import RunRequest
from sandbox.libsets import library_set_spec

__all__ = ["STUB_FILES", "WARM_DIR", "program_argv", "stage_stubs", "stub_argv"]

WARM_DIR = "/opt/warm"
"""Where the stubs appear inside a warm sandbox."""
_PYTHON_STUB = "python_stub.py"
_DENO_PRELOAD = "deno_preload.js"
_ZYGOTE = "zygote.py"  # a warm key's fork server (sandbox.host.warm_fork)
STUB_FILES = tuple(Path(__file__).with_name(name) for name in (_PYTHON_STUB, _DENO_PRELOAD, _ZYGOTE))
_PYTHON_FLAGS = 3  # [python, -s, -B] before the entry (sandbox.commands.build_argv)
_COMPILE = (
    "import py_compile, sys\n"
    "py_compile.compile(sys.argv[1], cfile=sys.argv[2], dfile=sys.argv[3], doraise=True)"
)

logger = logging.getLogger(__name__)


def stage_stubs(target: Path, python: str) -> str:
    """Copy the stubs into the new directory ``target`` (world-readable); the Python stub to run, inside.

    ``python``: the interpreter the sandboxes run; the stub is compiled with it into ``.pyc`` (the
    ``.py`` is run instead if that fails, logged).
    """
    target.mkdir(mode=0o755)
    target.chmod(0o755)
    for source in STUB_FILES:
        copy = target / source.name
        shutil.copyfile(source, copy)
        copy.chmod(0o644)
    source, compiled = target / _PYTHON_STUB, target / f"{_PYTHON_STUB}c"
    inside = f"{WARM_DIR}/{_PYTHON_STUB}"
    argv = [python, "-I", "-c", _COMPILE, str(source), str(compiled), inside]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        logger.warning("could not compile the warm sandboxes' Python stub with %s: %s", python, exc)
        return inside
    if done.returncode != 0:
        logger.warning("could not compile the warm sandboxes' Python stub: %s", done.stderr.strip()[-300:])
        return inside
    compiled.chmod(0o644)
    return f"{inside}c"


def stub_argv(
    request: RunRequest, cold_argv: list[str], *, python_stub: str, status_fd: int | None = None
) -> list[str]:
    """The command line of a warm sandbox for ``request``'s key, from a cold run's (``build_argv``).

    ``python_stub``: the Python stub inside (from :func:`stage_stubs`). ``status_fd``: a pipe the
    Python stub inherits, on which it reports the program's exit status right before it exits.
    """
    if request.language == "python":
        preload = library_set_spec(request.library_set).preload
        status = "-" if status_fd is None else str(status_fd)
        return [*cold_argv[:_PYTHON_FLAGS], python_stub, status, *preload]
    entry_at = len(cold_argv) - 1 - len(request.args)
    return [*cold_argv[:entry_at], "--preload", f"{WARM_DIR}/{_DENO_PRELOAD}", *cold_argv[entry_at:]]


def program_argv(request: RunRequest, cold_argv: list[str]) -> list[str]:
    """The program's own argv (``sys.argv``) a cold run of ``request`` would have: entry, then args."""
    return cold_argv[_PYTHON_FLAGS:] if request.language == "python" else cold_argv[-1 - len(request.args) :]
