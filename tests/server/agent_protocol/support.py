"""A real server process for the Agent Protocol tests: ``uvicorn --factory server.app:create_app``.

A separate process (not a thread) so the graph's environment (model endpoint, graph ref, queue
sizes) is exactly what a user would set, and so a client disconnect is a real socket close.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from types import TracebackType

import httpx
from langgraph_sdk.client import LangGraphClient

__all__ = ["API_KEY", "OTHER_KEY", "ServerProcess", "free_port", "fresh_database", "until_running"]

API_KEY = "ap-test-" + uuid.uuid4().hex
OTHER_KEY = "ap-other-" + uuid.uuid4().hex  # tenant "other" of servers that list it
ROOT = Path(__file__).resolve().parents[3]


async def until_running(sdk: LangGraphClient, thread_id: str, run_id: str, within_s: float = 30.0) -> None:
    """Return once the run is executing (a run created in the background starts a moment later)."""
    deadline = time.monotonic() + within_s
    while (await sdk.runs.get(thread_id, run_id))["status"] != "running":
        assert time.monotonic() < deadline, f"run {run_id} did not start within {within_s:.0f} s"
        await asyncio.sleep(0.05)


def fresh_database(postgres_url: str, prefix: str = "ap_") -> str:
    """A new empty database in the session's Postgres cluster (no other test's runs in its queue)."""
    import psycopg

    name = prefix + uuid.uuid4().hex[:12]
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return postgres_url.rsplit("/", 1)[0] + "/" + name


def free_port() -> int:
    """A free loopback TCP port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """Start the server with ``env`` added to the environment; ``url`` once it answers /healthz."""

    def __init__(
        self, data_dir: Path, env: dict[str, str] | None = None, *, api_key: str | None = API_KEY
    ) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = data_dir / "server.log"
        self.api_key = api_key
        self._env = {
            **os.environ,
            "AGENTIC_DATA_DIR": str(data_dir),
            "AGENTIC_DATABASE_URL": "",
            "DATABASE_URL": "",
            "PYTHONPATH": str(ROOT),
            **({"AGENTIC_API_KEYS": api_key} if api_key else {}),
            **(env or {}),
        }
        for key in ("AGENTIC_DATABASE_URL", "DATABASE_URL"):
            if not self._env[key]:
                del self._env[key]
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> ServerProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")  # a restarted server appends to the same log
        self._proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                "server.app:create_app",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            env=self._env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code < 500:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.__exit__(None, None, None)
        raise RuntimeError(f"server did not start in 90 s:\n{self.log()}")

    @property
    def pid(self) -> int:
        """The server's process id (the sample graph reports it in its custom events)."""
        assert self._proc is not None
        return self._proc.pid

    def kill(self) -> None:
        """``kill -9`` the server: no shutdown code runs (as after a crash or a lost machine)."""
        assert self._proc is not None
        self._proc.kill()
        self._proc.wait()

    def stop(self) -> None:
        """SIGTERM, as a service manager or a rolling deploy does: the shutdown code runs."""
        assert self._proc is not None
        self._proc.terminate()
        self._proc.wait(timeout=30)

    def log(self) -> str:
        """The server's output so far (for failure messages)."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def diagnose(self, lines: int = 400) -> str:
        """The end of the server's log after it dumped its threads and asyncio tasks (a test failed).

        Why: a run stuck in a server process shows nothing in the test's own traceback; the
        server's stacks (``server/stackdump.py``) say what it waits on.
        """
        if self._proc is not None and self._proc.poll() is None:
            for sig in (signal.SIGUSR1, signal.SIGUSR2):
                self._proc.send_signal(sig)
                time.sleep(0.5)  # written by the server asynchronously
        return "\n".join(self.log().splitlines()[-lines:])

    @property
    def headers(self) -> dict[str, str]:
        """Auth headers for raw HTTP clients."""
        return {"X-API-Key": self.api_key} if self.api_key else {}

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
