"""The Search Agent: web search plus full-text search of the workspace, each hit with its source.

No model call: the Task Agent's instruction is the query. Offline, the web part reports
'search unavailable' at once and the workspace part still answers.
"""

from __future__ import annotations

import logging
from typing import Any

from langchain_core.messages import AIMessage, HumanMessage
from langgraph.runtime import Runtime

from agents.chat import text_of
from agents.context import Context
from agents.state import SearchNote, State
from tools.search import search_workspace_hits
from tools.search_backends import SearchUnavailableError
from tools.services import get_store, get_web_search

__all__ = ["search_agent"]

logger = logging.getLogger(__name__)


def _query(state: State) -> str:
    if state.task:
        return state.task
    human = [m for m in state.messages if isinstance(m, HumanMessage)]
    return text_of(human[-1]) if human else ""


async def search_agent(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
    """Search the web and the workspace; keep the hits as notes with sources."""
    query = _query(state)
    notes: list[SearchNote] = []
    problems: list[str] = []
    try:
        results = await get_web_search(runtime.context).search(query, max_results=5)
        notes.extend(SearchNote(query=query, title=r.title, source=r.url, snippet=r.snippet) for r in results)
    except SearchUnavailableError as exc:
        problems.append(str(exc))
    if state.workspace_id:
        try:
            store = await get_store(runtime.context)
            for hit in await search_workspace_hits(store, state.workspace_id, query, limit=5):
                notes.append(
                    SearchNote(query=query, title=hit["source"], source=hit["source"], snippet=hit["text"])
                )
        except Exception as exc:  # the store's search is optional; never fail the turn for it
            logger.warning("workspace search failed: %s", exc)
            problems.append(f"workspace search failed: {exc}")
    lines = [f"Search results for {query!r}:"]
    lines.extend(
        f"[{n}] {note['title']} - {note['source']}\n    {note['snippet']}" for n, note in enumerate(notes, 1)
    )
    if not notes:
        lines.append("No results.")
    lines.extend(problems)
    return {"search_notes": notes, "messages": [AIMessage("\n".join(lines), name="search_agent")]}
