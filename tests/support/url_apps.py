"""A sandbox backend for tests whose hosted apps answer at a loopback URL, as a remote backend's do.

Why: the Kata and Unikraft backends hand the server a URL endpoint (a Service's cluster URL, an
edge), and the server's reverse proxy must dial it. This is the local backend (runs are real
sandbox runs) except that ``start_service`` starts the app as a plain process on a free port of
127.0.0.1 and gives a :class:`~sandbox.service.ServiceHandle` whose endpoint is
``http://127.0.0.1:PORT``. Like a Service mapping its port to the app's, the port the app listens
on is chosen here (``$PORT``), not the one the request names. Only test apps run this way.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

from sandbox.backends.bubblewrap import BubblewrapSandbox
from sandbox.base import OutputChunk, RunRequest, RunResult
from sandbox.service import ServiceEndpoint, ServiceHandle

__all__ = ["BACKEND", "LoopbackUrlSandbox", "free_port"]

BACKEND = "loopback-url"  # the name tests register it under (sandbox.registry.register_backend)


def free_port() -> int:
    """A port nothing listens on now, on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LoopbackUrlSandbox(BubblewrapSandbox):
    """The local backend, with hosted apps reached at a loopback URL (see the module docstring)."""

    processes: list[int] = []  # pids of the apps started, for leftover checks

    async def start_service(self, request: RunRequest, *, port: int) -> ServiceHandle:
        handle = ServiceHandle(request.labels.get("app", "service"))
        listen = free_port()
        handle.start(_serve(request, listen, handle))
        handle.endpoint = ServiceEndpoint(url=f"http://127.0.0.1:{listen}")
        return handle


async def _serve(request: RunRequest, port: int, handle: ServiceHandle) -> RunResult:
    """Run the app from its files until it ends or is cancelled (then kill it and remove its files)."""
    workdir = Path(tempfile.mkdtemp(prefix="agentic-url-app-"))
    for name, content in request.files.items():
        path = workdir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
    command = list(request.command) if request.command else [sys.executable, str(request.entry)]
    env = {"PATH": os.environ.get("PATH", "/usr/bin"), **request.env, "PORT": str(port)}
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        *command, cwd=workdir, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    LoopbackUrlSandbox.processes.append(proc.pid)
    try:
        assert proc.stdout is not None
        while line := await proc.stdout.readline():
            handle.put_nowait(OutputChunk(stream="stdout", data=line.decode(errors="replace")))
        code = await proc.wait()
        return RunResult(
            exit_code=code, stdout="", stderr="", duration_s=time.monotonic() - started, backend=BACKEND
        )
    finally:
        if proc.returncode is None:
            proc.kill()
            with contextlib.suppress(ProcessLookupError):
                await proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)
