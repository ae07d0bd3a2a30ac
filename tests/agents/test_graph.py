"""The whole graph against the scripted model, the real store and the real local sandbox."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from langchain_core.messages import HumanMessage

from agents.context import Context
from agents.graph import graph
from tests.agents.scripts import BROKEN_ADD, CHECKS, FIXED_ADD, answer, fenced, route
from tests.support.scripted_openai import CODE, REPAIR, RESPOND, ROUTER, SUMMARY, TESTS, Reply, ScriptedOpenAI
from workspace.sql import SqlVersionStore


async def run_graph(ctx: Context, text: str, **state: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Stream one turn; return the final values and the custom events."""
    events: list[dict[str, Any]] = []
    final: dict[str, Any] = {}
    async for mode, chunk in graph.astream(
        {"messages": [HumanMessage(text)], **state}, context=ctx, stream_mode=["custom", "values"]
    ):
        if mode == "custom":
            events.append(chunk)
        else:
            final = chunk
    return final, events


async def test_code_agent_repairs_name_error(
    llm: ScriptedOpenAI, make_context: Callable[..., Context], store: SqlVersionStore
) -> None:
    llm.add(
        Reply(route("code", "Write add(a, b) in Python and print add(2, 3)."), match=ROUTER),
        Reply(fenced(BROKEN_ADD), match=CODE),
        Reply(CHECKS, match=TESTS),
        Reply("Cause: the return statement uses the misspelt name totl.\n" + fenced(FIXED_ADD), match=REPAIR),
        Reply(answer("add() works and prints 5."), match=ROUTER),
    )
    final, events = await run_graph(make_context(), "Write a Python function add and print add(2, 3)")

    assert llm.unmatched == []
    assert [e["attempt"] for e in events] == [1, 2]
    assert events[0]["error_class"] == "NameError" and events[0]["passed"] is False
    assert events[0]["error_line"] == 3 and events[0]["exit_code"] != 0
    assert events[1]["passed"] is True and events[1]["checks_total"] == 3 and events[1]["checks_failed"] == 0
    assert all(e["version_ids"] and e["duration_s"] >= 0 for e in events)

    history = await store.history(final["workspace_id"], "main.py")
    assert [v.content for v in history] == [BROKEN_ADD, FIXED_ADD]
    assert final["files"]["main.py"] == history[-1].id
    assert final["attempts"] == 2 and final["last_run"]["passed"] is True

    # The repair prompt carried the analysed failure, not just the log, with new sampling.
    repair = llm.requests_matching(REPAIR)[0]
    text = repair["messages"][-1]["content"]
    assert "Failing line 3 of main.py: return totl" in text
    assert "Values at that moment: a = 2, b = 3, total = 5" in text
    assert "Cause:" in text
    assert repair["temperature"] > 0 and repair["seed"] is not None
    first = llm.requests_matching(CODE)[0]
    assert first.get("temperature", 0) == 0

    reply = final["messages"][-1]
    assert reply.name == "task_agent"
    assert reply.content.startswith("Done: main.py ran successfully on attempt 2 of 3 (3 of 3 checks passed)")
    assert "It printed:\n```\n5\n```" in reply.content  # the program's own output, verbatim
    assert f"main.py, version {history[-1].id}" in reply.content and FIXED_ADD.strip() in reply.content
    assert not llm.requests_matching("[code_agent]"), "no model call writes the final reply"


async def test_max_attempts_ends_with_failure_report(
    llm: ScriptedOpenAI, make_context: Callable[..., Context], store: SqlVersionStore
) -> None:
    broken = "def half(x):\n    return x / 0\n\nprint(half(4))\n"
    llm.add(Reply(route("code", "Print half of 4."), match=ROUTER), Reply(fenced(broken), match=CODE))
    llm.when(REPAIR, "Cause: I am not sure.\n" + fenced(broken))
    llm.add(Reply(answer("It still fails, see the report."), match=ROUTER))
    final, events = await run_graph(make_context(max_attempts=2, generate_tests=False), "print half of 4")

    assert [e["error_class"] for e in events] == ["ZeroDivisionError", "ZeroDivisionError"]
    assert final["attempts"] == 2 and final["last_run"]["passed"] is False
    reply = final["messages"][-1].content
    assert reply.startswith("Failed: main.py still fails after 2 of 2 attempts.")
    assert "Error: ZeroDivisionError: division by zero" in reply
    assert not re.search(r"\b(works|passed|success)", reply, re.I), reply
    assert "It still fails, see the report." not in reply  # the router's text is never the reply
    assert len(await store.history(final["workspace_id"], "main.py")) == 2


async def test_best_attempt_is_kept(
    llm: ScriptedOpenAI, make_context: Callable[..., Context], store: SqlVersionStore
) -> None:
    """Attempt 1 fails two checks, attempt 2 crashes: attempt 1 is restored as the result."""
    nearly = "def add(a, b):\n    return a + b if a > 0 else 1\n"
    crash = "def add(a, b):\n    return a + c\n"
    llm.add(
        Reply(route("code", "add"), match=ROUTER),
        Reply(fenced(nearly), match=CODE),
        Reply(CHECKS, match=TESTS),
        Reply(fenced(crash), match=REPAIR),
        Reply(answer("done"), match=ROUTER),
    )
    final, events = await run_graph(make_context(max_attempts=2), "write add in python")
    assert [e["checks_failed"] for e in events] == [2, 3]
    history = await store.history(final["workspace_id"], "main.py")
    assert [v.content for v in history] == [nearly, crash, nearly]
    assert final["files"]["main.py"] == history[-1].id
    assert "kept from attempt 1, main.py, version " + history[-1].id in final["messages"][-1].content


async def test_typescript_runs_in_deno(llm: ScriptedOpenAI, make_context: Callable[..., Context]) -> None:
    code = "const xs: number[] = [1, 2, 3];\nconsole.log(xs.reduce((a, b) => a + b, 0));\n"
    llm.add(
        Reply(route("code", "Write a TypeScript program printing the sum of [1, 2, 3]."), match=ROUTER),
        Reply(fenced(code, "typescript"), match=CODE),
        Reply(answer("It prints 6."), match=ROUTER),
    )
    final, events = await run_graph(make_context(), "TypeScript please: sum of 1, 2, 3")
    assert llm.unmatched == []
    assert events and events[-1]["passed"] is True, events
    assert "main.ts" in final["files"]
    assert "It printed:\n```\n6\n```" in final["messages"][-1].content


async def test_routes_to_search_then_summarize(
    llm: ScriptedOpenAI, make_context: Callable[..., Context]
) -> None:
    llm.add(
        Reply(route("summarize", "What is LangGraph?"), match=ROUTER),
        Reply("LangGraph builds agents as graphs with checkpoints [1].", match=SUMMARY),
        Reply("LangGraph builds stateful agent graphs [1].", match=RESPOND),
    )
    final, _ = await run_graph(make_context(), "What is LangGraph? Search the web.")
    assert llm.unmatched == []
    notes = final["search_notes"]
    assert notes[0]["source"] == "https://docs.example/langgraph"
    search_msg = next(m for m in final["messages"] if getattr(m, "name", None) == "search_agent")
    assert "[1] LangGraph overview - https://docs.example/langgraph" in search_msg.content
    summary = next(m for m in final["messages"] if getattr(m, "name", None) == "summarize_agent")
    assert "Sources:\n[1] https://docs.example/langgraph" in summary.content
    summary_request = llm.requests_matching(SUMMARY)[0]["messages"][-1]["content"]
    assert "[1] LangGraph overview" in summary_request
    assert final["messages"][-1].content == "LangGraph builds stateful agent graphs [1]."


async def test_routes_to_direct_answer(llm: ScriptedOpenAI, make_context: Callable[..., Context]) -> None:
    llm.add(Reply("Hello! I am the Agentic Platform's assistant.", match=RESPOND))
    final, events = await run_graph(make_context(), "hi")
    assert events == []
    assert final["messages"][-1].content == "Hello! I am the Agentic Platform's assistant."
    assert final["route"] == "done" and final["steps"] == 1
    assert not llm.requests_matching(ROUTER), "a greeting needs no routing call"
    assert "Agentic Platform" in llm.requests_matching(RESPOND)[0]["messages"][0]["content"]


async def test_answer_without_text_goes_to_respond(
    llm: ScriptedOpenAI, make_context: Callable[..., Context]
) -> None:
    llm.add(Reply(route("answer"), match=ROUTER), Reply("Plain answer.", match=RESPOND))
    final, _ = await run_graph(make_context(), "Is Python fun to learn?")
    assert final["messages"][-1].content == "Plain answer."


async def test_step_limit_stops_the_turn(llm: ScriptedOpenAI, make_context: Callable[..., Context]) -> None:
    llm.when(ROUTER, route("search", "again"))
    final, _ = await run_graph(make_context(max_steps=2), "the LangGraph project")
    assert final["messages"][-1].content.startswith("Stopped after 2 steps")
    assert len(llm.requests_matching(ROUTER)) == 2
