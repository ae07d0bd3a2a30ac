"""Fixtures for the agent tests: the scripted model server, a real store and the real local sandbox."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agents.context import Context
from sandbox.base import Sandbox
from sandbox.config import SandboxSettings
from sandbox.registry import create_sandbox
from tests.support.scripted_openai import ScriptedOpenAI
from tools.search_backends import LocalCorpusSearch, WebResult
from workspace.sql import SqlVersionStore

CORPUS = [
    WebResult(
        title="LangGraph overview",
        url="https://docs.example/langgraph",
        snippet="LangGraph builds stateful agents as graphs with checkpoints and human-in-the-loop "
        "interrupts.",
    ),
    WebResult(
        title="Bubblewrap sandboxing",
        url="https://docs.example/bwrap",
        snippet="bubblewrap creates unprivileged containers with namespaces.",
    ),
]


@pytest.fixture(scope="session")
def llm_server() -> Iterator[ScriptedOpenAI]:
    """One scripted OpenAI-compatible server for the session."""
    with ScriptedOpenAI() as server:
        yield server


@pytest.fixture
def llm(llm_server: ScriptedOpenAI) -> Iterator[ScriptedOpenAI]:
    """The scripted server with an empty script for this test."""
    llm_server.reset()
    yield llm_server
    llm_server.reset()


@pytest.fixture(scope="session")
async def store(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[SqlVersionStore]:
    """A real SQLite-backed version store."""
    path: Path = tmp_path_factory.mktemp("agents-store") / "store.db"
    async with SqlVersionStore.from_url(f"sqlite+aiosqlite:///{path}") as opened:
        await opened.setup()
        yield opened


@pytest.fixture(scope="session")
async def sandbox() -> AsyncIterator[Sandbox]:
    """The real local (bubblewrap) sandbox."""
    async with create_sandbox(SandboxSettings(), "local") as opened:
        yield opened


@pytest.fixture
def make_context(llm: ScriptedOpenAI, store: SqlVersionStore, sandbox: Sandbox) -> Callable[..., Context]:
    """Build a Context pointed at the scripted model with the real store and sandbox injected."""

    def make(**overrides: Any) -> Context:
        values: dict[str, Any] = {
            "model_base_url": llm.url,
            "model_api_key": "test-key",
            "model_name": "scripted",
            "max_attempts": 3,
            "max_steps": 6,
            "require_approval": False,
            "generate_tests": True,
            "store": store,
            "sandbox": sandbox,
            "web_search": LocalCorpusSearch(CORPUS),
            "search_read_pages": 0,  # the corpus is not on loopback (tests that read pages serve them)
        }
        values.update(overrides)
        return Context(**values)

    return make
