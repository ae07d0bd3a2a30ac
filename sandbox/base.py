"""The one contract every sandbox backend fulfils.

A backend (``BubblewrapSandbox``, ``GVisorSandbox``, ``UnikraftSandbox``, later ``KataSandbox``) runs
untrusted code described by a :class:`RunRequest` and reports a :class:`RunResult`. Backends are
found by name in :mod:`sandbox.registry`, each in its own module of :mod:`sandbox.backends`; a
:class:`~sandbox.guard.GuardedSandbox` stands in front of every one (limits clamped, memory admitted),
and the warm pool (:class:`~sandbox.warm.pool.WarmPool`, same contract) in front of those that can
start a sandbox ahead of its run.

Contract (checked by ``tests/sandbox/test_conformance.py`` against every backend):

* Lifecycle: the constructor takes the settings and does no I/O. ``await open()`` acquires what the
  backend needs (host pools and binaries, or a remote client and its connections) without blocking
  the event loop, and returns the backend; ``async with`` opens it too. A backend that cannot run
  here raises ``SandboxUnavailableError`` from ``open`` or, a remote one that cannot tell without
  asking its API, from its runs. ``close()`` frees what ``open`` took and is safe to call twice.
  ``run`` may be called concurrently.
* Preflight: ``await preflight()`` answers, without opening anything, whether the backend can run
  here: one :class:`Check` per piece it needs (a binary, a permission, an API it must reach), each
  with a fix hint. ``agentic doctor`` and ``/healthz`` show them.
* Library sets: ``await library_sets()`` names every set the backend knows, with ``None`` when it can
  run it now, else why not and the fix (locally a set is a built directory, remotely an image). A
  run asking for a set it does not know raises ``UnknownLibrarySetError``.
* Isolation: the code cannot read the host filesystem (only read-only system dirs and the chosen
  library set are visible), cannot write outside its scratch dir, cannot see the server's
  environment, and has no network unless ``RunRequest.network`` is ``True``. Even then it keeps
  its own network namespace (only ``lo``): its one way out is the platform's egress proxy
  (``HTTP_PROXY``, see :mod:`sandbox.egress_proxy`), never a host address, port or abstract socket.
* Limits: ``Limits`` hold for every run, and a backend refuses limits above the settings' maximums
  itself (the guard upstream clamps them first). Memory over the cap ends the run with
  ``reason="oom"``; wall time over the cap kills the whole process tree with ``reason="timeout"``;
  output past ``output_bytes`` is dropped and flagged ``*_truncated``.
* No leftovers: after ``run`` returns, no process, mount, cgroup, pod or temp dir of that run remains.
  (A run on a warm sandbox, :mod:`sandbox.warm`, returns as soon as its program ended; what is left
  of its sandbox, already being killed, is reaped and removed in the background, and before the
  backend's ``close`` returns.)
* Services: ``start_service`` runs the request without a wall-clock cap (every other limit holds)
  and returns a :class:`~sandbox.service.ServiceHandle`: the backend hands it the coroutine that runs
  the service until cancelled, and sets its ``endpoint`` (a Unix socket on this host, or a URL for a
  remote backend) once the program's ``port`` is reachable from the server. ``terminate()``
  (idempotent) leaves nothing behind, as a finished run.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Literal, Protocol, Self, runtime_checkable

if TYPE_CHECKING:
    from sandbox.service import ServiceHandle

__all__ = [
    "Check",
    "EndReason",
    "Language",
    "Limits",
    "OutputChunk",
    "RunRequest",
    "RunResult",
    "Sandbox",
]

Language = Literal["python", "typescript"]


class EndReason(enum.StrEnum):
    """Why a run ended."""

    EXIT = "exit"  # the program exited by itself (any exit code)
    TIMEOUT = "timeout"  # wall-clock limit reached, process tree killed
    OOM = "oom"  # memory limit reached
    KILLED = "killed"  # killed by a signal for another reason (pids, cpu rlimit, cancel)


@dataclass(frozen=True, kw_only=True)
class Limits:
    """Resource caps for one run. Units are explicit in the names."""

    cpu_seconds: float = 10.0  # CPU time (all cores) before the run is killed
    cpus: float = 1.0  # share of cores (cgroup cpu quota)
    memory_mb: int = 256
    wall_seconds: float = 10.0
    pids: int = 64
    disk_mb: int = 64  # scratch dir size (tmpfs size or file-size rlimit)
    output_bytes: int = 1_000_000  # per stream (stdout, stderr)


@dataclass(frozen=True, kw_only=True)
class RunRequest:
    """What to run.

    Either ``command`` (argv, run inside the scratch dir) or ``language`` + ``entry`` (a path in
    ``files``) must be given. ``files`` maps relative paths to contents, written into the scratch dir.
    """

    files: Mapping[str, str | bytes] = field(default_factory=dict)
    language: Language | None = None
    entry: str | None = None
    command: tuple[str, ...] | None = None
    args: tuple[str, ...] = ()
    stdin: bytes = b""
    env: Mapping[str, str] = field(default_factory=dict)
    limits: Limits = field(default_factory=Limits)
    library_set: str = "base"
    network: bool = False
    # Set by the platform, never by clients (the guard overwrites "tenant"): who the run is for
    # ("tenant", "run", "app"), logged with each egress decision.
    labels: Mapping[str, str] = field(default_factory=dict)
    # Set by the platform's browser only (never from a client): host pipe ends the program gets as
    # fds 3, 4, ... (Chromium's ``--remote-debugging-pipe``). The caller keeps and closes its copies.
    # Local backend only; with network only (the forwarder places them).
    pipe_fds: tuple[int, ...] = ()


@dataclass(frozen=True, kw_only=True)
class RunResult:
    """What happened. ``exit_code`` is negative (-signal) when killed by a signal."""

    exit_code: int
    stdout: str
    stderr: str
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    reason: EndReason = EndReason.EXIT
    duration_s: float = 0.0
    peak_memory_mb: float | None = None
    boot_s: float = 0.0  # backend start-up cost included in duration_s
    backend: str = ""

    @property
    def ok(self) -> bool:
        """True when the program exited by itself with code 0."""
        return self.reason is EndReason.EXIT and self.exit_code == 0


@dataclass(frozen=True, kw_only=True)
class OutputChunk:
    """One piece of streamed output; the last item of a stream carries ``result``."""

    stream: Literal["stdout", "stderr", "result"]
    data: str = ""
    result: RunResult | None = None


@dataclass(frozen=True, kw_only=True)
class Check:
    """One preflight finding: a piece a backend needs, whether it is there, and how to fix it."""

    name: str
    ok: bool
    detail: str  # what was found, or what is wrong
    fix: str = ""  # what to do about it (when not ok)
    required: bool = True  # False: the backend runs without it, degraded (e.g. rlimits, no cgroups)

    def summary(self) -> str:
        """``detail`` and, when there is one, the fix: one line for logs and ``/healthz``."""
        return f"{self.detail}; fix: {self.fix}" if self.fix else self.detail


@runtime_checkable
class Sandbox(Protocol):
    """A place where untrusted code runs. See the module docstring for the contract."""

    name: str

    async def open(self) -> Self:
        """Acquire what runs need, off the event loop; idempotent. Raises ``SandboxUnavailableError``."""
        ...

    async def preflight(self) -> list[Check]:
        """What this host (or cluster) offers the backend, one :class:`Check` per piece; opens nothing."""
        ...

    async def library_sets(self) -> Mapping[str, str | None]:
        """Every library set the backend knows -> None when it can run it now, else why not + fix."""
        ...

    async def run(self, request: RunRequest) -> RunResult:
        """Run to completion and return the result (never raises for program failures)."""
        ...

    def stream(self, request: RunRequest) -> AsyncIterator[OutputChunk]:
        """Yield stdout / stderr chunks as produced, then one ``result`` chunk."""
        ...

    async def start_service(self, request: RunRequest, *, port: int) -> ServiceHandle:
        """Start a long-running program listening on ``port`` inside; see the module docstring."""
        ...

    async def close(self) -> None:
        """Free what ``open`` acquired; idempotent."""
        ...

    async def __aenter__(self) -> Self:
        """``open()``."""
        ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...
