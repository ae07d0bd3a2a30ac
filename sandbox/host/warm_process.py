"""A sandbox process started ahead of its program: waiting for it to be ready, handing it the run.

Why a module of its own: both host backends warm a sandbox the same way. The sandbox (launcher +
bubblewrap, or runsc) is spawned with its stdio pipes like a cold run, but nothing is fed or read
until the interpreter inside says it is ready (:data:`~sandbox.warm.protocol.READY` on stdout).
At hand-over the run's request and stdin go down the same stdin pipe and
:func:`~sandbox.host.process.supervise` takes over, its clock and deadline starting then.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from sandbox.errors import SandboxStartError
from sandbox.host.process import OutputCallback, ProcessOutcome, supervise
from sandbox.host.spawn import (
    ArgvFactory,
    KillCallback,
    Spawned,
    read_available,
    spawn_process,
    wait_readable,
)
from sandbox.warm import protocol

__all__ = ["WarmProcess", "WarmSandboxBase", "pss_bytes"]

logger = logging.getLogger(__name__)

_READY_MAX = 64 * 1024  # a ready line is short; more output before it means something is wrong


def pss_bytes(pids: Iterable[int]) -> int:
    """The proportional set size of ``pids`` together (``smaps_rollup``; gone processes count 0).

    Why PSS: pages shared between sandboxes (the interpreter, shared libraries, the page cache)
    count once across them, so the sum over idle sandboxes is what they cost the host.
    """
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError):
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) * 1024
                    break
    return total


class WarmProcess:
    """One pre-started sandbox process: its pipes, and what its interpreter preloaded."""

    def __init__(self, spawned: Spawned, preloaded: tuple[str, ...]) -> None:
        self.spawned = spawned
        self.preloaded = preloaded

    @classmethod
    async def start(
        cls,
        argv: Sequence[str] | ArgvFactory,
        *,
        env: dict[str, str],
        cwd: str | os.PathLike[str],
        kill: KillCallback,
        timeout_s: float,
        output_pipe_size: int | None = None,
    ) -> WarmProcess:
        """Spawn the sandbox and wait until its interpreter is ready (cancellation-safe).

        Raises:
            SandboxStartError: it could not be started, ended, or was not ready within ``timeout_s``.
        """
        try:
            spawned = await spawn_process(
                argv, env=env, cwd=cwd, kill=kill, output_pipe_size=output_pipe_size
            )
        except OSError as exc:
            raise SandboxStartError(f"could not start a warm sandbox: {exc}") from exc
        try:
            preloaded = await _wait_ready(spawned, timeout_s)
        except BaseException:
            await spawned.destroy()
            raise
        return cls(spawned, preloaded)

    @property
    def pid(self) -> int:
        """The pid of the sandbox's outermost process (launcher or runsc)."""
        return self.spawned.pid

    def alive(self) -> bool:
        """False once the sandbox ended (it cannot take a run)."""
        return self.spawned.proc.poll() is None

    def drop_stderr(self) -> None:
        """Discard what the start wrote to stderr (warnings of a preload): not the run's output."""
        left = read_available(self.spawned.stderr, limit=1 << 20)
        if left:
            logger.debug("warm sandbox %d wrote before its run: %r", self.pid, left[-500:])

    async def run(
        self,
        request: Sequence[bytes],
        stdin: bytes,
        *,
        timeout_s: float,
        output_limit: int,
        on_output: OutputCallback | None,
        status_fd: int | None = None,
    ) -> ProcessOutcome:
        """Hand over: write ``request`` then ``stdin``, and supervise the program from now to its end.

        ``status_fd``: see :func:`~sandbox.host.process.supervise` (then :meth:`destroy` what is left).
        """
        self.drop_stderr()
        return await supervise(
            self.spawned,
            timeout_s=timeout_s,
            output_limit=output_limit,
            stdin=[*request, stdin],
            on_output=on_output,
            started=time.monotonic(),
            status_fd=status_fd,
        )

    async def wait_exit(self, timeout_s: float) -> bool:
        """Wait until the outermost process ended and reap it; False if it still runs after ``timeout_s``."""
        proc = self.spawned.proc
        if proc.poll() is not None:
            return True
        try:
            pidfd = os.pidfd_open(proc.pid)
        except OSError:  # gone meanwhile
            return proc.poll() is not None
        try:
            deadline = time.monotonic() + timeout_s
            while proc.poll() is None:
                left = deadline - time.monotonic()
                if left <= 0 or not await wait_readable(pidfd, left):
                    return False
        finally:
            os.close(pidfd)
        return True

    async def destroy(self) -> None:
        """Kill the whole sandbox and reap it (idempotent)."""
        await self.spawned.destroy()


async def _wait_ready(spawned: Spawned, timeout_s: float) -> tuple[str, ...]:
    """Read stdout up to the ready line; the preloaded module names."""
    deadline = time.monotonic() + timeout_s
    seen = b""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not await wait_readable(spawned.stdout, remaining):
            raise SandboxStartError(f"a warm sandbox was not ready within {timeout_s:g} s")
        chunk = read_available(spawned.stdout)
        if chunk is None:  # EOF: it ended before it was ready
            await asyncio.to_thread(spawned.proc.wait)
            stderr = (read_available(spawned.stderr, limit=4096) or b"").decode("utf-8", "replace")
            raise SandboxStartError(
                f"a warm sandbox ended before it was ready (exit {spawned.proc.returncode}): "
                f"{stderr.strip()[-500:]}"
            )
        seen += chunk
        if seen.endswith(b"\n"):
            names = protocol.parse_ready(seen.rstrip(b"\n"))
            if names is None:
                raise SandboxStartError(f"a warm sandbox wrote {seen[:200]!r} before it was ready")
            return names
        if len(seen) > _READY_MAX:
            raise SandboxStartError("a warm sandbox wrote too much before it was ready")


class WarmSandboxBase:
    """What every local warm sandbox answers the pool the same way: memory, preloads, liveness.

    Subclasses set ``_process`` and ``_used`` and say where their processes are (:meth:`pids`).
    """

    _process: WarmProcess
    _used: bool

    def pids(self) -> set[int]:
        """Its processes on the host now (blocking: reads its cgroup)."""
        raise NotImplementedError

    async def measure(self) -> int:
        """PSS of the sandbox's processes now."""
        return await asyncio.to_thread(lambda: pss_bytes(self.pids()))

    @property
    def preloaded(self) -> tuple[str, ...]:
        """Top-level modules the interpreter imported before the run."""
        return self._process.preloaded

    def alive(self) -> bool:
        """False once it ended while idle."""
        return not self._used and self._process.alive()
