"""The ``run_code`` tool: run a workspace file in the sandbox and index its output for search."""

from __future__ import annotations

import logging
import uuid
from typing import Any, Literal

from langchain_core.tools import tool
from langgraph.prebuilt import ToolRuntime

from sandbox.plan import plan_run
from tools.execution import format_run, language_of, run_program
from tools.files import pinned_files, workspace_id_of
from tools.readable import MissingWorkspaceError, readable_errors
from tools.services import get_sandbox, get_store
from workspace.base import VersionStore

__all__ = ["index_output", "run_code"]

logger = logging.getLogger(__name__)


async def index_output(
    store: VersionStore, workspace_id: str, path: str, text: str, run_id: str | None = None
) -> str | None:
    """Make a run's output searchable when the store supports it; returns the run id used.

    The one indexing path for REST runs and the agents' runs; a failure never fails the run.
    """
    indexer = getattr(store, "index_run_output", None)
    if indexer is None or not text.strip():
        return None
    run_id = run_id or uuid.uuid4().hex
    try:
        await indexer(workspace_id, run_id, path, text)
    except Exception:  # indexing is a convenience; a failure must not fail the run
        logger.warning("could not index the output of %s", path, exc_info=True)
        return None
    return run_id


@tool
@readable_errors
async def run_code(
    path: str,
    runtime: ToolRuntime[Any, Any],
    tier: Literal["light", "medium", "heavy"] | None = None,
    library_set: str = "base",
) -> str:
    """Run a Python (.py) or TypeScript (.ts) file of the workspace in an isolated sandbox.

    The other workspace files are present too, so imports between them work. Returns the exit code and
    the end of stdout / stderr.

    Args:
        path: The file to run, e.g. "main.py".
        tier: Resources ("light", "medium", "heavy"); omit to let the server choose.
        library_set: "base" (standard library) or "datascience" (numpy, pandas, matplotlib).
    """
    workspace_id = workspace_id_of(runtime)
    if workspace_id is None:
        raise MissingWorkspaceError("this conversation has no workspace yet; write a file first")
    language = language_of(path)
    if language is None:
        raise ValueError(f"cannot run {path!r}: only .py and .ts files can be run")
    store = await get_store(runtime.context)
    pins = pinned_files(runtime)
    infos = await store.list_files(workspace_id)
    # The same plan run_program makes, from stored sizes: files that cannot fit are never loaded.
    plan_run(code_size=sum(i.size for i in infos), file_count=len(infos), library_set=library_set, tier=tier)
    files: dict[str, str] = {}
    for info in infos:
        files[info.path] = (await store.read(workspace_id, info.path, pins.get(info.path))).content
    if path not in files:
        raise ValueError(f"{path!r} is not in the workspace; use list_files")
    sandbox = await get_sandbox(runtime.context)
    result, used = await run_program(
        sandbox, files=files, entry=path, language=language, library_set=library_set, tier=tier
    )
    await index_output(store, workspace_id, path, result.stdout + result.stderr)
    return f"(tier {used}) " + format_run(result)
