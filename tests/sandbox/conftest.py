"""Fixtures for the sandbox tests: one ``sandbox`` per backend (the leftovers check is in tests/conftest.py).

Backends register in :data:`BACKENDS` (name -> constructor taking ``SandboxSettings``). A backend
that cannot run on this host raises ``SandboxUnavailableError`` from its constructor; its tests
are then skipped with that message (which says what to install).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from sandbox.base import Sandbox
from sandbox.bubblewrap import BubblewrapSandbox
from sandbox.config import SandboxSettings
from sandbox.errors import SandboxUnavailableError
from sandbox.gvisor import GVisorSandbox

BACKENDS: dict[str, Callable[[SandboxSettings], Sandbox]] = {
    "local": BubblewrapSandbox,
    # Raises SandboxUnavailableError ("runsc not found; fix: apt-get install runsc") when runsc is missing.
    "gvisor": GVisorSandbox,
}


@pytest.fixture(scope="session")
def sandbox_settings() -> SandboxSettings:
    """Settings for the suite: the real data dir (built library sets), a small cgroup pool."""
    return SandboxSettings(cgroup_pool_size=2)


@pytest.fixture(scope="session", params=sorted(BACKENDS))
async def sandbox(
    request: pytest.FixtureRequest, sandbox_settings: SandboxSettings
) -> AsyncIterator[Sandbox]:
    """One sandbox per backend for the whole session (skipped with the reason when unavailable)."""
    try:
        box = BACKENDS[request.param](sandbox_settings)
    except SandboxUnavailableError as exc:
        pytest.skip(f"backend {request.param!r} unavailable: {exc}")
    async with box:
        yield box
