"""The async child-process runner shared by the backends on this host (bubblewrap, gVisor).

Why a module of its own: every backend needs the same careful plumbing: both pipes drained
concurrently (a program printing 100 MB must neither block nor grow our memory: bytes past the
cap are read and dropped), stdin fed without deadlocks, a wall-clock deadline that kills the
*whole tree* through a backend-supplied callback, and cancellation that never leaves a child behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sandbox.host.spawn import (
    CHUNK,
    GRACE_S,
    ArgvFactory,
    KillCallback,
    Spawned,
    fd_ready,
    kill_pid,
    maybe_await,
    read_available,
    spawn_process,
    wait_exit,
)
from sandbox.streaming import StreamName

__all__ = ["ArgvFactory", "KillCallback", "OutputCallback", "ProcessOutcome", "run_process", "supervise"]

logger = logging.getLogger(__name__)

OutputCallback = Callable[[StreamName, bytes], Awaitable[None] | None]


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


async def _drain(loop: asyncio.AbstractEventLoop, fd: int, capture: _Capture) -> None:
    """Read ``fd`` to EOF (keeps reading past the cap so the writer never blocks), then close it.

    Cancelled (the program is known to have ended, see :func:`supervise`), it first takes what
    the pipe holds now.
    """
    try:
        while True:
            try:
                chunk = os.read(fd, CHUNK)
            except BlockingIOError:
                try:
                    await fd_ready(loop, fd)
                except asyncio.CancelledError:
                    while chunk := read_available(fd) or b"":
                        await capture.feed(chunk)
                    raise
                continue
            if not chunk:
                return
            await capture.feed(chunk)
    finally:
        os.close(fd)


async def _feed(loop: asyncio.AbstractEventLoop, fd: int, data: Sequence[bytes]) -> None:
    """Write ``data`` (pieces, in order) to the child's stdin and close it (the child may stop reading)."""
    try:
        for piece in data:
            view = memoryview(piece)
            while view:
                try:
                    view = view[os.write(fd, view) :]
                except BlockingIOError:
                    await fd_ready(loop, fd, write=True)
    except OSError:  # EPIPE: the program exited or closed stdin
        pass
    finally:
        os.close(fd)


async def _read_status(loop: asyncio.AbstractEventLoop, fd: int) -> int | None:
    """The exit status the child writes on ``fd`` (a decimal line), or None when it closes it without."""
    text = b""
    while not text.endswith(b"\n"):
        try:
            chunk = os.read(fd, 64)
        except BlockingIOError:
            await fd_ready(loop, fd)
            continue
        if not chunk:
            return None
        text += chunk
    try:  # the first line: a fork server's child may write the status after its program did
        return int(text.partition(b"\n")[0])
    except ValueError:
        return None


async def _early_status(
    status: asyncio.Future[int | None], everything: Sequence[asyncio.Future[Any]], wait_s: float | None
) -> int | None:
    """The program's status once ``status`` has it; None when the child ended, or the time is up, first."""
    pending: set[asyncio.Future[Any]] = {status, *everything}
    deadline = None if wait_s is None else time.monotonic() + wait_s
    while status in pending and len(pending) > 1:
        left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
        done, pending = await asyncio.wait(pending, timeout=left, return_when=asyncio.FIRST_COMPLETED)
        if not done:
            break
    if status.done() and not status.cancelled():
        return status.result()
    status.cancel()
    return None


async def supervise(
    spawned: Spawned,
    *,
    timeout_s: float | None,
    output_limit: int,
    stdin: Sequence[bytes] = (),
    on_output: OutputCallback | None = None,
    started: float | None = None,
    status_fd: int | None = None,
) -> ProcessOutcome:
    """Feed ``stdin``, capture the output and enforce the deadline of a spawned child until it ends.

    ``started``: the monotonic time the duration counts from (default: now); the deadline counts
    from this call. The pipes are closed when this returns. See :func:`run_process` for the other arguments.

    ``status_fd``: a pipe (non-blocking, ours to close) on which the child writes its program's exit
    status (a decimal line) as soon as the program ended, while the child itself may still be
    reaping what is left (``agentic-launch -s``). Then this returns at once, with what the output
    pipes hold, and the caller reaps the child.
    """
    loop = asyncio.get_running_loop()
    start = time.monotonic() if started is None else started
    proc, killer = spawned.proc, spawned.kill
    spawned._open = False  # the tasks below close the pipes
    out = _Capture("stdout", output_limit, on_output)
    err = _Capture("stderr", output_limit, on_output)
    tasks = [
        asyncio.ensure_future(_drain(loop, spawned.stdout, out)),
        asyncio.ensure_future(_drain(loop, spawned.stderr, err)),
        asyncio.ensure_future(_feed(loop, spawned.stdin, stdin)),
    ]
    waiter = asyncio.ensure_future(wait_exit(loop, proc))
    status = asyncio.ensure_future(_read_status(loop, status_fd)) if status_fd is not None else None
    everything: list[asyncio.Future[Any]] = [*tasks, waiter]
    done: set[asyncio.Future[Any]] = set()
    timed_out = False
    code: int | None = None
    try:
        wait_s = None if timeout_s is None else max(timeout_s, 0.0)
        if status is not None:
            code = await _early_status(status, everything, wait_s)
            if code is not None:  # the program ended: take what its pipes hold, and leave
                for job in everything:
                    job.cancel()
                await asyncio.wait(tasks)
                everything = []
            else:  # no early status (the launcher itself failed): wait for the child, as without one
                if wait_s is not None:
                    wait_s = max(wait_s - (time.monotonic() - start), 0.0)
                done, _ = await asyncio.wait(everything, timeout=wait_s)
        else:
            done, _ = await asyncio.wait(everything, timeout=wait_s)
        if everything and len(done) < len(everything):
            timed_out = True
            logger.debug("pid %d passed its %.1fs deadline; killing the tree", proc.pid, timeout_s)
            await maybe_await(killer(proc.pid))
            kill_pid(proc.pid)
            done, pending = await asyncio.wait(everything, timeout=GRACE_S)
            for left in pending:  # a pipe held open by something we could not kill
                logger.warning("pid %d: output pipe still open %.0fs after kill", proc.pid, GRACE_S)
                left.cancel()
        for task in tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
        if code is None and not waiter.done():  # killed, not reaped within the grace period: reap in a thread
            waiter.cancel()
            await asyncio.wait_for(asyncio.to_thread(proc.wait), timeout=GRACE_S)
    except BaseException:
        # Cancelled (client went away) or an internal error: never leave the tree running.
        with contextlib.suppress(Exception):
            await asyncio.shield(maybe_await(killer(proc.pid)))
        kill_pid(proc.pid)
        waiter.cancel()
        for task in tasks:
            task.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(asyncio.to_thread(proc.wait), timeout=GRACE_S)
        raise
    finally:
        if status is not None:
            status.cancel()
    if code is None:
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
    start = time.monotonic()
    spawned = await spawn_process(
        argv, env=env, cwd=cwd, pass_fds=pass_fds, kill=kill, output_pipe_size=output_pipe_size
    )
    if on_spawn is not None:
        on_spawn(spawned.pid)
    return await supervise(
        spawned,
        timeout_s=timeout_s,
        output_limit=output_limit,
        stdin=(stdin,),
        on_output=on_output,
        started=start,
    )
