"""How tools (and the agents) reach the version store, the sandbox and web search.

A runtime context may carry ready objects (``store``, ``sandbox``, ``web_search`` attributes, as
``agents.context.Context`` does when the server or a test injects them). When it does not, the
process-wide ones are opened lazily from the packages' own settings, so ``langgraph dev`` runs the
graph with no server around it. Objects opened here are cached per event loop (async connections are
bound to the loop that made them) and closed by :func:`close_services`.

While a server runs in the process (:func:`no_process_services`, entered by its lifespan), a
context without its own store or sandbox is an error, never a fallback to the process-wide
(unscoped, all-tenant) store.
Sandboxes opened here pass the same limit guard as the server's (:class:`sandbox.guard.GuardedSandbox`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from sandbox.base import Sandbox
from sandbox.browser import BrowserPool
from tools.search_backends import DdgsSearch, WebSearchBackend
from workspace.base import VersionStore

__all__ = [
    "MissingServiceError",
    "close_services",
    "get_browsers",
    "get_sandbox",
    "get_store",
    "get_web_search",
    "no_process_services",
]

logger = logging.getLogger(__name__)

_stores: dict[int, VersionStore] = {}
_sandboxes: dict[tuple[int, str], Sandbox] = {}
_browsers: dict[int, BrowserPool] = {}
_lock: asyncio.Lock | None = None
_lock_loop: int | None = None
_servers = 0  # servers running in this process: while any is, process-wide services are refused


class MissingServiceError(RuntimeError):
    """A run inside a server came without the server's object (a bug, never a reason to widen access)."""


@contextlib.contextmanager
def no_process_services() -> Iterator[None]:
    """While open (a server's lifespan), refuse process-wide stores and sandboxes in this process."""
    global _servers
    _servers += 1
    try:
        yield
    finally:
        _servers -= 1


def _attr(context: object | None, name: str) -> Any:
    """Read ``name`` from a dataclass-like or dict context; None when absent."""
    if context is None:
        return None
    if isinstance(context, dict):
        return context.get(name)
    return getattr(context, name, None)


def _guard() -> asyncio.Lock:
    global _lock, _lock_loop
    loop_id = id(asyncio.get_running_loop())
    if _lock is None or _lock_loop != loop_id:
        _lock, _lock_loop = asyncio.Lock(), loop_id
    return _lock


async def get_store(context: object | None = None) -> VersionStore:
    """Return the injected store, or the process-wide one opened from ``WorkspaceSettings``."""
    injected = _attr(context, "store")
    if injected is not None:
        return injected  # type: ignore[no-any-return]
    if _servers:
        raise MissingServiceError("this run has no workspace store in its context (server runs always do)")
    key = id(asyncio.get_running_loop())
    async with _guard():
        if key not in _stores:
            from workspace.config import WorkspaceSettings
            from workspace.sql import SqlVersionStore

            def build() -> SqlVersionStore:  # touches the filesystem: keep it off the event loop
                settings = WorkspaceSettings()
                return SqlVersionStore.from_url(
                    settings.resolved_url(), max_file_bytes=settings.max_file_bytes
                )

            opened = await asyncio.to_thread(build)
            await opened.setup()
            _stores[key] = opened
            logger.info("opened the process-wide version store")
        return _stores[key]


async def get_sandbox(context: object | None = None) -> Sandbox:
    """Return the injected sandbox, or a process-wide one of the context's backend (settings default)."""
    injected = _attr(context, "sandbox")
    if injected is not None:
        return injected  # type: ignore[no-any-return]
    if _servers:
        raise MissingServiceError("this run has no sandbox in its context (server runs always do)")
    from sandbox.config import SandboxSettings
    from sandbox.guard import GuardedSandbox
    from sandbox.registry import open_sandbox

    settings = await asyncio.to_thread(SandboxSettings)
    backend = str(_attr(context, "sandbox_backend") or settings.backend)
    key = (id(asyncio.get_running_loop()), backend)
    async with _guard():
        if key not in _sandboxes:
            # open() probes the host (binaries, cgroups) off the event loop.
            backend_box = await open_sandbox(settings, backend)
            _sandboxes[key] = GuardedSandbox.from_settings(backend_box, settings)
            logger.info("opened the process-wide %s sandbox", backend)
        return _sandboxes[key]


async def get_browsers(context: object | None = None) -> BrowserPool:
    """Return the injected browser pool, or this process's (per loop; it holds no tenant data: each
    session runs in the caller's own guarded sandbox)."""
    injected = _attr(context, "browsers")
    if injected is not None:
        return injected  # type: ignore[no-any-return]
    from sandbox.config import SandboxSettings

    key = id(asyncio.get_running_loop())
    async with _guard():
        if key not in _browsers:
            _browsers[key] = BrowserPool(await asyncio.to_thread(SandboxSettings))
        return _browsers[key]


def get_web_search(context: object | None = None) -> WebSearchBackend:
    """Return the injected web search backend, or DuckDuckGo through ``ddgs``."""
    injected = _attr(context, "web_search")
    if injected is not None:
        return injected  # type: ignore[no-any-return]
    timeout = _attr(context, "search_timeout_s")
    return DdgsSearch(timeout_s=float(timeout) if timeout else 4.0)


async def close_services() -> None:
    """Close the process-wide store and sandboxes opened on the running loop (idempotent)."""
    loop_id = id(asyncio.get_running_loop())
    store = _stores.pop(loop_id, None)
    if store is not None:
        await store.close()
    browsers = _browsers.pop(loop_id, None)
    if browsers is not None:
        await browsers.close()
    for key in [k for k in _sandboxes if k[0] == loop_id]:
        await _sandboxes.pop(key).close()
