"""The async child-process runner shared by the backends on this host (bubblewrap, gVisor).

Why a module of its own: every backend needs the same careful plumbing: both pipes drained
concurrently (a program printing 100 MB must neither block nor grow our memory: bytes past the
cap are read and dropped), stdin fed without deadlocks, a wall-clock deadline that kills the
*whole tree* through a backend-supplied callback, and cancellation that never leaves a child behind.
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
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from sandbox.streaming import StreamName

__all__ = ["ArgvFactory", "KillCallback", "OutputCallback", "ProcessOutcome", "run_process"]

logger = logging.getLogger(__name__)

OutputCallback = Callable[[StreamName, bytes], Awaitable[None] | None]
KillCallback = Callable[[int], Awaitable[None] | None]
# Builds (argv, pass_fds) right before the spawn, in the same worker thread (see ``run_process``).
ArgvFactory = Callable[[], tuple[Sequence[str], Sequence[int]]]

_CHUNK = 64 * 1024
_GRACE_S = 5.0  # after a kill, how long to wait for pipes to close before giving up on them


@dataclass(frozen=True, kw_only=True)
class ProcessOutcome:
    """What a child process did. ``exit_code`` is ``-signal`` when killed by a signal."""

    exit_code: int
    stdout: bytes
    stderr: bytes
    stdout_truncated: bool
    stderr_truncated: bool
    duration_s: float
    timed_out: bool
    pid: int


class _Capture:
    """Keeps the first ``limit`` bytes of one stream and counts the rest."""

    def __init__(self, name: StreamName, limit: int, on_output: OutputCallback | None) -> None:
        self.name: StreamName = name
        self.limit = limit
        self.parts: list[bytes] = []
        self.kept = 0
        self.truncated = False
        self.on_output = on_output

    async def feed(self, chunk: bytes) -> None:
        room = self.limit - self.kept
        if room <= 0:
            self.truncated = True
            return
        if len(chunk) > room:
            chunk = chunk[:room]
            self.truncated = True
        self.parts.append(chunk)
        self.kept += len(chunk)
        if self.on_output is not None:
            res = self.on_output(self.name, chunk)
            if inspect.isawaitable(res):
                await res

    def value(self) -> bytes:
        return b"".join(self.parts)


async def _maybe_await(res: Awaitable[None] | None) -> None:
    if inspect.isawaitable(res):
        await res


def _kill_pid(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)


async def _ready(loop: asyncio.AbstractEventLoop, fd: int, *, write: bool = False) -> None:
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


async def _drain(loop: asyncio.AbstractEventLoop, fd: int, capture: _Capture) -> None:
    """Read ``fd`` to EOF (keeps reading past the cap so the writer never blocks), then close it."""
    try:
        while True:
            try:
                chunk = os.read(fd, _CHUNK)
            except BlockingIOError:
                await _ready(loop, fd)
                continue
            if not chunk:
                return
            await capture.feed(chunk)
    finally:
        os.close(fd)


async def _feed(loop: asyncio.AbstractEventLoop, fd: int, data: bytes) -> None:
    """Write ``data`` to the child's stdin and close it; a child that stops reading is fine."""
    view = memoryview(data)
    try:
        while view:
            try:
                view = view[os.write(fd, view) :]
            except BlockingIOError:
                await _ready(loop, fd, write=True)
    except OSError:  # EPIPE: the program exited or closed stdin
        pass
    finally:
        os.close(fd)


async def _wait_exit(loop: asyncio.AbstractEventLoop, proc: subprocess.Popen[bytes]) -> int:
    """Wait for the child without asyncio's child watcher (a thread per child costs ms under load)."""
    try:
        pidfd = os.pidfd_open(proc.pid)
    except OSError:  # no pidfd (old kernel): a thread it is
        return await asyncio.to_thread(proc.wait)
    try:
        while proc.poll() is None:
            await _ready(loop, pidfd)
    finally:
        os.close(pidfd)
    return proc.returncode


def _pipe(size: int | None = None) -> tuple[int, int]:
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    if size is not None:
        try:  # root may pass fs.pipe-max-size (CAP_SYS_RESOURCE); the kernel rounds up to pages
            fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, size)
        except OSError as exc:
            logger.warning("could not grow an output pipe to %d bytes: %s", size, exc)
    return read_end, write_end


async def run_process(
    argv: Sequence[str] | ArgvFactory,
    *,
    timeout_s: float | None,
    output_limit: int,
    stdin: bytes = b"",
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    pass_fds: Sequence[int] = (),
    kill: KillCallback | None = None,
    on_output: OutputCallback | None = None,
    on_spawn: Callable[[int], None] | None = None,
    output_pipe_size: int | None = None,
) -> ProcessOutcome:
    """Run ``argv`` to completion with capped output and a wall-clock deadline.

    Args:
        argv: program and arguments (``argv[0]`` is an absolute path), or a factory returning
            ``(argv, pass_fds)``, called in the spawn thread: backends whose preparation does file
            I/O (cgroup knobs, memfds) pay one thread hop for preparation and spawn together.
            Its exceptions propagate unchanged.
        timeout_s: wall-clock limit (None: none, a service); when reached ``kill(pid)`` is called
            (default: SIGKILL the child).
            The callback must kill the whole process tree (pid namespace, cgroup).
        output_limit: bytes kept per stream; the rest is read and dropped (``*_truncated``).
        stdin: bytes written to the child's stdin, which is then closed.
        env: environment of the child (``None`` inherits ours: backends always pass one).
        cwd: working directory of the child.
        pass_fds: file descriptors the child inherits (e.g. a seccomp BPF program).
        kill: tree-killing callback, also used when the caller is cancelled.
        on_output: called with each kept chunk as it arrives, in arrival order per stream.
        on_spawn: called with the child's pid right after it started.
        output_pipe_size: capacity of the stdout / stderr pipes (default: the kernel's 64 KiB).

    Returns:
        The outcome; ``timed_out`` tells whether the deadline fired.

    Raises:
        OSError: the program could not be started.
    """
    killer: KillCallback = kill if kill is not None else _kill_pid
    loop = asyncio.get_running_loop()
    start = time.monotonic()
    in_r, in_w = _pipe()
    out_r, out_w = _pipe(output_pipe_size)
    err_r, err_w = _pipe(output_pipe_size)

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
                await _maybe_await(killer(started.pid))
                await asyncio.to_thread(started.wait)
        for fd in (in_r, in_w, out_r, out_w, err_r, err_w):
            os.close(fd)
        raise
    for fd in (in_r, out_w, err_w):
        os.close(fd)
    for fd in (in_w, out_r, err_r):
        os.set_blocking(fd, False)
    if on_spawn is not None:
        on_spawn(proc.pid)
    out = _Capture("stdout", output_limit, on_output)
    err = _Capture("stderr", output_limit, on_output)
    tasks = [
        asyncio.ensure_future(_drain(loop, out_r, out)),
        asyncio.ensure_future(_drain(loop, err_r, err)),
        asyncio.ensure_future(_feed(loop, in_w, stdin)),
    ]
    waiter = asyncio.ensure_future(_wait_exit(loop, proc))
    everything = [*tasks, waiter]
    timed_out = False
    try:
        wait_s = None if timeout_s is None else max(timeout_s, 0.0)
        done, _ = await asyncio.wait(everything, timeout=wait_s)
        if len(done) < len(everything):
            timed_out = True
            logger.debug("pid %d passed its %.1fs deadline; killing the tree", proc.pid, timeout_s)
            await _maybe_await(killer(proc.pid))
            _kill_pid(proc.pid)
            done, pending = await asyncio.wait(everything, timeout=_GRACE_S)
            for task in pending:  # a pipe held open by something we could not kill
                logger.warning("pid %d: output pipe still open %.0fs after kill", proc.pid, _GRACE_S)
                task.cancel()
        for task in tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
        if not waiter.done():  # killed but not reaped within the grace period: reap in a thread
            waiter.cancel()
            await asyncio.wait_for(asyncio.to_thread(proc.wait), timeout=_GRACE_S)
    except BaseException:
        # Cancelled (client went away) or an internal error: never leave the tree running.
        with contextlib.suppress(Exception):
            await asyncio.shield(_maybe_await(killer(proc.pid)))
        _kill_pid(proc.pid)
        for task in everything:
            task.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(asyncio.to_thread(proc.wait), timeout=_GRACE_S)
        raise
    code = proc.returncode if proc.returncode is not None else -signal.SIGKILL
    return ProcessOutcome(
        exit_code=code,
        stdout=out.value(),
        stderr=err.value(),
        stdout_truncated=out.truncated,
        stderr_truncated=err.truncated,
        duration_s=time.monotonic() - start,
        timed_out=timed_out,
        pid=proc.pid,
    )
