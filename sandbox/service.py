"""A long-running sandboxed program (a hosted app, a browser): the handle ``Sandbox.start_service`` returns.

Why a run in a task: a service is an ordinary run of the backend (same limits, same clean-up path)
without a wall-clock cap, executed by a background task; ``terminate`` cancels that task, and the
backend's cancellation path kills the tree and removes cgroup, mounts, namespace and sockets (or the
pod, or the instance), as it does for a run whose client went away. Output is kept in a bounded ring
for ``logs``. Every backend returns this one class: what differs is only its :class:`ServiceEndpoint`,
a Unix socket on this host for the local backends, a URL for a remote one.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sandbox.base import OutputChunk, RunResult

__all__ = ["LOG_CHARS", "ServiceEndpoint", "ServiceHandle"]

logger = logging.getLogger(__name__)

LOG_CHARS = 256 * 1024  # the newest output kept per service
_PROBE = b"HEAD / HTTP/1.0\r\n\r\n"  # the forwarder accepts before the app listens: HTTP tells them apart


@dataclass(frozen=True)
class ServiceEndpoint:
    """Where the server reaches a service: exactly one of a Unix socket on this host or a URL.

    ``host``: the ``Host`` a request to ``url`` must carry when the URL is a shared edge that tells
    apps apart by name (Unikraft's ``app_edge_url``); None sends the URL's own host.
    """

    unix_socket: Path | None = None
    url: str | None = None
    host: str | None = None

    def __post_init__(self) -> None:
        if (self.unix_socket is None) == (self.url is None):
            raise ValueError("a service endpoint is a Unix socket or a URL, exactly one of them")
        if self.host is not None and self.url is None:
            raise ValueError("a Host header goes with a URL endpoint only")


class ServiceHandle:
    """A started service: where it answers, its logs, and ``terminate()`` (idempotent)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.endpoint: ServiceEndpoint | None = None  # set by the backend once the service is reachable
        self.result: RunResult | None = None
        self.error: BaseException | None = None
        self._logs: collections.deque[str] = collections.deque()
        self._log_chars = 0
        self._task: asyncio.Task[None] | None = None
        self._coro: Coroutine[Any, Any, RunResult] | None = None
        self._on_exit: list[Callable[[], Awaitable[None]]] = []
        self._on_output: list[Callable[[OutputChunk], None]] = []

    # The backend's ``_execute`` feeds output through this queue-like method.
    def put_nowait(self, item: OutputChunk | BaseException | None) -> None:
        """Keep the newest :data:`LOG_CHARS` characters of output."""
        if not isinstance(item, OutputChunk) or not item.data:
            return
        for listener in self._on_output:
            listener(item)
        self._logs.append(item.data)
        self._log_chars += len(item.data)
        while self._log_chars > LOG_CHARS and len(self._logs) > 1:
            self._log_chars -= len(self._logs.popleft())

    def start(self, execute: Coroutine[Any, Any, RunResult]) -> None:
        """Run ``execute`` (the backend's run of the service) in a background task."""

        async def body() -> None:
            try:
                self.result = await execute
                logger.info("service %s ended: %s %s", self.name, self.result.reason, self.result.exit_code)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.error = exc
                logger.warning("service %s failed: %s", self.name, exc)
            finally:
                await self._exited()

        self._coro = execute
        self._task = asyncio.create_task(body(), name=f"service-{self.name}")

    async def _exited(self) -> None:
        """Run the exit callbacks once (also when the task was cancelled before it started)."""
        callbacks, self._on_exit = self._on_exit, []
        for callback in callbacks:
            with contextlib.suppress(Exception):
                await asyncio.shield(callback())

    def on_exit(self, callback: Callable[[], Awaitable[None]]) -> None:
        """Call ``callback`` once the program has ended and been cleaned up (e.g. release a grant)."""
        self._on_exit.append(callback)

    def on_output(self, listener: Callable[[OutputChunk], None]) -> None:
        """Call ``listener`` with each output chunk from now on (e.g. to keep logs across restarts)."""
        self._on_output.append(listener)

    @property
    def socket_path(self) -> Path | None:
        """The endpoint's Unix socket (None for a URL endpoint, or before the backend set one)."""
        return self.endpoint.unix_socket if self.endpoint is not None else None

    @property
    def running(self) -> bool:
        """True while the program runs."""
        return self._task is not None and not self._task.done()

    def logs(self) -> str:
        """The newest output of the service (stdout and stderr interleaved)."""
        return "".join(self._logs)

    async def wait_ready(self, timeout_s: float = 20.0) -> bool:
        """Wait until the service answers HTTP at its endpoint (False: it ended or timed out)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.running:
            if self.endpoint is not None and await _answers(self.endpoint):
                return True
            await asyncio.sleep(0.05)
        return False

    async def wait(self) -> RunResult | None:
        """Wait for the program to end; its result (None when it failed to start or was terminated)."""
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(self._task)
        return self.result

    async def terminate(self) -> None:
        """Kill the service and wait until nothing of it remains; safe to call twice."""
        task = self._task
        if task is None:
            return
        if not task.done():
            task.cancel()
        with contextlib.suppress(BaseException):
            await task
        if self._coro is not None:  # cancelled before it started: nothing ran, nothing to clean
            self._coro.close()
        await self._exited()


async def _answers(endpoint: ServiceEndpoint) -> bool:
    """True when something answers an HTTP request at ``endpoint`` (the app, not only a forwarder)."""
    try:
        if endpoint.unix_socket is not None:
            connecting = asyncio.open_unix_connection(str(endpoint.unix_socket))
        else:
            assert endpoint.url is not None
            parts = urlsplit(endpoint.url)
            connecting = asyncio.open_connection(parts.hostname, parts.port or 80)
        reader, writer = await asyncio.wait_for(connecting, timeout=1.0)
    except (OSError, TimeoutError):
        return False
    try:
        writer.write(_PROBE)
        await writer.drain()
        return bool(await asyncio.wait_for(reader.read(1), timeout=1.0))
    except (OSError, TimeoutError):
        return False
    finally:
        writer.close()
