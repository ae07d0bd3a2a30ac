"""A graph for the restart test: step 1 writes a file version and a message, step 2 blocks on a gate.

Step 2 writes a marker file when it starts waiting, so the test knows the run is mid-way, and only
finishes once the gate file exists. The server injects its (tenant-scoped) workspace store through
the ``store`` context field, as it does for the real agent graph.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from langchain_core.messages import AIMessage, AnyMessage
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.runtime import Runtime
from typing_extensions import TypedDict


@dataclass
class Context:
    """Only the server's live store."""

    store: Any = None


class State(TypedDict, total=False):
    """Messages so far; where to write; the gate and marker files of the test."""

    messages: Annotated[list[AnyMessage], add_messages]
    workspace_id: str
    gate: str
    marker: str


async def draft(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
    """Write the first version of notes.md."""
    version = await runtime.context.store.write(
        state["workspace_id"], "notes.md", "first draft\n", author="agent", message="draft"
    )
    return {"messages": [AIMessage(f"drafted notes.md v{version.number}")]}


async def finish(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
    """Wait for the gate, then write the final version."""
    Path(state["marker"]).write_text(str(os.getpid()))
    while not Path(state["gate"]).exists():
        await asyncio.sleep(0.05)
    version = await runtime.context.store.write(
        state["workspace_id"], "notes.md", "final\n", author="agent", message="final"
    )
    return {"messages": [AIMessage(f"finished notes.md v{version.number}")]}


_builder = StateGraph(State, context_schema=Context)
_builder.add_node("draft", draft)
_builder.add_node("finish", finish)
_builder.add_edge(START, "draft")
_builder.add_edge("draft", "finish")
_builder.add_edge("finish", END)
graph = _builder.compile()
