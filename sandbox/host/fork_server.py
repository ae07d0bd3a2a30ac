"""The host's handle on a warm key's fork server ("zygote", :mod:`sandbox.warm.zygote`), and one per key.

Why: a warm sandbox that starts its own interpreter costs as much CPU per run as a bare ``python3``
(launcher + bwrap + interpreter start). A zygote starts the interpreter and imports the library
set's preload once; each run is a fork of it (:mod:`sandbox.host.warm_fork`).

A zygote is started like a warm sandbox (:class:`~sandbox.host.bwrap_run.BwrapRun`: the launcher,
a host uid of its own, a pooled cgroup and empty network namespace, bubblewrap's user / pid / ipc /
uts / cgroup namespaces, read-only system dirs, the stage's ``/etc``, ``no_new_privs``), with two
differences: no ``--disable-userns``, and the fork server's seccomp filter
(:func:`~sandbox.host.seccomp_policy.zygote_policy`), so its children can make namespaces and mounts.
:class:`Zygotes` keeps one per key, started on first use, replaced after ``fork_max_children``
children, ``fork_max_age_s`` seconds, when it died, or once it had no child for the pool's
``idle_ttl_s``; a replaced one is stopped once its last child ended (its children live in its pid
namespace).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import socket
import struct
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass

from sandbox.base import Limits, RunRequest
from sandbox.commands import TMP_DIR, WORK_DIR, build_argv, build_env
from sandbox.errors import SandboxStartError
from sandbox.host import seccomp
from sandbox.host.bwrap_run import BwrapHost, BwrapRun
from sandbox.host.libset_dirs import LibrarySet
from sandbox.host.spawn import make_pipe, wait_readable
from sandbox.host.warm_bwrap import START_CPU_S, start_limits
from sandbox.host.warm_process import WarmProcess
from sandbox.libsets import library_set_spec
from sandbox.warm.stubs import WARM_DIR

__all__ = ["ForkedChild", "Zygote", "Zygotes"]

logger = logging.getLogger(__name__)

_LAUNCHER_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C"}
_STOP_S = 5.0
_UCRED = struct.Struct("iII")  # pid, uid, gid


@dataclass
class ForkedChild:
    """A child of a zygote waiting for ``go``: its host pid and our ends of its pipes (all ours to close)."""

    pid: int
    pidfd: int
    control: socket.socket
    stdin: int
    stdout: int
    stderr: int
    status: int

    def close(self) -> None:
        """Close our ends (idempotent)."""
        self.control.close()
        for name in ("pidfd", "stdin", "stdout", "stderr", "status"):
            fd = getattr(self, name)
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
                setattr(self, name, -1)


class Zygote:
    """One fork server: fork a child for a run, count the children, stop when told and idle."""

    def __init__(self, run: BwrapRun, process: WarmProcess, sock: socket.socket, on_end: Callable[[], None]):
        self.idle_ttl_s = 300.0  # with no child for this long it stops (set by Zygotes)
        self._idle_timer: asyncio.TimerHandle | None = None
        self.run = run
        self.process = process
        self._sock = sock
        self._on_end = on_end
        self.started = time.monotonic()
        self.forks = 0
        self.children = 0  # forked and not ended yet
        self.retired = False
        self._stopped: asyncio.Task[None] | None = None

    @classmethod
    async def start(
        cls,
        host: BwrapHost,
        template: RunRequest,
        *,
        libset: LibrarySet,
        ids: tuple[int, int],
        maximums: Limits,
        scope: str,
        python: str,
        timeout_s: float,
        on_end: Callable[[], None],
    ) -> Zygote:
        """Start one for ``template``'s key (Python) and wait until its preload is imported.

        Raises:
            SandboxStartError: it could not be started or was not ready in time.
        """
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        run: BwrapRun | None = None
        try:
            cold_argv = build_argv(template, libset, python=python)
            env = build_env(template, libset, home=WORK_DIR, tmp=TMP_DIR)
            preload = library_set_spec(template.library_set).preload
            argv = [*cold_argv[:3], f"{WARM_DIR}/zygote.py", str(theirs.fileno())]
            argv += [str(template.limits.disk_mb), scope, *preload]
            os.set_inheritable(theirs.fileno(), True)
            run = BwrapRun(
                host,
                dataclasses.replace(template, files={}, limits=start_limits(template.limits, maximums)),
                argv,
                env,
                ids=ids,
                libset=libset,
                wiring=None,
                warm=True,
                cpu_rlimit_s=maximums.cpu_seconds + START_CPU_S,
                zygote=True,
                pass_fds=(theirs.fileno(),),
            )
            ours.send(seccomp.bpf_program(False))  # the runs' filter: its first datagram
            process = await WarmProcess.start(
                run.spawn_args, env=_LAUNCHER_ENV, cwd="/", kill=run.kill, timeout_s=timeout_s
            )
            run.close_fds()
        except BaseException:
            ours.close()
            if run is not None:
                await asyncio.to_thread(run.finish, False)
            on_end()
            raise
        finally:
            theirs.close()
        ours.setblocking(False)
        return cls(run, process, ours, on_end)

    @property
    def preloaded(self) -> tuple[str, ...]:
        """Top-level modules the zygote imported before any run."""
        return self.process.preloaded

    def alive(self) -> bool:
        """False once it ended."""
        return self.process.alive()

    def pids(self) -> set[int]:
        """Its own processes on the host (blocking: reads its cgroup; its children are in theirs)."""
        if self._stopped is not None or self.run.cgroup is None:  # the group may serve another run now
            return set()
        return self.run.cgroup.pids()

    async def fork(self, timeout_s: float) -> ForkedChild:
        """Fork a child waiting for ``go``; the caller owns it.

        Raises:
            SandboxStartError: the zygote ended, or the child did not say it was forked in time.
        """
        if not self.alive():
            raise SandboxStartError("the warm key's fork server ended")
        control, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        control.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)  # the child's pid, in ours
        in_r, in_w = make_pipe()
        out_r, out_w = make_pipe()
        err_r, err_w = make_pipe()
        status_r, status_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        child = ForkedChild(-1, -1, control, in_w, out_r, err_r, status_r)
        given = [theirs.fileno(), in_r, out_w, err_w, status_w]
        try:
            try:
                rights = (socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("5i", *given))
                self._sock.sendmsg([b"fork"], [rights])
            except OSError as exc:
                raise SandboxStartError(f"the warm key's fork server is gone: {exc}") from exc
            finally:
                theirs.close()
                for fd in given[1:]:
                    os.close(fd)
            self.forks += 1
            control.setblocking(False)
            if not await wait_readable(control.fileno(), timeout_s):
                raise SandboxStartError(f"a forked warm sandbox did not start within {timeout_s:g} s")
            data, ancdata, _, _ = control.recvmsg(16, socket.CMSG_SPACE(_UCRED.size))
            cred = (socket.SOL_SOCKET, socket.SCM_CREDENTIALS)
            creds = [p for lvl, kind, p in ancdata if (lvl, kind) == cred]
            if data != b"forked" or not creds:
                raise SandboxStartError("the warm key's fork server could not fork")
            child.pid = _UCRED.unpack(creds[0][: _UCRED.size])[0]
            child.pidfd = os.pidfd_open(child.pid)  # holds the pid: it waits for us, so it is the child
            for fd in (child.stdin, child.stdout, child.stderr):
                os.set_blocking(fd, False)
        except BaseException:
            if child.pid > 0:
                with contextlib.suppress(OSError):
                    os.kill(child.pid, 9)  # still waiting for us: not reaped yet
            child.close()
            raise
        self.children += 1
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        return child

    def child_ended(self) -> None:
        """One of its children is gone; a retired zygote with none left stops."""
        self.children -= 1
        if self.retired and self.children <= 0:
            self.stop()
        elif self.children <= 0 and self._idle_timer is None:
            self._idle_timer = asyncio.get_running_loop().call_later(self.idle_ttl_s, self._idle_too_long)

    def _idle_too_long(self) -> None:
        self._idle_timer = None
        if self.children <= 0:
            self.retire()

    def retire(self) -> None:
        """Fork no more; stop once its last child ended."""
        self.retired = True
        if self.children <= 0:
            self.stop()

    def stop(self) -> None:
        """Stop it in the background (idempotent; :meth:`stopped` waits)."""
        self.retired = True
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        if self._stopped is None:
            self._stopped = asyncio.ensure_future(self._stop())

    @property
    def gone(self) -> bool:
        """True once it was stopped and its clean-up is done."""
        return self._stopped is not None and self._stopped.done()

    async def stopped(self) -> None:
        """Wait until it is gone (after :meth:`stop`)."""
        if self._stopped is not None:
            await asyncio.wait([self._stopped])

    async def _stop(self) -> None:
        try:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)  # its recvmsg gets b"": it returns, bwrap exits
            self._sock.close()
            if await self.process.wait_exit(_STOP_S):
                self.process.spawned.close_pipes()
            else:
                await self.process.destroy()
            await asyncio.to_thread(self.run.finish, False)
        finally:
            self._on_end()


class Zygotes:
    """One zygote per warm key, started on first use and replaced as the settings say."""

    def __init__(
        self,
        start: Callable[[RunRequest], Awaitable[Zygote]],
        *,
        max_children: int,
        max_age_s: float,
        idle_ttl_s: float,
    ) -> None:
        self._start = start
        self._idle_ttl_s = idle_ttl_s
        self._max_children = max_children
        self._max_age_s = max_age_s
        self._current: dict[Hashable, Zygote] = {}
        self._starting: dict[Hashable, asyncio.Future[Zygote]] = {}
        self._all: set[Zygote] = set()

    async def get(self, key: Hashable, template: RunRequest) -> Zygote:
        """The key's zygote, started (or replaced) first if need be."""
        zygote = self._current.get(key)
        if zygote is not None and (
            zygote.retired
            or not zygote.alive()
            or zygote.forks >= self._max_children
            or time.monotonic() - zygote.started > self._max_age_s
        ):
            del self._current[key]
            zygote.retire()
            zygote = None
        if zygote is not None:
            return zygote
        starting = self._starting.get(key)
        if starting is None:
            starting = asyncio.ensure_future(self._start_one(key, template))
            self._starting[key] = starting
        return await asyncio.shield(starting)

    async def _start_one(self, key: Hashable, template: RunRequest) -> Zygote:
        try:
            zygote = await self._start(template)
        finally:
            self._starting.pop(key, None)
        zygote.idle_ttl_s = self._idle_ttl_s
        self._all = {z for z in self._all if not z.gone}
        self._all.add(zygote)
        self._current[key] = zygote
        return zygote

    def pids(self) -> set[int]:
        """The host processes of every zygote's own sandbox (blocking: reads their cgroups)."""
        return {pid for zygote in self._all for pid in zygote.pids()}

    async def close(self) -> None:
        """Stop every zygote now (their children end with them) and wait until they are gone."""
        for starting in list(self._starting.values()):
            with contextlib.suppress(BaseException):
                await starting
        for zygote in self._all:
            zygote.stop()
        for zygote in self._all:
            await zygote.stopped()
        self._all.clear()
        self._current.clear()
