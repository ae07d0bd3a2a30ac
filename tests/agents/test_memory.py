"""The Task Agent's memory: preferences stated in one conversation steer a later one (``agents.memory``).

The graph is compiled with LangGraph's in-memory store here; the same path through the server's
per-tenant store and the HTTP API is ``tests/server/agent_protocol/test_sdk_memory.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from langchain_core.messages import HumanMessage
from langgraph.store.memory import InMemoryStore

from agents.code.request import language_of
from agents.context import Context
from agents.graph import build_graph
from agents.memory import NAMESPACE, stated_preferences
from agents.runtime.embedded import get_embedded_server
from sandbox.base import Sandbox
from tests.agents.scripts import fenced
from tests.support.scripted_openai import CODE, ROUTER, TESTS, Reply, ScriptedOpenAI
from workspace.sql import SqlVersionStore

REVERSE_TS = (
    "function reverse(s: string): string {\n  return s.split('').reverse().join('');\n}\n"
    "console.log(reverse('abc'));\n"
)
REVERSE_PY = "def reverse(s):\n    return s[::-1]\n\nprint(reverse('abc'))\n"
REQUEST = "Write a function that reverses a string and print reverse('abc')"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("I prefer TypeScript", {"language": "typescript"}),
        ("i prefer to write my code in typescript please", {"language": "typescript"}),
        ("My preferred language is Python.", {"language": "python"}),
        ("From now on, use TypeScript", {"language": "typescript"}),
        ("Always write code in Deno", {"language": "typescript"}),
        ("TypeScript is my favourite language", {"language": "typescript"}),
        ("default to python", {"language": "python"}),
        ("Write fizzbuzz in TypeScript", {}),  # a one-off request, not a preference
        ("I want a python script that sorts", {}),
        ("I'd like a Python function", {}),
        ("I prefer tabs", {}),
    ],
)
def test_stated_preferences(text: str, expected: dict[str, str]) -> None:
    assert stated_preferences(text) == expected


def test_language_of_uses_the_preference_only_when_the_request_names_none() -> None:
    assert language_of(REQUEST, [], "typescript") == "typescript"
    assert language_of(REQUEST, [], "python") == "python"
    assert language_of(REQUEST + " in Python", [], "typescript") == "python"
    assert language_of("Fix this:\n```python\nprint(1\n```", [], "typescript") == "python"
    assert language_of("Write rev.py", ["rev.py"], "typescript") == "python"
    assert (
        language_of("Fix it:\ndef f(:\n    pass\nimport os\n", [], "typescript") == "typescript"
    )  # no parse
    assert language_of("Fix it:\nimport os\nprint(os.sep)\n", [], "typescript") == "python"


async def _turn(graph: Any, ctx: Context, text: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    final: dict[str, Any] = {}
    events: list[dict[str, Any]] = []
    async for mode, chunk in graph.astream(
        {"messages": [HumanMessage(text)]}, context=ctx, stream_mode=["custom", "values"]
    ):
        if mode == "custom":
            events.append(chunk)
        else:
            final = chunk
    return final, events


async def test_a_preference_stated_in_one_conversation_sets_the_language_of_the_next(
    llm: ScriptedOpenAI, make_context: Callable[..., Context]
) -> None:
    store = InMemoryStore()
    graph = build_graph().compile(store=store)
    first, _ = await _turn(graph, make_context(), "I prefer TypeScript")
    assert llm.requests == []  # stated by rule, confirmed without the model
    assert first["messages"][-1].content.startswith("Noted: I will write code in TypeScript")
    assert "later ones" in first["messages"][-1].content
    item = await store.aget(NAMESPACE, "language")
    assert item is not None and item.value["value"] == "typescript"
    assert item.value["said"] == "I prefer TypeScript"

    llm.add(Reply(fenced(REVERSE_TS, "typescript"), match=CODE))
    llm.when(TESTS, "```python\nassert True\n```\n")
    second, events = await _turn(graph, make_context(), REQUEST)  # a new conversation: no history
    assert second["preferences"] == {"language": "typescript"}
    assert "TypeScript (Deno)" in llm.requests_matching(CODE)[0]["messages"][0]["content"]
    assert "main.ts" in second["files"] and "main.py" not in second["files"]
    assert events and events[-1]["passed"] is True, events
    assert "cba" in second["messages"][-1].content


async def test_without_a_preference_the_request_is_written_in_python(
    llm: ScriptedOpenAI, make_context: Callable[..., Context]
) -> None:
    graph = build_graph().compile(store=InMemoryStore())
    llm.add(Reply(fenced(REVERSE_PY), match=CODE))
    llm.when(TESTS, "```python\nassert reverse('ab') == 'ba'\n```\n")
    llm.when(ROUTER, '{"next": "answer", "answer": "done"}')
    final, events = await _turn(graph, make_context(), REQUEST)
    assert final["preferences"] == {}
    assert "Python 3" in llm.requests_matching(CODE)[0]["messages"][0]["content"]
    assert "main.py" in final["files"] and events[-1]["passed"] is True


async def test_a_preference_with_a_request_is_kept_and_the_request_served(
    llm: ScriptedOpenAI, make_context: Callable[..., Context]
) -> None:
    store = InMemoryStore()
    graph = build_graph().compile(store=store)
    llm.add(Reply(fenced(REVERSE_TS, "typescript"), match=CODE))
    llm.when(TESTS, "```python\nassert True\n```\n")
    final, events = await _turn(graph, make_context(), "I prefer TypeScript. " + REQUEST)
    assert "main.ts" in final["files"] and events[-1]["passed"] is True
    item = await store.aget(NAMESPACE, "language")
    assert item is not None and item.value["value"] == "typescript"


async def test_without_a_store_the_preference_holds_for_the_conversation_only(
    llm: ScriptedOpenAI, make_context: Callable[..., Context]
) -> None:
    graph = build_graph().compile()
    final, _ = await _turn(graph, make_context(), "From now on, use TypeScript")
    assert final["messages"][-1].content.endswith("in this conversation (no memory store here).")
    assert final["preferences"] == {"language": "typescript"}


@pytest.mark.llm
async def test_the_embedded_model_writes_typescript_after_the_preference(
    store: SqlVersionStore, sandbox: Sandbox
) -> None:
    """The same two conversations with the embedded Qwen model: the second is written in TypeScript."""
    server = await asyncio.to_thread(get_embedded_server)
    ctx = Context(
        model_base_url=server.base_url,
        model_api_key=None,
        model_name=None,
        max_attempts=3,
        max_steps=4,
        require_approval=False,
        generate_tests=False,
        store=store,
        sandbox=sandbox,
    )
    graph = build_graph().compile(store=InMemoryStore())
    first, _ = await _turn(graph, ctx, "I prefer TypeScript")
    assert first["messages"][-1].content.startswith("Noted: I will write code in TypeScript")
    second, events = await _turn(graph, ctx, REQUEST)
    assert "main.ts" in second["files"], second["messages"][-1].content
    attempts = [e for e in events if e.get("type") == "code_attempt"]
    assert attempts and attempts[-1]["passed"] is True, attempts
    assert "cba" in second["messages"][-1].content
