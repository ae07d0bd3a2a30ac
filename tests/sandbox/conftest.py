"""Fixtures for the sandbox tests: one ``sandbox`` per backend (the leftovers check is in tests/conftest.py).

The backends are those of :data:`sandbox.registry.BACKENDS`. A backend that cannot run here says so
in its preflight (or raises ``SandboxUnavailableError`` from ``open()``); its tests are then skipped
with that reason, which says what to install or set (Unikraft: a token; it has its own suite against
a fake of the platform in ``tests/sandbox/unikraft``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from sandbox.base import Sandbox
from sandbox.config import GVisorSettings, LocalSettings, SandboxSettings
from sandbox.errors import SandboxUnavailableError
from sandbox.registry import BACKENDS, create_sandbox, verdict


@pytest.fixture(scope="session")
def sandbox_settings() -> SandboxSettings:
    """Settings for the suite: the real data dir (built library sets), small cgroup pools."""
    return SandboxSettings(local=LocalSettings(cgroup_pool_size=2), gvisor=GVisorSettings(cgroup_pool_size=2))


@pytest.fixture(scope="session", params=sorted(BACKENDS))
async def sandbox(
    request: pytest.FixtureRequest, sandbox_settings: SandboxSettings
) -> AsyncIterator[Sandbox]:
    """One open sandbox per backend for the whole session (skipped with the reason when unavailable)."""
    box = create_sandbox(sandbox_settings, request.param)
    problem = verdict(await box.preflight())
    if problem is not None:
        pytest.skip(f"backend {request.param!r} unavailable: {problem}")
    try:
        await box.open()
    except SandboxUnavailableError as exc:
        pytest.skip(f"backend {request.param!r} unavailable: {exc}")
    async with box:
        yield box
