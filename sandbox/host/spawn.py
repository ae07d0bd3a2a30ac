"""Starting a child with non-blocking stdio pipes, and the waits on file descriptors around it.

Why a module of its own: the runner (:mod:`sandbox.host.process`) and warm sandboxes
(:mod:`sandbox.host.warm_process`, which start a sandbox long before its run) start children the
same way, and both wait on pipes and pidfds through the event loop's selector rather than threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import inspect
import logging
import os
import signal
import subprocess
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

__all__ = [
    "CHUNK",
    "GRACE_S",
    "ArgvFactory",
    "ChildProcess",
    "KillCallback",
    "Spawned",
    "fd_ready",
    "kill_pid",
    "make_pipe",
    "maybe_await",
    "read_available",
    "spawn_process",
    "wait_exit",
    "wait_readable",
]

logger = logging.getLogger(__name__)

KillCallback = Callable[[int], Awaitable[None] | None]
# Builds (argv, pass_fds) right before the spawn, in the same worker thread (see ``run_process``).
ArgvFactory = Callable[[], tuple[Sequence[str], Sequence[int]]]

CHUNK = 64 * 1024
GRACE_S = 5.0  # after a kill, how long to wait for pipes to close before giving up on them


class ChildProcess(Protocol):
    """What the runner needs of a started process: a ``subprocess.Popen``, or a fork server's child."""

    @property
    def pid(self) -> int: ...

    @property
    def returncode(self) -> int | None: ...

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...


async def maybe_await(res: Awaitable[None] | None) -> None:
    if inspect.isawaitable(res):
        await res


def kill_pid(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)


async def fd_ready(loop: asyncio.AbstractEventLoop, fd: int, *, write: bool = False) -> None:
    """Wait until ``fd`` is readable (or writable) through the event loop's selector."""
    fut: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not fut.done():
            fut.set_result(None)

    (loop.add_writer if write else loop.add_reader)(fd, wake)
    try:
        await fut
    finally:
        (loop.remove_writer if write else loop.remove_reader)(fd)


async def wait_exit(loop: asyncio.AbstractEventLoop, proc: ChildProcess) -> int:
    """Wait for the child without asyncio's child watcher (a thread per child costs ms under load)."""
    try:
        pidfd = os.pidfd_open(proc.pid)
    except OSError:  # no pidfd (old kernel): a thread it is
        return await asyncio.to_thread(proc.wait)
    try:
        while proc.poll() is None:
            await fd_ready(loop, pidfd)
    finally:
        os.close(pidfd)
    return proc.wait()


def make_pipe(size: int | None = None) -> tuple[int, int]:
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    if size is not None:
        try:  # root may pass fs.pipe-max-size (CAP_SYS_RESOURCE); the kernel rounds up to pages
            fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, size)
        except OSError as exc:
            logger.warning("could not grow an output pipe to %d bytes: %s", size, exc)
    return read_end, write_end


@dataclass(kw_only=True)
class Spawned:
    """A started child and our ends of its stdio pipes (non-blocking).

    :func:`~sandbox.host.process.supervise` consumes it; :meth:`destroy` ends one never supervised.
    """

    proc: ChildProcess
    stdin: int
    stdout: int
    stderr: int
    kill: KillCallback
    _open: bool = field(default=True, repr=False)

    @property
    def pid(self) -> int:
        """The child's pid."""
        return self.proc.pid

    def close_pipes(self) -> None:
        """Close our pipe ends (idempotent); :func:`~sandbox.host.process.supervise` closes them itself."""
        if self._open:
            self._open = False
            for fd in (self.stdin, self.stdout, self.stderr):
                with contextlib.suppress(OSError):
                    os.close(fd)

    async def destroy(self) -> None:
        """Kill the tree (kill callback), reap the child, close the pipes: for a child never supervised."""
        # Reap the child as soon as it is dead, alongside the kill callback: a callback that waits for
        # the tree to be gone (a cgroup emptied) would otherwise wait on our own unreaped zombie.
        reaper = asyncio.ensure_future(wait_exit(asyncio.get_running_loop(), self.proc))
        kill_pid(self.proc.pid)
        with contextlib.suppress(Exception):
            await maybe_await(self.kill(self.proc.pid))
        self.close_pipes()
        try:
            await asyncio.wait_for(reaper, timeout=GRACE_S)
        except TimeoutError:
            logger.warning("pid %d did not end %.0f s after SIGKILL", self.proc.pid, GRACE_S)


async def spawn_process(
    argv: Sequence[str] | ArgvFactory,
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    pass_fds: Sequence[int] = (),
    kill: KillCallback | None = None,
    output_pipe_size: int | None = None,
) -> Spawned:
    """Start ``argv`` with stdio pipes; cancellation-safe (arguments as :func:`.process.run_process`).

    Raises:
        OSError: the program could not be started.
    """
    killer: KillCallback = kill if kill is not None else kill_pid
    loop = asyncio.get_running_loop()
    in_r, in_w = make_pipe()
    out_r, out_w = make_pipe(output_pipe_size)
    err_r, err_w = make_pipe(output_pipe_size)

    # Popen (vfork + exec) directly: asyncio's subprocess layer adds a watcher thread per child.
    # It runs in the executor because Popen blocks on its exec-status pipe, and hosts that forbid
    # blocking calls in the event loop (``langgraph dev``) would refuse it there.
    def popen() -> subprocess.Popen[bytes]:
        args, fds = argv() if callable(argv) else (argv, pass_fds)
        return subprocess.Popen(
            list(args),
            stdin=in_r,
            stdout=out_w,
            stderr=err_w,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            pass_fds=tuple(fds),
            start_new_session=True,
        )

    spawn = loop.run_in_executor(None, popen)
    try:
        proc: subprocess.Popen[bytes] = await asyncio.shield(spawn)
    except BaseException:
        if not spawn.done() or (not spawn.cancelled() and spawn.exception() is None):
            # Cancelled while the child was being started: it must not outlive us.
            with contextlib.suppress(BaseException):
                started = await spawn
                await maybe_await(killer(started.pid))
                await asyncio.to_thread(started.wait)
        for fd in (in_r, in_w, out_r, out_w, err_r, err_w):
            os.close(fd)
        raise
    for fd in (in_r, out_w, err_w):
        os.close(fd)
    for fd in (in_w, out_r, err_r):
        os.set_blocking(fd, False)
    return Spawned(proc=proc, stdin=in_w, stdout=out_r, stderr=err_r, kill=killer)


async def wait_readable(fd: int, timeout_s: float) -> bool:
    """Wait until ``fd`` is readable (data or EOF); False when ``timeout_s`` passed first."""
    try:
        await asyncio.wait_for(fd_ready(asyncio.get_running_loop(), fd), timeout=timeout_s)
    except TimeoutError:
        return False
    return True


def read_available(fd: int, limit: int = CHUNK) -> bytes | None:
    """What can be read from the non-blocking ``fd`` now (up to ``limit``); None at EOF."""
    parts: list[bytes] = []
    while limit > 0:
        try:
            chunk = os.read(fd, min(limit, CHUNK))
        except BlockingIOError:
            break
        if not chunk:
            return b"".join(parts) if parts else None
        parts.append(chunk)
        limit -= len(chunk)
    return b"".join(parts)
