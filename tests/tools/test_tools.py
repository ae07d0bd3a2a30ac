"""The LangChain tools, called the way a tool-calling model calls them: through a ToolNode in a graph."""

from __future__ import annotations

import time
from typing import Annotated, Any, TypedDict

import pytest
from langchain_core.messages import AIMessage, AnyMessage, ToolMessage
from langgraph.graph import START, StateGraph, add_messages
from langgraph.prebuilt import ToolNode

import tools
from agents.state import merge_files
from sandbox.base import Sandbox
from tests.tools.conftest import ToolContext
from tools.search_backends import DdgsSearch, LocalCorpusSearch, SearchUnavailableError, WebResult
from workspace.sql import SqlVersionStore


class ToolState(TypedDict, total=False):
    messages: Annotated[list[AnyMessage], add_messages]
    workspace_id: str | None
    files: Annotated[dict[str, str], merge_files]


class Harness:
    """A one-node graph around a ToolNode; keeps the state between calls like the agent graph would."""

    def __init__(self, ctx: ToolContext) -> None:
        self.ctx = ctx
        self.graph = (
            StateGraph(ToolState).add_node("tools", ToolNode(tools.TOOLS)).add_edge(START, "tools").compile()
        )
        self.state: dict[str, Any] = {"messages": [], "workspace_id": None, "files": {}}
        self.calls = 0

    async def call(self, name: str, **args: Any) -> str:
        self.calls += 1
        ask = AIMessage("", tool_calls=[{"name": name, "args": args, "id": f"call-{self.calls}"}])
        self.state = await self.graph.ainvoke({**self.state, "messages": [ask]}, context=self.ctx)
        reply = self.state["messages"][-1]
        assert isinstance(reply, ToolMessage)
        return str(reply.content)


@pytest.fixture
def harness(tool_store: SqlVersionStore, tool_sandbox: Sandbox) -> Harness:
    corpus = LocalCorpusSearch(
        [WebResult(title="Deno", url="https://deno.example", snippet="Deno runs TypeScript")]
    )
    return Harness(ToolContext(store=tool_store, sandbox=tool_sandbox, web_search=corpus))


def test_tools_are_exported_with_docstrings() -> None:
    names = [t.name for t in tools.TOOLS]
    assert names == [
        "write_file",
        "read_file",
        "list_files",
        "file_history",
        "diff",
        "rollback",
        "run_code",
        "web_search",
        "search_workspace",
    ]
    for t in tools.TOOLS:
        assert t.description and "runtime" not in t.tool_call_schema.model_json_schema()["properties"]


async def test_file_tools_version_everything(harness: Harness, tool_store: SqlVersionStore) -> None:
    assert "Error" in await harness.call("list_files")  # no workspace yet: readable, not a crash
    saved = await harness.call("write_file", path="main.py", content="print('one')\n", message="first")
    assert saved.startswith("Saved main.py version 1")
    workspace_id = harness.state["workspace_id"]
    assert workspace_id and harness.state["files"]["main.py"]
    await harness.call("write_file", path="main.py", content="print('two')\n")
    v2 = harness.state["files"]["main.py"]
    assert "print('two')" in await harness.call("read_file", path="main.py")
    assert "print('one')" in await harness.call("read_file", path="main.py", version=1)
    assert "main.py (version 2" in await harness.call("list_files")
    history = await harness.call("file_history", path="main.py")
    assert "version 1" in history and "first" in history and "version 2" in history
    assert "+print('two')" in await harness.call("diff", path="main.py", from_version=1, to_version=2)
    restored = await harness.call("rollback", path="main.py", version=1)
    assert "Restored version 1 as main.py version 3" in restored
    assert harness.state["files"]["main.py"] != v2
    assert (await tool_store.read(workspace_id, "main.py")).content == "print('one')\n"


async def test_run_code_and_search_workspace(harness: Harness) -> None:
    await harness.call("write_file", path="helper.py", content="WORD = 'pelican'\n")
    await harness.call("write_file", path="main.py", content="from helper import WORD\nprint(WORD * 2)\n")
    ran = await harness.call("run_code", path="main.py")
    assert "Run succeeded: exit code 0" in ran and "pelicanpelican" in ran
    await harness.call("write_file", path="bad.py", content="1 / 0\n")
    failed = await harness.call("run_code", path="bad.py")
    assert "Run failed: exit code 1" in failed and "ZeroDivisionError" in failed
    found = await harness.call("search_workspace", query="pelican")
    assert "helper.py" in found
    assert "Error" in await harness.call("run_code", path="notes.txt")


async def test_errors_are_readable(harness: Harness) -> None:
    await harness.call("write_file", path="a.py", content="x = 1\n")
    missing = await harness.call("read_file", path="nope.py")
    assert missing.startswith("Error:") and "list_files" in missing and "Traceback" not in missing
    bad = await harness.call("write_file", path="../escape.py", content="x")
    assert bad.startswith("Error:") and "Traceback" not in bad


async def test_web_search_tool(harness: Harness) -> None:
    found = await harness.call("web_search", query="TypeScript runtime")
    assert "[1] Deno - https://deno.example" in found


class _Offline:
    name = "offline"

    async def search(self, query: str, *, max_results: int = 5) -> list[WebResult]:
        raise SearchUnavailableError("search unavailable: no network")


async def test_web_search_unavailable_is_a_message(harness: Harness) -> None:
    harness.ctx.web_search = _Offline()
    found = await harness.call("web_search", query="anything")
    assert found.startswith("search unavailable: no network")


async def test_ddgs_fails_fast_when_offline() -> None:
    backend = DdgsSearch(timeout_s=2.0)
    started = time.monotonic()
    try:
        results = await backend.search("langgraph checkpoint", max_results=2)
    except SearchUnavailableError as exc:
        assert "search unavailable" in str(exc)
    else:  # online machines may answer; then results carry sources
        assert all(r.url for r in results)
    assert time.monotonic() - started < 3.5


async def test_local_corpus_ranks_by_terms() -> None:
    corpus = LocalCorpusSearch(
        [
            WebResult(title="A", url="u1", snippet="cats and dogs"),
            WebResult(title="Dogs", url="u2", snippet="dogs dogs"),
        ]
    )
    assert [r.url for r in await corpus.search("dogs")] == ["u2", "u1"]
    assert await corpus.search("zebra") == []


async def test_a_server_process_never_opens_the_unscoped_store() -> None:
    from tools.services import MissingServiceError, get_sandbox, get_store, no_process_services

    with no_process_services():
        with pytest.raises(MissingServiceError, match="workspace store"):
            await get_store({"store": None})
        with pytest.raises(MissingServiceError, match="sandbox"):
            await get_sandbox({"sandbox": None, "sandbox_backend": "local"})
