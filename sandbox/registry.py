"""The sandbox backends by name: which class each is, opening one, and what this host can run.

A backend registers as ``name -> "module:Class"`` in :data:`BACKENDS` (or, from outside this
package, with :func:`register_backend`); its module is imported only when the backend is asked for,
so a host without runsc, or a backend with heavy imports (the Kubernetes client), costs nothing
until used. Every backend class takes the :class:`~sandbox.config.SandboxSettings` as its only
argument and does no I/O until ``open``; its ``preflight`` says what it needs, each piece with a fix.
Adding a backend: its module in :mod:`sandbox.backends`, one line here, its settings section in
:mod:`sandbox.config`, and the shared conformance suite.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import Callable, Iterable

from sandbox.base import Check, Sandbox
from sandbox.config import SandboxSettings
from sandbox.errors import SandboxError, SandboxUnavailableError
from sandbox.warm.base import Prestartable
from sandbox.warm.pool import WarmPool

__all__ = [
    "BACKENDS",
    "BackendFactory",
    "available_backends",
    "backend_class",
    "create_sandbox",
    "open_sandbox",
    "preflight",
    "register_backend",
    "verdict",
]

logger = logging.getLogger(__name__)

BackendFactory = Callable[[SandboxSettings], Sandbox]
"""A backend class: built from the settings alone, with no I/O."""

BACKENDS: dict[str, str | BackendFactory] = {
    "local": "sandbox.backends.bubblewrap:BubblewrapSandbox",
    "gvisor": "sandbox.backends.gvisor:GVisorSandbox",
    "unikraft": "sandbox.backends.unikraft:UnikraftSandbox",
    "kata": "sandbox.backends.kata:KataBackend",
}
"""Backend name -> ``"module:Class"`` (imported when first asked for) or the class itself."""


def register_backend(name: str, backend: str | BackendFactory) -> None:
    """Make ``backend`` (a class, or ``"module:Class"``) available as ``name``; replaces one of that name."""
    BACKENDS[name] = backend


def backend_class(name: str) -> BackendFactory:
    """The class registered as ``name`` (its module is imported now).

    Raises:
        SandboxError: no backend has that name (the message lists them).
        SandboxUnavailableError: its module cannot be imported here (a missing dependency).
    """
    try:
        target = BACKENDS[name]
    except KeyError:
        raise SandboxError(
            f"unknown sandbox backend {name!r}; known backends: {', '.join(sorted(BACKENDS))}"
        ) from None
    if not isinstance(target, str):
        return target
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise SandboxUnavailableError(f"sandbox backend {name!r} is not installed ({exc})") from exc
    factory: BackendFactory = getattr(module, class_name)
    return factory


def create_sandbox(settings: SandboxSettings, backend: str | None = None) -> Sandbox:
    """A new, unopened backend (``backend`` or ``settings.backend``): cheap, no I/O.

    Raises:
        SandboxError: the name is not a known backend.
        SandboxUnavailableError: its module cannot be imported here.
    """
    return backend_class(backend or settings.backend)(settings)


async def open_sandbox(settings: SandboxSettings, backend: str | None = None) -> Sandbox:
    """A new backend (``backend`` or ``settings.backend``), opened; the caller closes it.

    When ``settings.warm.enabled`` and the backend can start sandboxes ahead of their run
    (:class:`~sandbox.warm.base.Prestartable`), it comes with the warm pool in front
    (:class:`~sandbox.warm.pool.WarmPool`, same contract); ``create_sandbox`` never adds it.

    Nothing here blocks the event loop: the backend's module is imported in a worker thread (an
    import may do I/O: ``pyseccomp`` runs ``ldconfig``), and its ``open`` keeps its own I/O off the loop.

    Raises:
        SandboxError: the name is not a known backend.
        SandboxUnavailableError: the backend cannot run here (the message says what to fix).
    """
    created = await asyncio.to_thread(create_sandbox, settings, backend)  # importing may do I/O
    if settings.warm.enabled and isinstance(created, Prestartable):
        created = WarmPool(created, settings)
    sandbox = await created.open()
    logger.info(
        "opened sandbox backend %s%s", sandbox.name, " (warm pool)" if isinstance(sandbox, WarmPool) else ""
    )
    return sandbox


async def preflight(settings: SandboxSettings, names: Iterable[str] | None = None) -> dict[str, list[Check]]:
    """Each backend's preflight (all registered ones by default), run at once; opens nothing.

    A backend whose module cannot be imported answers one failed check saying so.
    """
    chosen = list(names) if names is not None else list(BACKENDS)

    async def one(name: str) -> list[Check]:
        try:
            backend = await asyncio.to_thread(create_sandbox, settings, name)  # importing may do I/O
            return await backend.preflight()
        except SandboxError as exc:  # its module cannot be imported here
            fix = "install the backend's dependencies"
            return [Check(name="backend", ok=False, detail=str(exc), fix=fix)]

    results = await asyncio.gather(*(one(name) for name in chosen))
    return dict(zip(chosen, results, strict=True))


def verdict(checks: Iterable[Check]) -> str | None:
    """None when every required check passed, else the first failure's summary (detail and fix)."""
    return next((c.summary() for c in checks if c.required and not c.ok), None)


async def available_backends(
    settings: SandboxSettings, names: Iterable[str] | None = None
) -> dict[str, str | None]:
    """Backend name (all registered ones by default) -> None if usable here, else the first reason
    with its fix hint (``/healthz``)."""
    return {name: verdict(checks) for name, checks in (await preflight(settings, names)).items()}
