"""The agent graph: the Task Agent routes between the Code, Search and Summarize agents.

``START -> task_agent -> (code_agent -> reply | search_agent | summarize_agent | respond)``; search and
summary hand back to the Task Agent, the Code Agent's outcome goes straight to the reply built from
its structured result. The Code Agent is its own subgraph; its ``custom`` stream events (one per
attempt) are forwarded to this graph's stream, and its model calls stream as ``messages`` tokens
through the inherited callbacks. An app the Code Agent hosted joins the state's ``app_ids`` (the web UI
lists them). ``graph`` at the end is what ``langgraph.json`` names; its input and output schemas are
published (``/assistants/{id}/schemas``).
"""

from __future__ import annotations

from typing import Any

from langchain_core.messages import BaseMessage
from langgraph.config import get_config
from langgraph.graph import START, StateGraph
from langgraph.runtime import Runtime

from agents.chat import STREAM_AS
from agents.code.graph import code_agent_graph
from agents.code.state import CodeState
from agents.context import Context
from agents.search_agent import search_agent
from agents.state import InputState, State
from agents.summarize_agent import summarize_agent
from agents.task_agent import reply, respond, route_after_task, task_agent

__all__ = ["build_graph", "code_agent", "graph"]


async def code_agent(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
    """Run the Code Agent subgraph, forwarding its per-attempt events to the parent stream."""
    known = {m.id for m in state.messages}
    inputs = CodeState(
        messages=list(state.messages),
        workspace_id=state.workspace_id,
        files=dict(state.files),
        task=state.task,
        last_path=(state.code_result or {}).get("path"),
        last_kind=(state.code_result or {}).get("app_kind"),
        preferred_language=state.preferences.get("language"),
    )
    final: dict[str, Any] = {}
    # The node's callbacks carry the parent's ``messages`` stream handler, and STREAM_AS labels the
    # subgraph's model calls as this node's: the draft and cause sentence reach clients token by
    # token (its internal calls are tagged nostream).
    config = get_config()
    metadata = config.get("metadata") or {}
    label = STREAM_AS.set({k: v for k, v in metadata.items() if k.startswith("langgraph_")})
    try:
        async for mode, chunk in code_agent_graph.astream(
            inputs,
            {"callbacks": config.get("callbacks")},
            context=runtime.context,
            stream_mode=["custom", "values"],
        ):
            if mode == "custom":
                runtime.stream_writer(chunk)
            elif isinstance(chunk, dict):
                final = chunk
    finally:
        STREAM_AS.reset(label)
    new: list[BaseMessage] = [m for m in final.get("messages", []) if m.id not in known]
    result = final.get("code_result") or {}
    return {
        "app_ids": [result["app_id"]] if result.get("app_id") else [],
        "messages": new,
        "workspace_id": final.get("workspace_id"),
        "files": final.get("files", {}),
        "attempts": final.get("attempts", 0),
        "last_run": final.get("last_run"),
        "code_result": final.get("code_result"),
    }


def build_graph() -> StateGraph[State, Context, InputState, State]:
    """The graph builder, to compile with or without a checkpointer."""
    builder = StateGraph(State, context_schema=Context, input_schema=InputState, output_schema=State)
    builder.add_node("task_agent", task_agent)
    builder.add_node("code_agent", code_agent)
    builder.add_node("search_agent", search_agent)
    builder.add_node("summarize_agent", summarize_agent)
    builder.add_node("respond", respond)
    builder.add_node("reply", reply)
    builder.add_edge(START, "task_agent")
    builder.add_conditional_edges("task_agent", route_after_task)
    for specialist in ("search_agent", "summarize_agent"):
        builder.add_edge(specialist, "task_agent")
    builder.add_edge("code_agent", "reply")
    builder.add_edge("reply", "__end__")
    builder.add_edge("respond", "__end__")
    return builder


graph = build_graph().compile(name="agent")
