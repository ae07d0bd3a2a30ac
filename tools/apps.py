"""The ``host_app`` tool: host a web app written to the workspace and return a link to it.

The server injects its app manager as ``context.apps`` (anything with the :class:`AppHost` method);
the tool never imports the server. The Code Agent should call it after the app's files are written
and a test run passed: ``host_app(entry="app.py")`` (an app that listens on ``127.0.0.1:$PORT`` and
uses ``$ROOT_PATH`` as its URL prefix), then put the returned link in its reply.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Protocol

from langchain_core.tools import tool
from langgraph.prebuilt import ToolRuntime

from tools.files import pinned_files, workspace_id_of
from tools.readable import MissingWorkspaceError, readable_errors
from tools.services import get_store

__all__ = ["AppHost", "host_app"]

logger = logging.getLogger(__name__)


class AppHost(Protocol):
    """What the tool needs of the server's app manager."""

    async def host_app(
        self,
        tenant: str,
        workspace_id: str,
        *,
        entry: str,
        versions: Mapping[str, str],
        permanent: bool,
        ttl_s: float,
        port: int,
    ) -> str: ...


def _apps(context: object) -> AppHost | None:
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
) -> str:
    """Host a web app from the workspace and return a link that opens it.

    The app must listen on 127.0.0.1 at the port in $PORT and serve its pages under the prefix in
    $ROOT_PATH (links like $ROOT_PATH + "/"). It runs from the file versions of this conversation.

    Args:
        entry: The file to run, e.g. "app.py" (Python) or "main.ts" (TypeScript).
        permanent: Keep the app until deleted (otherwise it expires after ttl_minutes).
        ttl_minutes: Lifetime of a non-permanent app.
        port: The port the app listens on.
    """
    workspace_id = workspace_id_of(runtime)
    if workspace_id is None:
        raise MissingWorkspaceError("this conversation has no workspace yet; write the app's files first")
    apps = _apps(runtime.context)
    if apps is None:
        raise ValueError("app hosting is not available in this deployment")
    store = await get_store(runtime.context)
    tenant = str(getattr(store, "tenant", "default"))
    link = await apps.host_app(
        tenant,
        workspace_id,
        entry=entry,
        versions=pinned_files(runtime),
        permanent=permanent,
        ttl_s=ttl_minutes * 60,
        port=port,
    )
    logger.info("hosted %s of workspace %s", entry, workspace_id)
    return f"The app is running. Open it at: {link}"
