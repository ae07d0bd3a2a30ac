"""Fixtures for the tool tests: a real store and the real local sandbox, reached through a context."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sandbox.base import Sandbox
from sandbox.config import SandboxSettings
from sandbox.registry import create_sandbox
from workspace.sql import SqlVersionStore


@dataclass
class ToolContext:
    """The attributes tools look for on a runtime context."""

    store: Any
    sandbox: Any
    web_search: Any = None


@pytest.fixture(scope="session")
async def tool_store(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[SqlVersionStore]:
    path: Path = tmp_path_factory.mktemp("tools-store") / "store.db"
    async with SqlVersionStore.from_url(f"sqlite+aiosqlite:///{path}") as opened:
        await opened.setup()
        yield opened


@pytest.fixture(scope="session")
async def tool_sandbox() -> AsyncIterator[Sandbox]:
    async with create_sandbox(SandboxSettings(), "local") as opened:
        yield opened
