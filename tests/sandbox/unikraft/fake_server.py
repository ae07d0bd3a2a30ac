"""Run the fake Unikraft Cloud on 127.0.0.1 in a thread of its own (uvicorn + Starlette).

Why a thread with its own event loop: the backend under test and the fake then share no loop, so
a blocking mistake on either side shows, and the bench can count the client thread's CPU time
alone. Tests reach the fake's state through :meth:`FakeServer.call` (run on the fake's loop) or
read plain counters.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
import tempfile
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import uvicorn

from tests.sandbox.unikraft.fake_api import FakeCloud
from tests.sandbox.unikraft.fake_state import FakeCloudState

T = TypeVar("T")

IMAGES = {"base": "agentic/base:1", "datascience": "agentic/datascience:1"}
PLUGIN_IMAGE = "plugins/sandbox:latest"


class FakeServer:
    """A started fake: its URL, token, state, and a way to act on it from the test's thread."""

    def __init__(self) -> None:
        self.token = f"fake-{secrets.token_hex(8)}"
        self.root = Path(tempfile.mkdtemp(prefix="ukc-fake-"))
        self.state = FakeCloudState(self.root)
        self.cloud = FakeCloud(self.state, self.token)
        for ref in (*IMAGES.values(), PLUGIN_IMAGE):
            self.state.push_image(ref)
        self.loop = asyncio.new_event_loop()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    def start(self) -> None:
        config = uvicorn.Config(self.cloud, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        ready = threading.Event()

        def serve() -> None:
            asyncio.set_event_loop(self.loop)
            assert self._server is not None
            self.loop.create_task(self.state.scale_to_zero_loop())
            serving = self.loop.create_task(self._server.serve())

            async def wait_started() -> None:
                while not self._server.started:  # type: ignore[union-attr]
                    await asyncio.sleep(0.01)
                ready.set()

            self.loop.create_task(wait_started())
            self.loop.run_until_complete(serving)
            self.loop.run_until_complete(self.state.close())
            pending = asyncio.all_tasks(self.loop)
            for task in pending:
                task.cancel()
            self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self.loop.close()

        self._thread = threading.Thread(target=serve, name="fake-unikraft-cloud", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the fake Unikraft Cloud did not start")
        port = self._server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(30)
        shutil.rmtree(self.root, ignore_errors=True)

    async def call(self, work: Callable[[], Awaitable[T]]) -> T:
        """Run ``work()`` on the fake's loop and await its result from the caller's loop."""

        async def run() -> T:
            return await work()

        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(run(), self.loop))

    def settings_env(self) -> dict[str, Any]:
        """Settings that point the backend at this fake."""
        return {
            "base_url": self.url,
            "control_plane_url": f"{self.url}/controlplane",
            "metro": self.state.metro,
            "token": self.token,
            "images": dict(IMAGES),
            "plugin_image": PLUGIN_IMAGE,
            "python_command": ["/usr/bin/python3", "-s", "-B"],
            "app_edge_url": self.url,
            "allow_direct_egress": True,
            "trust_env": False,
            "reap_interval_s": 0,
        }

    # --- inspection (plain reads of the fake's state; good enough between requests) -----------

    def instance_names(self) -> list[str]:
        return sorted(i.name for i in list(self.state.instances.values()))

    def calls_since(self, mark: int) -> list[tuple[str, str]]:
        return [(method, path) for _, method, path in self.cloud.calls[mark:]]

    def mark(self) -> int:
        return len(self.cloud.calls)


@contextlib.contextmanager
def fake_unikraft_cloud() -> Iterator[FakeServer]:
    """A running fake for the ``with`` block; everything it started is gone afterwards."""
    server = FakeServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()
