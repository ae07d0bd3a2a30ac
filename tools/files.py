"""Workspace file tools: every write is a new version, and the graph state records which one.

The tools read the workspace id and the pinned file versions from the graph state (``ToolRuntime``)
and the store from the runtime context (``tools.services``). Writes answer with a ``Command`` that
updates the state's ``files`` map, so a checkpoint always pins the versions it saw.
"""

from __future__ import annotations

from typing import Any

from langchain_core.messages import ToolMessage
from langchain_core.tools import tool
from langgraph.prebuilt import ToolRuntime
from langgraph.types import Command

from tools.readable import MissingWorkspaceError, readable_errors
from tools.services import get_store
from workspace.base import Version, VersionStore

__all__ = [
    "FILE_TOOLS",
    "diff",
    "file_history",
    "list_files",
    "pinned_files",
    "read_file",
    "rollback",
    "workspace_id_of",
    "write_file",
]


def _state_value(state: Any, name: str) -> Any:
    if state is None:
        return None
    if isinstance(state, dict):
        return state.get(name)
    return getattr(state, name, None)


def workspace_id_of(runtime: ToolRuntime[Any, Any]) -> str | None:
    """The workspace of this conversation: from the state, else from the context."""
    found = _state_value(runtime.state, "workspace_id") or _state_value(runtime.context, "workspace_id")
    return str(found) if found else None


def pinned_files(runtime: ToolRuntime[Any, Any]) -> dict[str, str]:
    """Path -> version id pinned by the state (empty when none)."""
    files = _state_value(runtime.state, "files")
    return dict(files) if isinstance(files, dict) else {}


def _require_workspace(runtime: ToolRuntime[Any, Any]) -> str:
    workspace_id = workspace_id_of(runtime)
    if workspace_id is None:
        raise MissingWorkspaceError("this conversation has no workspace yet; write a file first")
    return workspace_id


def _answer(runtime: ToolRuntime[Any, Any], text: str, update: dict[str, Any]) -> Command[Any] | str:
    """A state update when called by a ToolNode, plain text when called directly."""
    if not runtime.tool_call_id:
        return text
    message = ToolMessage(content=text, tool_call_id=runtime.tool_call_id)
    return Command(update={**update, "messages": [message]})


def _describe(version: Version) -> str:
    return f"{version.path} version {version.number} (id {version.id}, {version.size} bytes)"


async def _store(runtime: ToolRuntime[Any, Any]) -> VersionStore:
    return await get_store(runtime.context)


@tool
@readable_errors
async def write_file(
    path: str, content: str, runtime: ToolRuntime[Any, Any], message: str = ""
) -> Command[Any] | str:
    """Save text as a new version of a file in the workspace (nothing is ever overwritten).

    Args:
        path: Relative file path, e.g. "main.py" or "src/app.ts".
        content: The complete new file content.
        message: A short note on what changed.
    """
    store = await _store(runtime)
    update: dict[str, Any] = {}
    workspace_id = workspace_id_of(runtime)
    if workspace_id is None:
        workspace_id = (await store.create_workspace("agent workspace")).id
        update["workspace_id"] = workspace_id
    version = await store.write(workspace_id, path, content, author="agent", message=message)
    update["files"] = {version.path: version.id}
    return _answer(runtime, f"Saved {_describe(version)}.", update)


@tool
@readable_errors
async def read_file(path: str, runtime: ToolRuntime[Any, Any], version: int | None = None) -> str:
    """Read a file from the workspace: the version this conversation last saw, or a given version number.

    Args:
        path: Relative file path.
        version: Version number (1 = first); omit for the current one.
    """
    workspace_id = _require_workspace(runtime)
    store = await _store(runtime)
    wanted: str | int | None = version if version is not None else pinned_files(runtime).get(path)
    found = await store.read(workspace_id, path, wanted)
    return f"{_describe(found)}:\n{found.content}"


@tool
@readable_errors
async def list_files(runtime: ToolRuntime[Any, Any]) -> str:
    """List the files in the workspace with their latest version numbers and sizes."""
    workspace_id = _require_workspace(runtime)
    infos = await (await _store(runtime)).list_files(workspace_id)
    if not infos:
        return "The workspace has no files yet."
    return "\n".join(f"{i.path} (version {i.number}, {i.size} bytes)" for i in infos)


@tool
@readable_errors
async def file_history(path: str, runtime: ToolRuntime[Any, Any]) -> str:
    """Show every version of a file, oldest first, with author and message."""
    workspace_id = _require_workspace(runtime)
    versions = await (await _store(runtime)).history(workspace_id, path)
    return "\n".join(
        f"version {v.number} (id {v.id}) by {v.author} at {v.created_at:%Y-%m-%d %H:%M:%S}: "
        f"{v.message or '-'}"
        for v in versions
    )


@tool
@readable_errors
async def diff(path: str, from_version: int, to_version: int, runtime: ToolRuntime[Any, Any]) -> str:
    """Show the unified diff of a file between two version numbers."""
    workspace_id = _require_workspace(runtime)
    text = await (await _store(runtime)).diff(workspace_id, path, from_version, to_version)
    return text or "The two versions are identical."


@tool
@readable_errors
async def rollback(path: str, version: int, runtime: ToolRuntime[Any, Any]) -> Command[Any] | str:
    """Restore an older version of a file by saving it again as the newest version."""
    workspace_id = _require_workspace(runtime)
    restored = await (await _store(runtime)).rollback(workspace_id, path, version, author="agent")
    return _answer(
        runtime,
        f"Restored version {version} as {_describe(restored)}.",
        {"files": {restored.path: restored.id}},
    )


FILE_TOOLS = [write_file, read_file, list_files, file_history, diff, rollback]
