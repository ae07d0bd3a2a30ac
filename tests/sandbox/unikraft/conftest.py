"""Fixtures for the Unikraft backend: one fake Unikraft Cloud per session, a fresh backend per test.

After every test the fake must hold no instance and must have refused no request body: a run that
leaves an instance behind, or a request the SDK's models would not accept, fails the test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from sandbox.backends.unikraft import UnikraftSandbox
from sandbox.config import SandboxSettings, UnikraftSettings
from tests.sandbox.unikraft.fake_server import FakeServer, fake_unikraft_cloud


@pytest.fixture(scope="session")
def fake_server() -> Iterator[FakeServer]:
    with fake_unikraft_cloud() as server:
        yield server


@pytest.fixture
def fake(fake_server: FakeServer) -> Iterator[FakeServer]:
    """The session's fake, reset to a clean platform before and checked after the test."""
    state = fake_server.state
    state.boot_delay_s, state.boot_time_us = 0.0, 1234
    state.quota_live_memory_mb = state.quota_instances = None
    fake_server.cloud.failures.clear()
    fake_server.cloud.rejected.clear()
    yield fake_server
    rejected = list(fake_server.cloud.rejected)
    left = fake_server.instance_names()
    fake_server.cloud.failures.clear()
    assert not rejected, f"the fake refused request bodies: {rejected}"
    assert not left, f"instances left in the fake: {left}"


def ukc_settings(fake: FakeServer, **overrides: Any) -> SandboxSettings:
    """Settings whose ``unikraft`` section points at ``fake`` (``overrides`` win)."""
    return SandboxSettings(unikraft=UnikraftSettings(**{**fake.settings_env(), **overrides}))


@pytest.fixture
async def ukc(fake: FakeServer) -> AsyncIterator[UnikraftSandbox]:
    box = await UnikraftSandbox(ukc_settings(fake)).open()
    async with box:
        yield box
