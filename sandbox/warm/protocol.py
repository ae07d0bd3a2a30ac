"""What the host and a warm sandbox's interpreter say to each other, over the sandbox's own stdio.

Why stdio: it is the one channel every backend already gives a program (bubblewrap passes our
pipes through, gVisor's Sentry forwards them), so local and gVisor sandboxes are warmed alike.

1. Ready. Once started and preloaded, the interpreter writes one line to stdout:
   :data:`READY` followed by the top-level modules its preload added (space-separated). Nothing is
   written to stdout before it, and nothing after it until the program runs.
2. The run. The host writes ``<header length>\\n<header><file bytes>`` to stdin, then the run's
   own stdin, then closes it. The header is NUL-separated: the version, the program's argv (entry
   first), its environment (``KEY=value``; the field count is ``-1`` when the sandbox keeps the
   environment it started with), the CPU seconds and process count it may use from now (empty:
   not set here), then each file as ``path`` and ``size``; the files' bytes follow in that order.
   The interpreter reads exactly that much (never more: the rest of stdin is the program's),
   writes the files into its scratch dir, applies the limits and environment, and becomes the
   program.

The readers live inside the sandbox and import nothing of ours: :mod:`sandbox.warm.python_stub`
and ``sandbox/warm/deno_preload.js``. A reader that cannot set the run up writes
:data:`SETUP_FAILED` to stderr and exits with :data:`SETUP_EXIT` (the launcher's convention).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import PurePosixPath

from sandbox.commands import check_relative_path

__all__ = ["READY", "SETUP_EXIT", "SETUP_FAILED", "VERSION", "encode_run", "parse_ready"]

READY = b"\0agentic-warm-ready"
VERSION = "1"
SETUP_FAILED = "agentic-sandbox: setup failed"
SETUP_EXIT = 125


def _encode(text: str) -> bytes:
    data = text.encode("utf-8", "surrogateescape")
    if b"\0" in data:
        raise ValueError(f"a NUL byte in {text[:40]!r}")  # refused earlier (build_env, paths)
    return data


def encode_run(
    *,
    argv: Sequence[str],
    env: Mapping[str, str] | None,
    files: Mapping[str, str | bytes],
    cpu_seconds: float | None = None,
    nproc: int | None = None,
) -> list[bytes]:
    """The bytes the host writes before the run's stdin (pieces, so big files are not copied).

    Args:
        argv: The program's argv as a cold run would get it (entry first, then the run's args).
        env: The program's complete environment, or None to keep the one the sandbox started with.
        files: The run's files (relative paths, checked again here).
        cpu_seconds: CPU seconds the program may use from hand-over (``RLIMIT_CPU``), or None.
        nproc: ``RLIMIT_NPROC`` to set at hand-over, or None.
    """
    fields = [VERSION, str(len(argv)), *argv]
    if env is None:
        fields.append("-1")
    else:
        fields += [str(len(env)), *(f"{key}={value}" for key, value in env.items())]
    fields += ["" if cpu_seconds is None else repr(float(cpu_seconds)), "" if nproc is None else str(nproc)]
    contents: list[bytes] = []
    fields.append(str(len(files)))
    for raw, content in files.items():
        data = content.encode() if isinstance(content, str) else bytes(content)
        fields += [str(PurePosixPath(check_relative_path(raw))), str(len(data))]
        contents.append(data)
    header = b"\0".join(_encode(field) for field in fields)
    return [b"%d\n" % len(header), header, *contents]


def parse_ready(line: bytes) -> tuple[str, ...] | None:
    """The preloaded module names of a ready line, or None when ``line`` is not one."""
    if not line.startswith(READY):
        return None
    return tuple(line[len(READY) :].decode("ascii", "replace").split())
