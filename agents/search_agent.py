"""The Search Agent: web search plus full-text search of the workspace, each hit with its source.

No model call: the Task Agent's instruction is the query. The first web results
(``Context.search_read_pages``) are read in the sandboxed browser (``tools.browser.read_pages``:
Chromium in the tenant's sandbox, every request decided by the egress proxy), and what each page
says joins its note, so the summary rests on the pages rather than on search snippets. Offline, the
web part reports 'search unavailable' at once and the workspace part still answers.
"""

from __future__ import annotations

import logging
from typing import Any

from langchain_core.messages import AIMessage, HumanMessage
from langgraph.runtime import Runtime

from agents.chat import text_of
from agents.context import Context
from agents.state import SearchNote, State
from tools.browser import read_pages
from tools.search import search_workspace_hits
from tools.search_backends import SearchUnavailableError
from tools.services import get_store, get_web_search

__all__ = ["search_agent"]

logger = logging.getLogger(__name__)


PAGE_CHARS = 1200
"""How much of each page read joins its note (the summary's material is bounded)."""


async def _read_pages(context: Context, notes: list[SearchNote], problems: list[str]) -> list[SearchNote]:
    """The notes with the text of the first pages, read in the sandboxed browser."""
    wanted = [n["source"] for n in notes if n["source"].startswith(("http://", "https://"))]
    wanted = wanted[: context.search_read_pages]
    try:
        pages = await read_pages(context, wanted, chars=PAGE_CHARS)
    except Exception as exc:  # no browser here: the search results still stand
        logger.warning("reading the result pages failed: %s", exc)
        problems.append(f"the result pages could not be read: {type(exc).__name__}: {exc}")
        return notes
    read = dict(zip(wanted, pages, strict=False))  # by the address asked for (a page may redirect)
    kept: list[SearchNote] = []
    for note in notes:
        page = read.get(note["source"])
        if page is not None and page.error is not None:
            problems.append(f"{note['source']}: {page.error}")
        elif page is not None and page.text.strip():
            text = " ".join(page.text.split())
            note = SearchNote(**{**note, "snippet": f"{note['snippet']}\n    Page: {text}"})
        kept.append(note)
    return kept


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
    if notes and runtime.context.search_read_pages > 0:
        notes = await _read_pages(runtime.context, notes, problems)
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
