"""Turn a :class:`RunRequest` into what the sandbox plugin runs inside an instance.

Why a module of its own: the request is checked before any instance exists, so a bad request costs
no API call and no money. Paths are the instance's (``workdir`` and the image's interpreters, from
:class:`UnikraftSettings`), not the host's.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import PurePosixPath

from sandbox.base import Limits, RunRequest
from sandbox.config import UnikraftSettings
from sandbox.errors import InvalidRunRequestError, LimitsExceededError, UnknownLibrarySetError

__all__ = ["MAX_ARG_BYTES", "MAX_FILES", "InstanceJob", "check_limits", "plan_job"]

MAX_ARG_BYTES = 1024 * 1024
"""argv + environment in one command start (the plugin takes a 2 MiB body; base64 not involved)."""

MAX_FILES = 2000
"""Files one run may carry (each costs an API request)."""

_BASE_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONUNBUFFERED": "1",
    "PYTHONIOENCODING": "utf-8",
    "MPLBACKEND": "Agg",
    "DENO_NO_UPDATE_CHECK": "1",
    "DENO_NO_PROMPT": "1",
    "NO_COLOR": "1",
}


@dataclass(frozen=True, kw_only=True)
class InstanceJob:
    """What one run does inside its instance: files to write, then one command."""

    library_set: str
    image: str
    files: dict[str, bytes]  # absolute paths inside the instance
    directories: tuple[str, ...]  # to create first (with their parents)
    argv: list[str]
    env: dict[str, str]
    cwd: str
    stdin: bytes
    limits: Limits


def check_limits(limits: Limits, maximums: Limits) -> None:
    """Refuse non-positive limits and limits above the operator's maximums.

    Raises:
        InvalidRunRequestError: a value is not a positive finite number.
        LimitsExceededError: a value is above its maximum (the message names field, value and maximum).
    """
    for field in fields(Limits):
        value, maximum = getattr(limits, field.name), getattr(maximums, field.name)
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise InvalidRunRequestError(f"limit {field.name} must be positive, got {value!r}")
        if not math.isfinite(value) or value > maximum:
            raise LimitsExceededError(
                f"limit {field.name}={value} exceeds the server maximum {field.name}={maximum}"
            )


def _relative(path: str) -> str:
    if not path or "\x00" in path:
        raise InvalidRunRequestError(f"invalid file path {path!r}")
    pure = PurePosixPath(path)
    if pure.is_absolute() or ".." in pure.parts or str(pure) in ("", "."):
        raise InvalidRunRequestError(f"file path {path!r} must be relative and stay inside the scratch dir")
    return str(pure)


def _argv(request: RunRequest, settings: UnikraftSettings, files: Mapping[str, bytes]) -> list[str]:
    if request.command is not None:
        if request.language is not None:
            raise InvalidRunRequestError("give either command or language + entry, not both")
        if not request.command or not request.command[0]:
            raise InvalidRunRequestError("command must not be empty")
        return [*request.command, *request.args]
    if request.language is None or request.entry is None:
        raise InvalidRunRequestError("a run needs either command or language + entry")
    entry = _relative(request.entry)
    if entry not in files:
        raise InvalidRunRequestError(f"entry {request.entry!r} is not among the request's files")
    if entry.startswith("-"):  # never let a file name read as an interpreter option
        entry = f"./{entry}"
    if request.language == "python":
        return [*settings.python_command, entry, *request.args]
    if request.language == "typescript":
        return [*settings.typescript_command, entry, *request.args]
    raise InvalidRunRequestError(f"unknown language {request.language!r} (use 'python' or 'typescript')")


def _env(request: RunRequest, settings: UnikraftSettings, home: str) -> dict[str, str]:
    env = {**_BASE_ENV, "HOME": home, "TMPDIR": "/tmp", "DENO_DIR": "/tmp/.deno"}
    if request.network and settings.egress_proxy_url:
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
            env[name] = settings.egress_proxy_url
    for key, value in request.env.items():
        if not key or "=" in key or "\x00" in key or "\x00" in value:
            raise InvalidRunRequestError(f"invalid environment variable {key!r}")
        env[key] = value
    return env


def plan_job(
    request: RunRequest,
    settings: UnikraftSettings,
    *,
    maximums: Limits,
    extra_env: Mapping[str, str] | None = None,
) -> InstanceJob:
    """Check ``request`` against ``settings`` and the operator's ``maximums``; what to do inside.

    Raises:
        UnknownLibrarySetError: no image is configured for the request's library set.
        InvalidRunRequestError: bad paths, entry, command, language, environment or size.
        LimitsExceededError: limits above the operator's maximums.
    """
    check_limits(request.limits, maximums)
    image = settings.images.get(request.library_set)
    if image is None:
        known = ", ".join(sorted(settings.images)) or "none configured"
        raise UnknownLibrarySetError(
            f"unknown library set {request.library_set!r} on Unikraft Cloud (library sets: {known}; "
            "fix: add its image to AGENTIC_SANDBOX_UNIKRAFT_IMAGES)"
        )
    if len(request.files) > MAX_FILES:
        raise InvalidRunRequestError(
            f"the run carries {len(request.files)} files; at most {MAX_FILES} fit (remove some files)"
        )
    relative: dict[str, bytes] = {}
    for path, content in request.files.items():
        relative[_relative(path)] = content.encode() if isinstance(content, str) else bytes(content)
    total = sum(len(data) for data in relative.values())
    if total > request.limits.disk_mb * 1024 * 1024:
        raise InvalidRunRequestError(
            f"the run's files take {total} bytes, more than its {request.limits.disk_mb} MB scratch dir; "
            "remove files or ask for a larger disk_mb / tier"
        )
    argv = _argv(request, settings, relative)
    env = _env(request, settings, settings.workdir)
    env.update(extra_env or {})
    size = sum(len(s.encode("utf-8", "surrogateescape")) + 1 for s in argv)
    size += sum(len(f"{k}={v}".encode("utf-8", "surrogateescape")) + 1 for k, v in env.items())
    if size > MAX_ARG_BYTES:
        raise InvalidRunRequestError(
            f"argument list is too long: arguments and environment take {size} bytes "
            f"(maximum {MAX_ARG_BYTES} bytes in total); pass big data as a file or on stdin"
        )
    workdir = PurePosixPath(settings.workdir)
    files = {str(workdir / path): data for path, data in relative.items()}
    # One ``mkdir -p`` per deepest directory: its ancestors come with it.
    parents = {str(workdir / PurePosixPath(path).parent) for path in relative} | {str(workdir)}
    leaves = sorted(d for d in parents if not any(o.startswith(d + "/") for o in parents))
    return InstanceJob(
        library_set=request.library_set,
        image=image,
        files=files,
        directories=tuple(leaves),
        argv=argv,
        env=env,
        cwd=settings.workdir,
        stdin=request.stdin,
        limits=request.limits,
    )
