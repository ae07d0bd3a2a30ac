"""The Summarize Agent: condenses search notes (or long text in the conversation) citing sources."""

from __future__ import annotations

import logging
import re
from typing import Any

from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langgraph.runtime import Runtime

from agents.chat import ask_model, text_of
from agents.context import Context
from agents.prompts import SUMMARIZE_SYSTEM
from agents.state import State

__all__ = ["summarize_agent"]

logger = logging.getLogger(__name__)

_MAX_MATERIAL = 6000


def _material(state: State) -> tuple[str, list[str]]:
    """Numbered material and the list of its sources (empty when summarising plain text)."""
    if state.search_notes:
        notes = state.search_notes[-10:]
        text = "\n".join(f"[{n}] {note['title']}: {note['snippet']}" for n, note in enumerate(notes, 1))
        return text, [note["source"] for note in notes]
    human = [m for m in state.messages if isinstance(m, HumanMessage)]
    return (text_of(human[-1]) if human else ""), []


async def summarize_agent(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
    """Summarise with citations; the source list is appended by us so it is always right."""
    material, sources = _material(state)
    task = state.task or "Summarize."
    prompt = [
        SystemMessage(SUMMARIZE_SYSTEM),
        HumanMessage(f"Task: {task}\n\nMaterial:\n{material[:_MAX_MATERIAL]}"),
    ]
    try:
        summary = (await ask_model(runtime.context, prompt)).strip()
    except Exception as exc:
        logger.warning("summary failed: %s", exc)
        summary = f"(the model could not summarise: {type(exc).__name__})"
    summary = re.split(r"\n\s*sources?:\s*\n", summary, flags=re.I)[0].rstrip()
    if sources:
        summary += "\n\nSources:\n" + "\n".join(f"[{n}] {src}" for n, src in enumerate(sources, 1))
    return {"messages": [AIMessage(summary, name="summarize_agent")]}
