"""Fixtures: server processes (sample graph; real agent graph on the scripted model) and SDK clients."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient

from tests.server.agent_protocol.support import API_KEY, OTHER_KEY, ServerProcess, fresh_database
from tests.support.scripted_openai import CODE, ROUTER, TESTS, Reply, ScriptedOpenAI

SAMPLE_GRAPH = "tests.server.agent_protocol.sample_graphs:graph"
QUEUE_SIZE = 16
CLIENT_MODELS = ("small", "large")
CRON_CAP = 8


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def sample_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """The real server (uvicorn, own process) serving the timing-controlled sample graph.

    Once on SQLite (events in memory only), once on Postgres (the run queue with ``NOTIFY`` and
    events written to the database). Two tenants (``default`` and ``other``); the operator offers
    two model names and tiers up to ``medium``; crons may fire every 2 s, ``CRON_CAP`` per tenant.
    """
    env = {
        "AGENTIC_GRAPH_REF": SAMPLE_GRAPH,
        "AGENTIC_SUBSCRIBER_QUEUE_SIZE": str(QUEUE_SIZE),
        "AGENTIC_HEARTBEAT_S": "1",
        "AGENTIC_API_KEYS": f"{API_KEY},other:{OTHER_KEY}",
        "AGENTIC_CLIENT_MODELS": ",".join(CLIENT_MODELS),
        "AGENTIC_CLIENT_MAX_TIER": "medium",
        "AGENTIC_CLIENT_MAX_ATTEMPTS": "4",
        # crons: fires every 2 s allowed (so a test sees several), at most CRON_CAP per tenant
        "AGENTIC_CRON_MIN_INTERVAL_S": "2",
        "AGENTIC_CRON_MAX_PER_TENANT": str(CRON_CAP),
    }
    if request.param == "postgres":
        env["AGENTIC_DATABASE_URL"] = fresh_database(request.getfixturevalue("postgres_url"))
    with ServerProcess(tmp_path_factory.mktemp("ap-sample"), env) as server:
        yield server


@pytest.fixture
async def client(sample_server: ServerProcess) -> AsyncIterator[LangGraphClient]:
    """A langgraph-sdk client with the server's API key."""
    c = get_client(url=sample_server.url, api_key=sample_server.api_key)
    try:
        yield c
    finally:
        await c.aclose()


@pytest.fixture
async def other_client(sample_server: ServerProcess) -> AsyncIterator[LangGraphClient]:
    """A langgraph-sdk client of another tenant (``other``) of the same server."""
    c = get_client(url=sample_server.url, api_key=OTHER_KEY)
    try:
        yield c
    finally:
        await c.aclose()


@pytest.fixture(scope="session")
def scripted_llm() -> Iterator[ScriptedOpenAI]:
    """The scripted OpenAI-compatible model the agent server talks to."""
    with ScriptedOpenAI() as llm:
        yield llm


@pytest.fixture(scope="session")
def agent_server(
    tmp_path_factory: pytest.TempPathFactory, scripted_llm: ScriptedOpenAI
) -> Iterator[ServerProcess]:
    """The real server serving the real agent graph, pointed at the scripted model."""
    env = {"OPENAI_BASE_URL": scripted_llm.url, "OPENAI_API_KEY": "scripted", "AGENTIC_MODEL": "scripted"}
    with ServerProcess(tmp_path_factory.mktemp("ap-agent"), env) as server:
        yield server


@pytest.fixture
async def agent_client(agent_server: ServerProcess) -> AsyncIterator[LangGraphClient]:
    """A langgraph-sdk client of the agent server."""
    c = get_client(url=agent_server.url, api_key=agent_server.api_key)
    try:
        yield c
    finally:
        await c.aclose()


@pytest.fixture
def code_script(scripted_llm: ScriptedOpenAI) -> ScriptedOpenAI:
    """Script one coding turn: route to code, write hello.py-like code, then answer."""
    scripted_llm.reset()
    scripted_llm.add(Reply('{"next": "code", "task": "write a program that prints hello"}', match=ROUTER))
    scripted_llm.when(ROUTER, '{"next": "answer", "answer": "Done: the program prints hello."}')
    scripted_llm.when(CODE, "Here it is:\n```python\nprint('hello')\n```\n")
    scripted_llm.when(TESTS, "```python\nassert True\n```\n")
    return scripted_llm
