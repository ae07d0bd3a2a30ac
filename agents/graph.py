"""The agent graph: the Task Agent routes between the Code, Search and Summarize agents.

``START -> task_agent -> (code_agent | search_agent | summarize_agent) -> task_agent ... -> END``.
The Code Agent is its own subgraph; its ``custom`` stream events (one per attempt) are forwarded to
this graph's stream so clients see them without asking for subgraph streaming. ``graph`` at the end
is what ``langgraph.json`` names.
"""

from __future__ import annotations

from typing import Any

from langchain_core.messages import BaseMessage
from langgraph.graph import START, StateGraph
from langgraph.runtime import Runtime

from agents.code_agent import CodeState, code_agent_graph
from agents.context import Context
from agents.router import respond, route_after_task, task_agent
from agents.search_agent import search_agent
from agents.state import InputState, State
from agents.summarize_agent import summarize_agent

__all__ = ["build_graph", "code_agent", "graph"]


async def code_agent(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
    """Run the Code Agent subgraph, forwarding its per-attempt events to the parent stream."""
    known = {m.id for m in state.messages}
    inputs = CodeState(
        messages=list(state.messages),
        workspace_id=state.workspace_id,
        files=dict(state.files),
        task=state.task,
    )
    final: dict[str, Any] = {}
    async for mode, chunk in code_agent_graph.astream(
        inputs, context=runtime.context, stream_mode=["custom", "values"]
    ):
        if mode == "custom":
            runtime.stream_writer(chunk)
        elif isinstance(chunk, dict):
            final = chunk
    new: list[BaseMessage] = [m for m in final.get("messages", []) if m.id not in known]
    return {
        "messages": new,
        "workspace_id": final.get("workspace_id"),
        "files": final.get("files", {}),
        "attempts": final.get("attempts", 0),
        "last_run": final.get("last_run"),
    }


def build_graph() -> StateGraph[State, Context, InputState, State]:
    """The graph builder, to compile with or without a checkpointer."""
    builder = StateGraph(State, context_schema=Context, input_schema=InputState)
    builder.add_node("task_agent", task_agent)
    builder.add_node("code_agent", code_agent)
    builder.add_node("search_agent", search_agent)
    builder.add_node("summarize_agent", summarize_agent)
    builder.add_node("respond", respond)
    builder.add_edge(START, "task_agent")
    builder.add_conditional_edges("task_agent", route_after_task)
    for specialist in ("code_agent", "search_agent", "summarize_agent"):
        builder.add_edge(specialist, "task_agent")
    builder.add_edge("respond", "__end__")
    return builder


graph = build_graph().compile(name="agent")
