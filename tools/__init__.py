"""LangChain tools the agents call: thin, typed wrappers over ``workspace`` and ``sandbox``.

Each tool is an async function whose docstring is what the model reads; errors come back as text.
``APP_TOOLS``: ``host_app`` (needs the server's ``context.apps``). ``BROWSER_TOOLS``: ``browse`` and
``check_app`` (a "CHECK FAILED" answer is repair-loop input, like a failed run). The graph itself
uses the functions beneath them without tool calls: ``tools.browser.read_pages`` (Search Agent),
``tools.app_probe.probe_app`` and ``tools.apps.AppHost`` (the Code Agent's app path).
"""

from __future__ import annotations

from langchain_core.tools import BaseTool

from tools.apps import host_app
from tools.browser import BROWSER_TOOLS, browse, check_app
from tools.files import diff, file_history, list_files, read_file, rollback, write_file
from tools.run import run_code
from tools.search import search_workspace, web_search

__all__ = [
    "APP_TOOLS",
    "BROWSER_TOOLS",
    "TOOLS",
    "browse",
    "check_app",
    "diff",
    "file_history",
    "host_app",
    "list_files",
    "read_file",
    "rollback",
    "run_code",
    "search_workspace",
    "web_search",
    "write_file",
]

TOOLS: list[BaseTool] = [
    write_file,
    read_file,
    list_files,
    file_history,
    diff,
    rollback,
    run_code,
    web_search,
    search_workspace,
]

# Offered to the Code Agent when the server runs with app hosting (``context.apps`` set).
APP_TOOLS: list[BaseTool] = [host_app]
