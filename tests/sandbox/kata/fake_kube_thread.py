"""The fake API server (:class:`FakeKube`) in a thread with its own event loop, for synchronous tests.

Why: a test that drives the real platform server (uvicorn in its own thread, see
``tests/server/support.LiveServer``) with the Kata backend needs the fake cluster running beside
it, and the test body itself is synchronous (httpx, websockets). The fake keeps its loop to
itself; the test reads its state through :meth:`FakeKubeThread.call`, on that loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import TypeVar

from tests.sandbox.kata.fake_kube import FakeKube

T = TypeVar("T")


class FakeKubeThread:
    """``with FakeKubeThread() as fake``: a started :class:`FakeKube` and a kubeconfig for it."""

    def __init__(self, kubeconfig: Path) -> None:
        self.kube = FakeKube()
        self.kubeconfig = kubeconfig
        self.loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._serve, name="fake-kube", daemon=True)
        self._started: Future[None] = Future()

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def main() -> None:
            self._stop = asyncio.Event()
            try:
                async with self.kube:
                    self.kube.kubeconfig(self.kubeconfig)
                    self._started.set_result(None)
                    await self._stop.wait()
            except BaseException as exc:
                if not self._started.done():
                    self._started.set_exception(exc)
                raise

        try:
            self.loop.run_until_complete(main())
        finally:
            self.loop.close()

    def __enter__(self) -> FakeKubeThread:
        self._thread.start()
        self._started.result(timeout=30)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    def call(self, read: Callable[[FakeKube], T], timeout: float = 30) -> T:
        """``read(kube)`` on the fake's loop (its state is that loop's alone); its result here."""

        async def run() -> T:
            return read(self.kube)

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout)
