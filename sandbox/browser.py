"""The sandboxed browser: Debian's Chromium runs inside a sandbox, Playwright drives it through a pipe.

Two ways, chosen by the sandbox's backend (:func:`hosts_browsers`), so callers (``tools.browser``)
never know which: on the local backend the pipe below; on a backend that runs the browser itself
(Kata: a pod, :mod:`sandbox.kata.browser`), ``start_browser`` through the caller's guard (limits
clamped, memory admitted, tenant label set) and Playwright's ``connect_over_cdp`` to the endpoint
its handle gives; the session ends with the handle's ``terminate()``.

How Playwright reaches it (no debugging port exists anywhere): Playwright launches
``executable_path`` = a per-session wrapper script and hands it the two ends of its
``--remote-debugging-pipe`` as fds 3 and 4. The wrapper passes those fds (``SCM_RIGHTS``) and its
argv to this module over a per-session Unix socket, then waits. The session runs Chromium as an
ordinary sandbox run through the caller's guard (limits clamped, memory admitted, tenant label set)
with the fds as the program's 3 and 4 (``RunRequest.pipe_fds``; the in-sandbox forwarder places
them). When Chromium ends the wrapper exits with its code, so Playwright sees a normal browser exit;
when the wrapper dies (Playwright killed it) the run is cancelled, which kills the tree.

Confinement: the same bubblewrap profile and seccomp filter as any run with network (Chromium needs
no call they refuse: it runs with ``--no-sandbox``, since its own namespace sandbox would need the
namespaces the filter denies, and one sandbox boundary holds for it as for any program). What
differs is data only: larger limits (``SandboxSettings.browser_limits``; pids count threads). Its
only network is the egress proxy: ``--proxy-server`` is the in-sandbox forwarder and
``--proxy-bypass-list=<-loopback>`` sends loopback names there too. Sessions: at most
``browser_max_sessions`` at once per pool; each lives at most ``browser_limits.wall_seconds`` (the
run's wall cap kills Chromium) and leaves nothing behind (the run's clean-up, plus the session's
temp dir and socket).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import shutil
import socket
import struct
import sys
import tempfile
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from sandbox.base import RunRequest, RunResult, Sandbox
from sandbox.commands import EGRESS_PORT
from sandbox.config import SandboxSettings
from sandbox.errors import SandboxBusyError, SandboxStartError
from sandbox.service import ServiceHandle

if TYPE_CHECKING:
    from playwright.async_api import Browser, Playwright

__all__ = ["BROWSER_FLAGS", "BrowserPool", "chromium_flags", "hosts_browsers"]

logger = logging.getLogger(__name__)

PROFILE_DIR = "/sandbox/work/profile"
_HANDOFF_TIMEOUT_S = 20.0
_LAUNCH_TIMEOUT_S = 60.0
# Our flags win over Playwright's: these names are dropped from what Playwright asks for.
_OURS = {
    "user-data-dir",
    "remote-debugging-port",
    "remote-debugging-address",
    "proxy-server",
    "proxy-bypass-list",
    "proxy-pac-url",
    "no-proxy-server",
    "proxy-auto-detect",
    "load-extension",
}
# The wrapper Playwright starts (stdlib only, isolated mode): fds 3 and 4 go to the session.
_WRAPPER = """#!{python} -I
import json, os, socket, struct, sys
sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
sock.connect({path!r})
body = json.dumps(sys.argv[1:]).encode()
socket.send_fds(sock, [struct.pack("!I", len(body)) + body], [3, 4])
os.close(3)
os.close(4)
code = sock.recv(16)
sys.exit(int(code) & 255 if code else 1)
"""


BROWSER_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
"""Chromium's flags on every backend (a backend adds how it is reached and its proxy)."""


def hosts_browsers(sandbox: object) -> bool:
    """True when the sandbox's backend runs Chromium itself, reached over CDP (``start_browser``).

    Remote backends (Kata) cannot take host pipes; they say so with ``browser_over_cdp = True``
    (read through the guard, which forwards attributes) and start the browser as their own service.
    """
    return getattr(sandbox, "browser_over_cdp", False) is True


def chromium_flags(requested: list[str]) -> list[str]:
    """Playwright's flags without those we own (profile, debugging, proxy), then ours."""
    kept = [arg for arg in requested if arg.startswith("--") and arg[2:].split("=", 1)[0] not in _OURS]
    ours = [
        *BROWSER_FLAGS,
        "--remote-debugging-pipe",
        f"--user-data-dir={PROFILE_DIR}",
        f"--proxy-server=http://127.0.0.1:{EGRESS_PORT}",
        "--proxy-bypass-list=<-loopback>",
    ]
    return [*dict.fromkeys([*kept, *ours])]


def _receive(conn: socket.socket) -> tuple[list[str], list[int]]:
    """Read the wrapper's argv and its two pipe fds (blocking; run in a thread)."""
    conn.settimeout(_HANDOFF_TIMEOUT_S)
    data, fds, _, _ = socket.recv_fds(conn, 65536, 2)
    try:
        if len(fds) != 2 or len(data) < 4:
            raise SandboxStartError("the browser wrapper sent no pipe")
        (size,) = struct.unpack("!I", data[:4])
        body = data[4:]
        while len(body) < size:
            more = conn.recv(size - len(body))
            if not more:
                raise SandboxStartError("the browser wrapper went away")
            body += more
        argv = json.loads(body)
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    return [str(a) for a in argv], fds


class BrowserPool:
    """Sandboxed Chromium sessions for this process: one Playwright driver, a cap on sessions."""

    def __init__(self, settings: SandboxSettings | None = None, *, wait_s: float = 10.0) -> None:
        self.settings = settings or SandboxSettings()
        self.wait_s = wait_s
        self._slots = asyncio.Semaphore(self.settings.browser_max_sessions)
        self._playwright: Playwright | None = None
        self._lock = asyncio.Lock()

    async def _driver(self) -> Playwright:
        async with self._lock:
            if self._playwright is None:
                from playwright.async_api import async_playwright  # the driver starts node: only when used

                self._playwright = await async_playwright().start()
            return self._playwright

    @contextlib.asynccontextmanager
    async def session(
        self, sandbox: Sandbox, labels: Mapping[str, str] | None = None
    ) -> AsyncIterator[Browser]:
        """A Playwright ``Browser`` whose Chromium runs in ``sandbox`` (a guarded view); closed after.

        Raises:
            SandboxBusyError: ``browser_max_sessions`` are open and none ended within ``wait_s``.
            SandboxStartError: Chromium did not start (the run's output says why).
        """
        try:
            await asyncio.wait_for(self._slots.acquire(), self.wait_s)
        except TimeoutError:
            raise SandboxBusyError(
                f"all {self.settings.browser_max_sessions} browser sessions are in use; retry shortly", 5
            ) from None
        if hosts_browsers(sandbox):
            try:
                async with self._cdp_session(sandbox, labels) as browser:
                    yield browser
            finally:
                self._slots.release()
            return
        tmp = Path(tempfile.mkdtemp(prefix=f"agentic-browser-{os.getpid()}-"))
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        handoff: asyncio.Task[RunResult] | None = None
        try:
            path = tmp / "handoff.sock"
            listener.bind(str(path))
            listener.listen(1)
            listener.setblocking(False)
            wrapper = tmp / "chromium"
            wrapper.write_text(_WRAPPER.format(python=sys.executable, path=str(path)))
            wrapper.chmod(0o700)
            run_labels = {**(labels or {}), "run": f"browser-{secrets.token_hex(4)}"}
            handoff = asyncio.create_task(self._serve(listener, sandbox, run_labels))
            browser = await self._launch(wrapper, handoff)
            try:
                yield browser
            finally:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(browser.close(), 10.0)
        finally:
            if handoff is not None:
                await _finish(handoff)
            listener.close()
            shutil.rmtree(tmp, ignore_errors=True)
            self._slots.release()

    @contextlib.asynccontextmanager
    async def _cdp_session(
        self, sandbox: Sandbox, labels: Mapping[str, str] | None
    ) -> AsyncIterator[Browser]:
        """A browser the backend runs itself (``start_browser``), connected over CDP."""
        request = RunRequest(
            command=(str(self.settings.browser_path), *BROWSER_FLAGS),
            network=True,
            limits=self.settings.browser_limits,
            labels={**(labels or {}), "run": f"browser-{secrets.token_hex(4)}"},
        )
        handle: ServiceHandle = await sandbox.start_browser(request)  # type: ignore[attr-defined]
        try:
            endpoint = handle.endpoint
            if endpoint is None or endpoint.url is None or not await handle.wait_ready(_LAUNCH_TIMEOUT_S):
                raise SandboxStartError(
                    f"the browser did not answer over CDP: {handle.logs()[-800:]}".strip()
                )
            playwright = await self._driver()
            browser = await playwright.chromium.connect_over_cdp(
                endpoint.url, timeout=_LAUNCH_TIMEOUT_S * 1000
            )
            logger.info("browser session %s connected at %s", request.labels.get("run"), endpoint.url)
            try:
                yield browser
            finally:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(browser.close(), 10.0)
        finally:
            await handle.terminate()

    async def _launch(self, wrapper: Path, handoff: asyncio.Task[RunResult]) -> Browser:
        """Playwright's launch of the wrapper; the handoff's error if Chromium never came up."""
        playwright = await self._driver()
        launch = asyncio.ensure_future(
            playwright.chromium.launch(
                executable_path=wrapper,
                timeout=_LAUNCH_TIMEOUT_S * 1000,
                handle_sigint=False,
                handle_sigterm=False,
                handle_sighup=False,
            )
        )
        await asyncio.wait({launch, handoff}, return_when=asyncio.FIRST_COMPLETED)
        if launch.done() and launch.exception() is None:
            return launch.result()
        if not launch.done():  # the run ended (or failed) before Playwright connected
            launch.cancel()
            with contextlib.suppress(BaseException):
                await launch
        if handoff.done() and handoff.exception() is not None:
            raise handoff.exception()  # type: ignore[misc]
        detail = ""
        if handoff.done():
            result = handoff.result()
            detail = f" (exit {result.exit_code}, {result.reason}): {result.stderr[-800:]}"
        raise SandboxStartError(f"the sandboxed browser did not start{detail}") from launch.exception()

    async def _serve(self, listener: socket.socket, sandbox: Sandbox, labels: Mapping[str, str]) -> RunResult:
        """Accept the wrapper, run Chromium with its pipe, tell the wrapper the exit code."""
        loop = asyncio.get_running_loop()
        conn, _ = await asyncio.wait_for(loop.sock_accept(listener), _LAUNCH_TIMEOUT_S)
        with conn:
            argv, fds = await asyncio.to_thread(_receive, conn)
            conn.setblocking(False)
            try:
                request = RunRequest(
                    command=(str(self.settings.browser_path), *chromium_flags(argv)),
                    network=True,
                    limits=self.settings.browser_limits,
                    pipe_fds=(fds[0], fds[1]),
                    labels=labels,
                )
                logger.info("browser session %s starting", labels.get("run"))
                run = asyncio.ensure_future(sandbox.run(request))
                gone = asyncio.ensure_future(loop.sock_recv(conn, 1))  # b"": the wrapper died
                try:
                    await asyncio.wait({run, gone}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for task in (gone, run):
                        if not task.done():
                            task.cancel()
                        with contextlib.suppress(BaseException):
                            await task
                result = run.result()  # CancelledError when the wrapper died first
            finally:
                for fd in fds:
                    os.close(fd)
            logger.info("browser session %s ended: %s %s", labels.get("run"), result.reason, result.exit_code)
            with contextlib.suppress(OSError):
                await loop.sock_sendall(conn, str(result.exit_code).encode())
            return result

    async def close(self) -> None:
        """Stop the Playwright driver; idempotent (sessions close themselves)."""
        playwright, self._playwright = self._playwright, None
        if playwright is not None:
            await playwright.stop()


async def _finish(handoff: asyncio.Task[RunResult]) -> None:
    """Wait briefly for Chromium to exit after ``Browser.close``, then cancel its run (kills the tree)."""
    with contextlib.suppress(BaseException):
        await asyncio.wait_for(asyncio.shield(handoff), 10.0)
    if not handoff.done():
        handoff.cancel()
    with contextlib.suppress(BaseException):
        await handoff
