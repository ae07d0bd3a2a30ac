"""Human approval before a run: interrupt, then approve / edit / reject through Command(resume=...)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from langchain_core.messages import HumanMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from agents.context import Context
from agents.graph import build_graph
from tests.agents.scripts import answer, fenced, route
from tests.support.scripted_openai import CODE, ROUTER, Reply, ScriptedOpenAI
from workspace.sql import SqlVersionStore

PROGRAM = "print('hello from the agent')\n"


async def drive(
    graph: Any, payload: Any, config: dict[str, Any], ctx: Context
) -> tuple[dict[str, Any], list[Any]]:
    """Stream until the run ends or pauses; return (values or interrupt info, custom events)."""
    events: list[Any] = []
    result: dict[str, Any] = {}
    async for mode, chunk in graph.astream(
        payload, config, context=ctx, stream_mode=["custom", "updates", "values"]
    ):
        if mode == "custom":
            events.append(chunk)
        elif mode == "updates" and "__interrupt__" in chunk:
            result["interrupt"] = chunk["__interrupt__"][0].value
        elif mode == "values":
            result["values"] = chunk
    return result, events


def script_run(llm: ScriptedOpenAI) -> None:
    llm.add(
        Reply(route("code", "Print a greeting."), match=ROUTER),
        Reply(fenced(PROGRAM), match=CODE),
        Reply(answer("Done."), match=ROUTER),
    )


async def start(make_context: Callable[..., Context]) -> tuple[Any, dict[str, Any], Context, dict[str, Any]]:
    graph = build_graph().compile(checkpointer=InMemorySaver())
    config: dict[str, Any] = {"configurable": {"thread_id": uuid.uuid4().hex}}
    ctx = make_context(require_approval=True, generate_tests=False)
    paused, events = await drive(graph, {"messages": [HumanMessage("greet me in python")]}, config, ctx)
    assert events == [], "nothing may run before approval"
    ask = paused["interrupt"]
    assert ask["type"] == "approval" and ask["code"] == PROGRAM and ask["attempt"] == 1
    assert ask["actions"] == ["approve", "edit", "reject"]
    # LangChain's human-in-the-loop shape, so agent-chat-ui's Approve / Edit / Reject panel works.
    assert (
        ask["action_requests"][0]["name"] == "run_code"
        and ask["action_requests"][0]["args"]["code"] == PROGRAM
    )
    assert ask["review_configs"][0]["allowed_decisions"] == ["approve", "edit", "reject"]
    return graph, config, ctx, ask


async def test_approve_runs_the_code(llm: ScriptedOpenAI, make_context: Callable[..., Context]) -> None:
    script_run(llm)
    graph, config, ctx, _ = await start(make_context)
    done, events = await drive(graph, Command(resume={"action": "approve"}), config, ctx)
    assert [e["passed"] for e in events] == [True]
    assert len(llm.requests_matching(CODE)) == 1, "resuming must not ask the model again"
    assert done["values"]["messages"][-1].content.startswith("Done: main.py ran successfully on attempt 1")


async def test_edit_runs_the_edited_code(
    llm: ScriptedOpenAI, make_context: Callable[..., Context], store: SqlVersionStore
) -> None:
    script_run(llm)
    graph, config, ctx, _ = await start(make_context)
    edited = "print('edited by a human')"
    done, events = await drive(graph, Command(resume={"action": "edit", "code": edited}), config, ctx)
    assert [e["passed"] for e in events] == [True]
    values = done["values"]
    history = await store.history(values["workspace_id"], "main.py")
    assert [(v.author, v.content) for v in history] == [("code_agent", PROGRAM), ("user", edited + "\n")]
    assert values["files"]["main.py"] == history[-1].id
    assert "edited by a human" in values["messages"][-1].content


async def test_reject_runs_nothing(llm: ScriptedOpenAI, make_context: Callable[..., Context]) -> None:
    script_run(llm)
    graph, config, ctx, _ = await start(make_context)
    done, events = await drive(graph, Command(resume={"action": "reject", "reason": "not now"}), config, ctx)
    assert events == []
    assert "rejected (not now); nothing was run" in done["values"]["messages"][-1].content
    assert done["values"]["last_run"] is None


async def test_hitl_decisions_resume(
    llm: ScriptedOpenAI, make_context: Callable[..., Context], store: SqlVersionStore
) -> None:
    """agent-chat-ui resumes with ``{"decisions": [...]}``: approve runs, edit runs the edited code."""
    script_run(llm)
    graph, config, ctx, _ = await start(make_context)
    done, events = await drive(graph, Command(resume={"decisions": [{"type": "approve"}]}), config, ctx)
    assert [e["passed"] for e in events] == [True], (
        "an approval in the HITL shape must not read as a rejection"
    )

    llm.reset()
    script_run(llm)
    graph, config, ctx, _ = await start(make_context)
    edit = {"type": "edit", "edited_action": {"name": "run_code", "args": {"code": "print('via hitl')"}}}
    done, events = await drive(graph, Command(resume={"decisions": [edit]}), config, ctx)
    assert [e["passed"] for e in events] == [True]
    assert "via hitl" in done["values"]["messages"][-1].content
