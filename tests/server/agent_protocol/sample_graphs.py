"""Small graphs with known timing for the run-manager tests (cancel, overflow, interrupts, enqueue).

They use no model: each node sleeps, writes custom events, or interrupts, so a test can assert
exactly what the stream must carry. The real agent graph is tested with the scripted model.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import asdict, dataclass, field
from typing import Annotated, Any

from langgraph.config import get_stream_writer
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import interrupt
from typing_extensions import TypedDict

from agents.context import CLIENT


@dataclass(kw_only=True)
class Context:
    """Options as the agent graph's: some a client (or its assistant) may set, some the operator's only."""

    model_base_url: str | None = None
    sandbox_backend: str | None = None
    model_name: str | None = field(default=None, metadata={CLIENT: True})
    max_attempts: int = field(default=3, metadata={CLIENT: True})
    tier: str | None = field(default=None, metadata={CLIENT: True})
    require_approval: bool = field(default=False, metadata={CLIENT: True})


def _add(a: list[str], b: list[str]) -> list[str]:
    return a + b


class State(TypedDict, total=False):
    """Steps taken so far, how many ticks to emit and how long each takes."""

    steps: Annotated[list[str], _add]
    ticks: int
    delay: float
    approve: bool
    pad: int
    echo_context: bool


async def work(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
    """Emit ``ticks`` custom events (``pad`` bytes of filler each, and which process), ``delay`` s apart.

    With ``echo_context``, first a custom event with the run's context (what the server passed).
    """
    write = get_stream_writer()
    if state.get("echo_context"):
        write({"context": asdict(runtime.context)})
    for i in range(state.get("ticks", 3)):
        write({"tick": i, "pad": "x" * state.get("pad", 0), "pid": os.getpid()})
        await asyncio.sleep(state.get("delay", 0.0))
    return {"steps": ["work"]}


async def approval(state: State) -> dict[str, Any]:
    """Ask a human when the input asks for approval."""
    if not state.get("approve"):
        return {"steps": ["auto"]}
    answer = interrupt({"question": "run it?"})
    return {"steps": [f"approved:{answer}"]}


_builder = StateGraph(State, context_schema=Context)
_builder.add_node("work", work)
_builder.add_node("approval", approval)
_builder.add_edge(START, "work")
_builder.add_edge("work", "approval")
_builder.add_edge("approval", END)
graph = _builder.compile()
