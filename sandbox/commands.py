"""Turn a :class:`RunRequest` into the argv and environment used *inside* a sandbox.

Shared by every backend so ``python`` / ``typescript`` mean the same thing everywhere:
Debian's ``/usr/bin/python3`` with the library set on ``PYTHONPATH``, and the Deno binary (from the
``deno`` PyPI package) bound read-only at :data:`DENO_PATH`, run offline with access to the scratch
dir only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import PurePosixPath
from typing import Protocol

from sandbox.base import RunRequest
from sandbox.errors import InvalidRunRequestError

__all__ = [
    "DENO_PATH",
    "DENO_RUN_FLAGS",
    "EGRESS_PORT",
    "ETC_PIECES",
    "ETC_SYNTH",
    "SCRATCH_DIR",
    "TMP_DIR",
    "WORK_DIR",
    "PYTHON_PATH",
    "SANDBOX_PATH",
    "LibrarySetLike",
    "MAX_ARG_BYTES",
    "MAX_EXEC_BYTES",
    "build_argv",
    "build_env",
    "check_exec_size",
    "check_relative_path",
    "proxy_env",
]

PYTHON_PATH = "/usr/bin/python3"
DENO_PATH = "/opt/deno/deno"
# TypeScript runs offline, without prompts, config or lock file, reading and writing the cwd only.
DENO_RUN_FLAGS = (
    "run",
    "--no-remote",
    "--no-prompt",
    "--no-config",
    "--no-lock",
    "--allow-read=.",
    "--allow-write=.",
)
SANDBOX_PATH = "/usr/local/bin:/usr/bin:/bin"

# execve(2) refuses one string (argument or NAME=value) over 32 pages with E2BIG, and the whole
# argv + environment over a quarter of the stack rlimit; both are checked before any spawn, with
# room left for the backend's own arguments (bwrap receives the environment as arguments too).
MAX_ARG_BYTES = 128 * 1024 - 1  # one string, without its NUL
MAX_EXEC_BYTES = 1024 * 1024  # all strings, NULs included

# The filesystem layout every backend gives a program: one writable scratch dir, cwd and $HOME in
# ``work``, ``/tmp`` pointing into it.
SCRATCH_DIR = "/sandbox"
WORK_DIR = f"{SCRATCH_DIR}/work"
TMP_DIR = f"{SCRATCH_DIR}/tmp"
# A run with network reaches the egress proxy through ``HTTP_PROXY`` on its own loopback.
EGRESS_PORT = 3128
# Host /etc entries that are safe and useful inside (no passwd, shadow, machine secrets).
ETC_PIECES = (
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "alternatives",
    "localtime",
    "mime.types",
    "protocols",
    "services",
    "python3",
    "python3.11",
    "ssl/certs",
    "ssl/openssl.cnf",
    "ca-certificates.conf",
    "fonts",
)
# /etc files written for the sandbox instead of the host's (format with ``uid`` and ``gid``).
ETC_SYNTH = {
    "passwd": "root:x:0:0:root:/nonexistent:/usr/sbin/nologin\n"
    "sandbox:x:{uid}:{gid}:sandbox:" + WORK_DIR + ":/usr/sbin/nologin\n",
    "group": "root:x:0:\nsandbox:x:{gid}:\n",
    "hosts": "127.0.0.1\tlocalhost sandbox\n::1\tlocalhost\n",
    "nsswitch.conf": "passwd: files\ngroup: files\nhosts: files dns\n",
}


class LibrarySetLike(Protocol):
    """What we need of a library set (structural: a host directory or a remote image both have it)."""

    @property
    def name(self) -> str: ...

    @property
    def mount_point(self) -> str: ...

    @property
    def env(self) -> Mapping[str, str]: ...


def check_relative_path(path: str) -> str:
    """Return ``path`` normalised, refusing absolute paths and ``..`` (files live in scratch only).

    Raises:
        InvalidRunRequestError: the path would escape the scratch dir.
    """
    if not path or "\x00" in path:
        raise InvalidRunRequestError(f"invalid file path {path!r}")
    pure = PurePosixPath(path)
    if pure.is_absolute() or any(part == ".." for part in pure.parts):
        raise InvalidRunRequestError(f"file path {path!r} must be relative and stay inside the scratch dir")
    norm = str(pure)
    if norm in ("", "."):
        raise InvalidRunRequestError(f"invalid file path {path!r}")
    return norm


def build_argv(
    request: RunRequest, libset: LibrarySetLike | None = None, *, python: str = PYTHON_PATH
) -> list[str]:
    """Return the argv run inside the sandbox (cwd = scratch dir).

    ``python`` is the interpreter path inside (a backend may use a venv-style launcher of it).

    Raises:
        InvalidRunRequestError: neither a command nor language + entry, unknown language, bad entry.
    """
    if request.command is not None:
        if request.language is not None:
            raise InvalidRunRequestError("give either command or language + entry, not both")
        if not request.command or not request.command[0]:
            raise InvalidRunRequestError("command must not be empty")
        return [*request.command, *request.args]
    if request.language is None or request.entry is None:
        raise InvalidRunRequestError("a run needs either command or language + entry")
    entry = check_relative_path(request.entry)
    if entry not in {str(PurePosixPath(p)) for p in request.files}:
        raise InvalidRunRequestError(f"entry {request.entry!r} is not among the request's files")
    if entry.startswith("-"):  # never let a file name read as an interpreter option
        entry = f"./{entry}"
    if request.language == "python":
        # -s: no user site; -B: no .pyc in scratch. Not -I/-E: PYTHONPATH carries the library set.
        return [python, "-s", "-B", entry, *request.args]
    if request.language == "typescript":
        return [DENO_PATH, *DENO_RUN_FLAGS, entry, *request.args]
    raise InvalidRunRequestError(f"unknown language {request.language!r} (use 'python' or 'typescript')")


def build_env(
    request: RunRequest,
    libset: LibrarySetLike | None,
    *,
    home: str,
    tmp: str = "/tmp",
) -> dict[str, str]:
    """Return the complete environment of the sandboxed program (nothing of the server's leaks).

    Order of precedence: our minimal base < library set < request (the request cannot unset ``PATH``
    usefully; it is the program's own sandbox).
    """
    env = {
        "PATH": SANDBOX_PATH,
        "HOME": home,
        "TMPDIR": tmp,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        "PYTHONIOENCODING": "utf-8",
        "MPLBACKEND": "Agg",
        "DENO_DIR": f"{tmp}/.deno",
        "DENO_NO_UPDATE_CHECK": "1",
        "DENO_NO_PROMPT": "1",
        "NO_COLOR": "1",
    }
    if libset is not None:
        env.update(libset.env)
    for key, value in request.env.items():
        if not key or "=" in key or "\x00" in key or "\x00" in value:
            raise InvalidRunRequestError(f"invalid environment variable {key!r}")
        env[key] = value
    return env


def proxy_env() -> dict[str, str]:
    """Proxy variables every common HTTP client reads (curl, requests, urllib, httpx, Deno)."""
    url = f"http://127.0.0.1:{EGRESS_PORT}"
    names = ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy")
    return {name: url for name in names} | {"NO_PROXY": "", "no_proxy": ""}


def check_exec_size(argv: Sequence[str], env: Mapping[str, str]) -> None:
    """Refuse an argv + environment the kernel would refuse (``E2BIG``), before anything is spawned.

    Raises:
        InvalidRunRequestError: the argument list is too long (the message names the maximum).
    """
    strings = [*argv, *(f"{key}={value}" for key, value in env.items())]
    total = 0
    for text in strings:
        size = len(text.encode("utf-8", "surrogateescape"))
        if size > MAX_ARG_BYTES:
            raise InvalidRunRequestError(
                f"argument list is too long: one argument or environment entry is {size} bytes "
                f"(maximum {MAX_ARG_BYTES} bytes each, {MAX_EXEC_BYTES} bytes in total); pass big data "
                "as a file or on stdin"
            )
        total += size + 1
    if total > MAX_EXEC_BYTES:
        raise InvalidRunRequestError(
            f"argument list is too long: arguments and environment take {total} bytes "
            f"(maximum {MAX_EXEC_BYTES} bytes in total); pass big data as a file or on stdin"
        )
