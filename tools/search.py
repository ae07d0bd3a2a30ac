"""Search tools: the web (through a pluggable backend) and the workspace's files and run outputs."""

from __future__ import annotations

from typing import Any

from langchain_core.tools import tool
from langgraph.prebuilt import ToolRuntime

from tools.files import workspace_id_of
from tools.readable import MissingWorkspaceError, readable_errors
from tools.search_backends import SearchUnavailableError, WebResult
from tools.services import get_store, get_web_search
from workspace.base import VersionStore

__all__ = ["format_web_results", "search_workspace", "search_workspace_hits", "web_search"]


def format_web_results(results: list[WebResult]) -> str:
    """Numbered results with their sources, for a model to cite as [n]."""
    if not results:
        return "No results."
    return "\n".join(f"[{n}] {r.title} - {r.url}\n    {r.snippet}" for n, r in enumerate(results, 1))


async def search_workspace_hits(
    store: VersionStore, workspace_id: str, query: str, limit: int = 10
) -> list[dict[str, str]]:
    """Full-text hits over files and run outputs as ``{"source", "text"}`` dicts ([] when unsupported)."""
    searcher = getattr(store, "search", None)
    if searcher is None:
        return []
    hits = await searcher(workspace_id, query, limit=limit)
    rows: list[dict[str, str]] = []
    for hit in hits:
        kind = str(getattr(hit, "kind", "") or "file")
        path = str(getattr(hit, "path", "") or "")
        ref = getattr(hit, "version_id", None) or getattr(hit, "run_id", None) or ""
        text = str(getattr(hit, "snippet", None) or getattr(hit, "text", None) or "")
        rows.append({"source": f"workspace:{kind}:{path}" + (f"@{ref}" if ref else ""), "text": text})
    return rows


@tool
@readable_errors
async def web_search(query: str, runtime: ToolRuntime[Any, Any], max_results: int = 5) -> str:
    """Search the web and return numbered results with their URLs (cite them as [n]).

    Args:
        query: What to look for, in a few keywords.
        max_results: How many results (1-10).
    """
    backend = get_web_search(runtime.context)
    try:
        results = await backend.search(query, max_results=max(1, min(max_results, 10)))
    except SearchUnavailableError as exc:
        return f"{exc}. Answer from the workspace or your own knowledge, and say so."
    return format_web_results(results)


@tool
@readable_errors
async def search_workspace(query: str, runtime: ToolRuntime[Any, Any], limit: int = 10) -> str:
    """Full-text search over the workspace's files and the outputs of earlier runs."""
    workspace_id = workspace_id_of(runtime)
    if workspace_id is None:
        raise MissingWorkspaceError("this conversation has no workspace yet")
    rows = await search_workspace_hits(await get_store(runtime.context), workspace_id, query, limit)
    if not rows:
        return "No matches in the workspace."
    return "\n".join(f"[{n}] {row['source']}\n    {row['text']}" for n, row in enumerate(rows, 1))
