"""The repair loop against the scripted model: resampling without spending attempts, assert values."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from langchain_core.messages import HumanMessage

from agents.code.graph import MAX_RESAMPLES, code_agent_graph
from agents.context import Context
from tests.agents.scripts import BROKEN_ADD, FIXED_ADD, fenced
from tests.support.scripted_openai import CODE, REPAIR, Reply, ScriptedOpenAI
from workspace.sql import SqlVersionStore

BUGGY_FIB = (
    "def fib(n):\n    if n < 2:\n        return 1\n    return fib(n - 1) + fib(n - 2)\n\n\n"
    "print([fib(i) for i in range(8)])\nassert fib(10) == 55\n"
)
FIXED_FIB = BUGGY_FIB.replace("return 1\n", "return n\n")


async def run_code_agent(
    ctx: Context, task: str, **state: Any
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Stream the Code Agent alone; return the final values and its attempt events."""
    events: list[dict[str, Any]] = []
    final: dict[str, Any] = {}
    inputs = {"messages": [HumanMessage(task)], "task": task, **state}
    async for mode, chunk in code_agent_graph.astream(inputs, context=ctx, stream_mode=["custom", "values"]):
        if mode == "custom":
            events.append(chunk)
        else:
            final = chunk
    return final, events


async def test_no_code_and_unchanged_code_are_resampled_without_an_attempt(
    llm: ScriptedOpenAI, make_context: Callable[..., Context], store: SqlVersionStore
) -> None:
    llm.add(
        Reply(fenced(BROKEN_ADD), match=CODE),
        Reply("Cause: a typo. I would rename the variable.", match=REPAIR),  # no code block
        Reply("Cause: a typo.\n" + fenced(BROKEN_ADD + "\n\n"), match=REPAIR),  # unchanged code
        Reply("Cause: the return uses the misspelt name totl.\n" + fenced(FIXED_ADD), match=REPAIR),
    )
    final, events = await run_code_agent(make_context(generate_tests=False), "Write add and print add(2, 3)")

    assert llm.unmatched == []
    assert [(e["attempt"], e["passed"]) for e in events] == [(1, False), (2, True)]
    assert final["attempts"] == 2
    history = await store.history(final["workspace_id"], "main.py")
    assert [v.content for v in history] == [BROKEN_ADD, FIXED_ADD]
    assert "misspelt name totl" in history[-1].message

    repairs = llm.requests_matching(REPAIR)
    assert len(repairs) == 3
    seeds = [r["seed"] for r in repairs]
    assert len(set(seeds)) == 3
    temperatures = [r["temperature"] for r in repairs]
    assert all(0.3 <= t <= 0.6 for t in temperatures) and temperatures == sorted(temperatures)
    # The resamples repeat the same request: only the sampling differs.
    assert len({r["messages"][-1]["content"] for r in repairs}) == 1


async def test_resampling_is_bounded_then_the_attempt_counts(
    llm: ScriptedOpenAI, make_context: Callable[..., Context]
) -> None:
    llm.add(Reply(fenced(BROKEN_ADD), match=CODE))
    llm.when(REPAIR, "I cannot see the problem, sorry.")
    final, events = await run_code_agent(
        make_context(max_attempts=2, generate_tests=False), "Write add and print add(2, 3)"
    )

    assert [e["error_class"] for e in events] == ["NameError", "NoCodeBlock"]
    assert final["attempts"] == 2 and final["last_run"]["passed"] is False
    assert len(llm.requests_matching(REPAIR)) == 1 + MAX_RESAMPLES


async def test_first_draft_returning_the_file_unchanged_is_resampled(
    llm: ScriptedOpenAI, make_context: Callable[..., Context], store: SqlVersionStore
) -> None:
    workspace = await store.create_workspace("resample-first")
    version = await store.write(workspace.id, "main.py", BROKEN_ADD, author="user", message="broken")
    llm.add(
        Reply(fenced(BROKEN_ADD), match=CODE),  # greedy draft changes nothing
        Reply(fenced(FIXED_ADD), match=CODE),
    )
    final, events = await run_code_agent(
        make_context(max_attempts=1, generate_tests=False),
        "main.py fails. Fix the bug.",
        workspace_id=workspace.id,
        files={"main.py": version.id},
    )

    assert llm.unmatched == []
    assert [(e["attempt"], e["passed"]) for e in events] == [(1, True)]
    drafts = llm.requests_matching(CODE)
    assert len(drafts) == 2
    assert drafts[0].get("temperature", 0) == 0 and 0.3 <= drafts[1]["temperature"] <= 0.6
    assert (await store.read(workspace.id, "main.py")).content == FIXED_ADD


async def test_top_level_assert_values_and_output_reach_the_repair_request(
    llm: ScriptedOpenAI, make_context: Callable[..., Context]
) -> None:
    llm.add(
        Reply(fenced(BUGGY_FIB), match=CODE),
        Reply("Cause: the base case returns 1 for fib(0).\n" + fenced(FIXED_FIB), match=REPAIR),
    )
    final, events = await run_code_agent(make_context(generate_tests=False), "Write fib(n)")

    assert llm.unmatched == []
    assert events[0]["error_class"] == "AssertionError" and events[0]["error_line"] == 8
    assert events[-1]["passed"] is True and final["attempts"] == 2
    text = llm.requests_matching(REPAIR)[0]["messages"][-1]["content"]
    assert "Error: AssertionError: fib(10) returned 89, expected 55" in text
    assert "Failing line 8 of main.py: assert fib(10) == 55" in text
    assert "The program printed:\n[1, 1, 2, 3, 5, 8, 13, 21]" in text
    assert text.index("fib(10) returned 89") < text.index('starting with "Cause:"')
