"""Fixtures for the sandbox tests: one ``sandbox`` per backend (the leftovers check is in tests/conftest.py).

The backends are those of :data:`sandbox.registry.BACKENDS`, and the host ones once more with the
warm pool in front (``local+warm``, ``gvisor+warm``, and ``local+warm+fork`` with forked warm
sandboxes): there every run a warm sandbox can serve waits
until its key has one idle and is served by it (:class:`WaitingPool`), so the shared suites check
the warm path, not a mix of warm and cold runs. A backend that cannot run here says so in its
preflight (or raises ``SandboxUnavailableError`` from ``open()``); its tests are then skipped with
that reason, which says what to install or set (Unikraft: a token; it has its own suite against a
fake of the platform in ``tests/sandbox/unikraft``).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest

from sandbox.base import OutputChunk, RunRequest, RunResult, Sandbox
from sandbox.config import GVisorSettings, LocalSettings, SandboxSettings
from sandbox.errors import SandboxUnavailableError
from sandbox.registry import BACKENDS, create_sandbox, verdict
from sandbox.warm import WarmPool

WARM_BACKENDS = ("local", "gvisor")


class WaitingPool(WarmPool):
    """The warm pool, each run first waiting until its key has an idle sandbox (tests only)."""

    async def run(self, request: RunRequest) -> RunResult:
        await self.ready(request)
        return await super().run(request)

    async def stream(self, request: RunRequest) -> AsyncIterator[OutputChunk]:
        await self.ready(request)
        # Closed with this one: a consumer leaving early must end the run now, not when the
        # inner generator is collected.
        async with contextlib.aclosing(cast(Any, super().stream(request))) as chunks:
            async for chunk in chunks:
                yield chunk


@pytest.fixture(scope="session")
def sandbox_settings() -> SandboxSettings:
    """Settings for the suite: the real data dir (built library sets), small cgroup pools."""
    return SandboxSettings(local=LocalSettings(cgroup_pool_size=2), gvisor=GVisorSettings(cgroup_pool_size=2))


@pytest.fixture(
    scope="module",
    params=[*sorted(BACKENDS), *(f"{name}+warm" for name in WARM_BACKENDS), "local+warm+fork"],
)
async def sandbox(
    request: pytest.FixtureRequest, sandbox_settings: SandboxSettings
) -> AsyncIterator[Sandbox]:
    """One open sandbox per backend (and warm pool) per test module; skipped, saying why, if unavailable.

    Why per module (opening one costs 0.3-0.5 s): a warm pool keeps idle sandboxes, whose processes
    other modules' checks for leftover processes would otherwise count as theirs.
    """
    name, _, warm = str(request.param).partition("+")
    if warm:  # whole warm sandboxes, or forked ones (sandbox.host.warm_fork)
        fork = warm.endswith("fork")
        sandbox_settings = sandbox_settings.model_copy(
            update={"warm": sandbox_settings.warm.model_copy(update={"fork": fork})}
        )
    box: Sandbox = create_sandbox(sandbox_settings, name)
    problem = verdict(await box.preflight())
    if problem is not None:
        pytest.skip(f"backend {name!r} unavailable: {problem}")
    if warm:
        box = WaitingPool(box, sandbox_settings)
    try:
        await box.open()
    except SandboxUnavailableError as exc:
        pytest.skip(f"backend {name!r} unavailable: {exc}")
    async with box:
        yield box
        if isinstance(box, WarmPool) and request.module.__name__.endswith("test_conformance"):
            assert box.stats().hits > 0, box.stats()  # the suite ran on warm sandboxes
