"""Hosted apps for the agents: what they need of the server's app manager, and the ``host_app`` tool.

The server injects a tenant-scoped view of its app manager as ``context.apps`` (anything with the
:class:`AppHost` methods); tools and agents never import the server. Without it (``langgraph dev``,
no server) hosting is unavailable and callers say so. An app is a workspace entry file run from
pinned versions: ``index.html`` (a static page the platform serves), ``app.py`` (Python, listening
on ``127.0.0.1:$PORT`` with ``$ROOT_PATH`` as its URL prefix) or ``main.ts``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from langchain_core.messages import ToolMessage
from langchain_core.tools import tool
from langgraph.prebuilt import ToolRuntime
from langgraph.types import Command

from tools.files import pinned_files, workspace_id_of
from tools.readable import MissingWorkspaceError, readable_errors

__all__ = [
    "HOSTING_UNAVAILABLE",
    "AppHost",
    "AppHostingError",
    "AppStatus",
    "HostedApp",
    "get_apps",
    "host_app",
]

logger = logging.getLogger(__name__)

HOSTING_UNAVAILABLE = (
    "app hosting is unavailable here: this run has no app manager (the graph runs without the "
    "platform's server, e.g. under `langgraph dev`; start the server with `make run` to host apps)"
)


class AppHostingError(Exception):
    """The app could not be hosted (it did not start, or the tenant's app limits are reached).

    ``fixable`` is True when the app's own code is at fault (it exited or never listened: a repair
    may help); ``log`` then holds the end of its output.
    """

    def __init__(self, message: str, *, log: str = "", fixable: bool = False) -> None:
        super().__init__(message)
        self.log = log
        self.fixable = fixable


@dataclass(frozen=True, kw_only=True)
class HostedApp:
    """A hosted app as the agents see it: its id, a signed link that opens it, and when it expires."""

    id: str
    name: str
    link: str
    """Opens the app in a browser (sets a cookie scoped to the app); valid until ``link_expires_at``."""
    link_expires_at: float
    expires_at: float | None
    """When the app itself is removed (None: permanent)."""


@dataclass(frozen=True, kw_only=True)
class AppStatus:
    """Whether the app's program runs, how often it ended by itself, and the end of its log."""

    running: bool
    exits: int
    log_tail: str


class AppHost(Protocol):
    """What the agents need of the server's (tenant-scoped) app manager."""

    async def host(
        self,
        workspace_id: str,
        *,
        entry: str,
        versions: Mapping[str, str],
        permanent: bool = False,
        ttl_s: float | None = None,
        port: int = 8080,
    ) -> HostedApp:
        """Host ``entry`` from the pinned ``versions`` (path -> version id; other files at their latest).

        Raises:
            AppHostingError: it did not start (with its log) or a limit is reached.
        """
        ...

    async def status(self, app_id: str) -> AppStatus:
        """The app's state now (raises ``AppHostingError`` for an unknown app)."""
        ...

    async def remove(self, app_id: str) -> None:
        """Stop the app and delete it (idempotent)."""
        ...


def get_apps(context: object | None) -> AppHost | None:
    """The run's app host, or None when the run has none (no server)."""
    if context is None:
        return None
    if isinstance(context, dict):
        return context.get("apps")
    return getattr(context, "apps", None)


@tool
@readable_errors
async def host_app(
    entry: str,
    runtime: ToolRuntime[Any, Any],
    permanent: bool = False,
    ttl_minutes: float = 30,
    port: int = 8080,
) -> Command[Any] | str:
    """Host a web app from the workspace and return a link that opens it.

    "index.html" is served as a static page. A program ("app.py", "main.ts") must listen on
    127.0.0.1 at the port in $PORT and serve its pages under the prefix in $ROOT_PATH. It runs
    from the file versions of this conversation.

    Args:
        entry: The file to host, e.g. "index.html", "app.py" (Python) or "main.ts" (TypeScript).
        permanent: Keep the app until deleted (otherwise it expires after ttl_minutes).
        ttl_minutes: Lifetime of a non-permanent app.
        port: The port the app listens on.
    """
    workspace_id = workspace_id_of(runtime)
    if workspace_id is None:
        raise MissingWorkspaceError("this conversation has no workspace yet; write the app's files first")
    apps = get_apps(runtime.context)
    if apps is None:
        raise ValueError(HOSTING_UNAVAILABLE)
    try:
        app = await apps.host(
            workspace_id,
            entry=entry,
            versions=pinned_files(runtime),
            permanent=permanent,
            ttl_s=ttl_minutes * 60,
            port=port,
        )
    except AppHostingError as exc:
        return f"Error: the app was not hosted: {exc}" + (f"\nIts output:\n{exc.log}" if exc.log else "")
    logger.info("hosted %s of workspace %s as app %s", entry, workspace_id, app.id)
    text = f"The app is running (id {app.id}). Open it at: {app.link}"
    if not runtime.tool_call_id:
        return text
    message = ToolMessage(content=text, tool_call_id=runtime.tool_call_id)
    return Command(update={"app_ids": [app.id], "messages": [message]})
