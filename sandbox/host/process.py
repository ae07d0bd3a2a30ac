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
from dataclasses import dataclass, field
from typing import Any

from sandbox.streaming import StreamName

__all__ = [
    "ArgvFactory",
    "KillCallback",
    "OutputCallback",
    "ProcessOutcome",
    "Spawned",
    "read_available",
    "run_process",
    "spawn_process",
    "supervise",
    "wait_readable",
]

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
    """Read ``fd`` to EOF (keeps reading past the cap so the writer never blocks), then close it.

    Cancelled (the program is known to have ended, see :func:`supervise`), it first takes what
    the pipe holds now.
    """
    try:
        while True:
            try:
                chunk = os.read(fd, _CHUNK)
            except BlockingIOError:
                try:
                    await _ready(loop, fd)
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
                    await _ready(loop, fd, write=True)
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
            await _ready(loop, fd)
            continue
        if not chunk:
            return None
        text += chunk
    try:
        return int(text)
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


@dataclass(kw_only=True)
class Spawned:
    """A started child and our ends of its stdio pipes (non-blocking); :func:`supervise` consumes it."""

    proc: subprocess.Popen[bytes]
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
        """Close our pipe ends (idempotent); :func:`supervise` closes them itself."""
        if self._open:
            self._open = False
            for fd in (self.stdin, self.stdout, self.stderr):
                with contextlib.suppress(OSError):
                    os.close(fd)

    async def destroy(self) -> None:
        """Kill the tree (kill callback), reap the child, close the pipes: for a child never supervised."""
        # Reap the child as soon as it is dead, alongside the kill callback: a callback that waits for
        # the tree to be gone (a cgroup emptied) would otherwise wait on our own unreaped zombie.
        reaper = asyncio.ensure_future(_wait_exit(asyncio.get_running_loop(), self.proc))
        _kill_pid(self.proc.pid)
        with contextlib.suppress(Exception):
            await _maybe_await(self.kill(self.proc.pid))
        self.close_pipes()
        try:
            await asyncio.wait_for(reaper, timeout=_GRACE_S)
        except TimeoutError:
            logger.warning("pid %d did not end %.0f s after SIGKILL", self.proc.pid, _GRACE_S)


async def spawn_process(
    argv: Sequence[str] | ArgvFactory,
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    pass_fds: Sequence[int] = (),
    kill: KillCallback | None = None,
    output_pipe_size: int | None = None,
) -> Spawned:
    """Start ``argv`` with stdio pipes (see :func:`run_process` for the arguments); cancellation-safe.

    Raises:
        OSError: the program could not be started.
    """
    killer: KillCallback = kill if kill is not None else _kill_pid
    loop = asyncio.get_running_loop()
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
    return Spawned(proc=proc, stdin=in_w, stdout=out_r, stderr=err_r, kill=killer)


async def wait_readable(fd: int, timeout_s: float) -> bool:
    """Wait until ``fd`` is readable (data or EOF); False when ``timeout_s`` passed first."""
    try:
        await asyncio.wait_for(_ready(asyncio.get_running_loop(), fd), timeout=timeout_s)
    except TimeoutError:
        return False
    return True


def read_available(fd: int, limit: int = _CHUNK) -> bytes | None:
    """What can be read from the non-blocking ``fd`` now (up to ``limit``); None at EOF."""
    parts: list[bytes] = []
    while limit > 0:
        try:
            chunk = os.read(fd, min(limit, _CHUNK))
        except BlockingIOError:
            break
        if not chunk:
            return b"".join(parts) if parts else None
        parts.append(chunk)
        limit -= len(chunk)
    return b"".join(parts)


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
    waiter = asyncio.ensure_future(_wait_exit(loop, proc))
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
            await _maybe_await(killer(proc.pid))
            _kill_pid(proc.pid)
            done, pending = await asyncio.wait(everything, timeout=_GRACE_S)
            for left in pending:  # a pipe held open by something we could not kill
                logger.warning("pid %d: output pipe still open %.0fs after kill", proc.pid, _GRACE_S)
                left.cancel()
        for task in tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
        if code is None and not waiter.done():  # killed, not reaped within the grace period: reap in a thread
            waiter.cancel()
            await asyncio.wait_for(asyncio.to_thread(proc.wait), timeout=_GRACE_S)
    except BaseException:
        # Cancelled (client went away) or an internal error: never leave the tree running.
        with contextlib.suppress(Exception):
            await asyncio.shield(_maybe_await(killer(proc.pid)))
        _kill_pid(proc.pid)
        waiter.cancel()
        for task in tasks:
            task.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(asyncio.to_thread(proc.wait), timeout=_GRACE_S)
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
