"""Small graphs with known timing for the run-manager tests (cancel, overflow, interrupts, enqueue).

They use no model: each node sleeps, writes custom events, or interrupts, so a test can assert
exactly what the stream must carry. The real agent graph is tested with the scripted model.
"""

from __future__ import annotations

import asyncio
import os
from typing import Annotated, Any

from langgraph.config import get_stream_writer
from langgraph.graph import END, START, StateGraph
from langgraph.types import interrupt
from typing_extensions import TypedDict


def _add(a: list[str], b: list[str]) -> list[str]:
    return a + b


class State(TypedDict, total=False):
    """Steps taken so far, how many ticks to emit and how long each takes."""

    steps: Annotated[list[str], _add]
    ticks: int
    delay: float
    approve: bool
    pad: int


async def work(state: State) -> dict[str, Any]:
    """Emit ``ticks`` custom events (``pad`` bytes of filler each, and which process), ``delay`` s apart."""
    write = get_stream_writer()
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


_builder = StateGraph(State)
_builder.add_node("work", work)
_builder.add_node("approval", approval)
_builder.add_edge(START, "work")
_builder.add_edge("work", "approval")
_builder.add_edge("approval", END)
graph = _builder.compile()
