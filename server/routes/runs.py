"""Runs: execute a workspace file or a snippet in the sandbox, as one JSON result or as SSE.

The server plans the run with :func:`sandbox.plan.plan_run` (tier, limits capped by the server
maximums, files checked from their stored sizes before loading) and reports tier and limits.
Every file of the workspace is copied into the run's scratch dir so the entry can import its
siblings; the entry itself is taken at the requested version.

Streaming (``Accept: text/event-stream`` or ``POST .../runs/stream``) sends ``stdout`` / ``stderr``
events (``{"data": "<text>"}``) as the program writes, then one ``result`` event (the same JSON
as the non-streamed answer), or an ``error`` event (the error envelope). The sandbox stream runs in
its own task, so a client that disconnects cancels it and the sandbox kills the program.
"""

from __future__ import annotations

import contextlib
import json
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.responses import Response
from sse_starlette import EventSourceResponse

from sandbox.base import Limits, RunRequest, RunResult, Sandbox
from sandbox.libsets import require_library_set
from sandbox.plan import plan_run, require_language
from sandbox.resources import Tier
from server.config import Settings
from server.deps import SandboxDep, SettingsDep, StoreDep, require_json
from server.errors import error_body, status_for
from server.routes.files import parse_version
from server.schemas import LanguageName, RunCreate, RunPublic, run_public
from tools.run import index_output
from workspace.base import VersionStore

__all__ = ["router"]

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/workspaces/{workspace_id}/runs", tags=["runs"])

_SNIPPET_NAMES: dict[LanguageName, str] = {"python": "_snippet.py", "typescript": "_snippet.ts"}
_STREAM_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The run's result; with `Accept: text/event-stream`, SSE events "
        "`stdout` / `stderr` then `result` (or `error`).",
        "content": {"text/event-stream": {}},
    }
}


@dataclass(frozen=True, kw_only=True)
class _PreparedRun:
    run_id: str
    workspace_id: str
    path: str | None
    version: int | None
    language: LanguageName
    tier: Tier
    limits: Limits
    request: RunRequest

    def public(self, result: RunResult) -> RunPublic:
        """The API's view of the sandbox's result, with what the server decided."""
        return run_public(
            result,
            run_id=self.run_id,
            workspace_id=self.workspace_id,
            path=self.path,
            version=self.version,
            language=self.language,
            tier=self.tier,
            limits=self.limits,
            library_set=self.request.library_set,
        )


async def _prepare(
    workspace_id: str, body: RunCreate, store: VersionStore, sandbox: Sandbox, settings: Settings
) -> _PreparedRun:
    """Validate everything before the run starts, so errors get a status code, not an SSE event."""
    if body.network and not settings.allow_network:
        raise HTTPException(
            status_code=status.HTTP_403_FORBIDDEN,
            detail={
                "type": "network_not_allowed",
                "message": "this server does not allow runs with network access (AGENTIC_ALLOW_NETWORK)",
            },
        )
    await store.get_workspace(workspace_id)
    await require_library_set(sandbox, body.library_set)  # unknown here, or not built: fail now
    infos = await store.list_files(workspace_id)
    # Tier, limits and the size check come from the stored sizes, before any content is loaded:
    # a run never costs the server more memory than its own scratch dir holds.
    snippet = (body.code or "").encode() if body.path is None else b""
    code_size = sum(i.size for i in infos) + len(snippet)
    overrides = body.limits.as_mapping() if body.limits is not None else None
    plan = plan_run(
        code_size=code_size,
        file_count=len(infos) + (1 if snippet else 0),
        library_set=body.library_set,
        tier=body.tier,
        overrides=overrides,
        maximums=settings.sandbox.max_limits,
    )
    tier, limits = plan.tier, plan.limits
    files: dict[str, str | bytes] = {}
    for info in infos:
        files[info.path] = (await store.read(workspace_id, info.path)).content
    version_number: int | None = None
    if body.path is not None:
        entry_version = await store.read(workspace_id, body.path, parse_version(body.version))
        entry, version_number = entry_version.path, entry_version.number
        files[entry] = entry_version.content
        language = require_language(entry, body.language)
    else:
        language = body.language or "python"
        entry = _SNIPPET_NAMES[language]
        files[entry] = body.code or ""
    run_id = uuid.uuid4().hex
    request = RunRequest(
        files=files,
        language=language,
        entry=entry,
        args=tuple(body.args),
        stdin=body.stdin.encode(),
        limits=limits,
        library_set=body.library_set,
        network=body.network,
        labels={"run": run_id, "workspace": workspace_id},  # the guard adds the tenant
    )
    return _PreparedRun(
        run_id=run_id,
        workspace_id=workspace_id,
        path=body.path and entry,
        version=version_number,
        language=language,
        tier=tier,
        limits=limits,
        request=request,
    )


def _wants_stream(request: Request) -> bool:
    return "text/event-stream" in request.headers.get("accept", "").lower()


@router.post("", response_model=RunPublic, responses=_STREAM_RESPONSES, dependencies=[Depends(require_json)])
async def create_run(
    workspace_id: str,
    body: RunCreate,
    request: Request,
    store: StoreDep,
    sandbox: SandboxDep,
    settings: SettingsDep,
) -> RunPublic | Response:
    """Run a file or snippet and return its result (or stream it, see ``Accept``)."""
    prepared = await _prepare(workspace_id, body, store, sandbox, settings)
    if _wants_stream(request):
        return EventSourceResponse(_sse_events(sandbox, store, prepared), ping=15)
    logger.info(
        "run %s in %s: %s tier=%s", prepared.run_id, workspace_id, prepared.request.entry, prepared.tier
    )
    result = await sandbox.run(prepared.request)
    public = prepared.public(result)
    await _index_output(store, public)
    return public


@router.post("/stream", responses=_STREAM_RESPONSES, dependencies=[Depends(require_json)])
async def stream_run(
    workspace_id: str,
    body: RunCreate,
    store: StoreDep,
    sandbox: SandboxDep,
    settings: SettingsDep,
) -> EventSourceResponse:
    """Run a file or snippet, streaming its output as server-sent events."""
    prepared = await _prepare(workspace_id, body, store, sandbox, settings)
    return EventSourceResponse(_sse_events(sandbox, store, prepared), ping=15)


async def _index_output(store: VersionStore, run: RunPublic) -> None:
    """Make the run's output searchable (the agents' indexing path); never fails the run."""
    text = run.stdout + ("\n" + run.stderr if run.stderr else "")
    await index_output(store, run.workspace_id, run.path or "_snippet", text, run_id=run.id)


async def _sse_events(
    sandbox: Sandbox, store: VersionStore, prepared: _PreparedRun
) -> AsyncIterator[dict[str, str]]:
    """Yield SSE events for one run; closing this generator (client gone) cancels the run.

    The sandbox's own stream (``sandbox.streaming``) does the work: leaving it early kills the run.
    """
    logger.info("streamed run %s: %s tier=%s", prepared.run_id, prepared.request.entry, prepared.tier)
    finished = False
    try:
        async with contextlib.aclosing(sandbox.stream(prepared.request)) as chunks:  # type: ignore[type-var]
            async for chunk in chunks:
                if chunk.stream == "result":
                    assert chunk.result is not None
                    finished = True
                    public = prepared.public(chunk.result)
                    yield {"event": "result", "data": public.model_dump_json()}
                    await _index_output(store, public)
                else:
                    yield {"event": chunk.stream, "data": json.dumps({"data": chunk.data})}
    except Exception as exc:  # reported as the stream's last event (the status line is already sent)
        status_code, kind = status_for(exc)
        if status_code >= 500:
            logger.error("streamed run %s failed: %s: %s", prepared.run_id, type(exc).__name__, exc)
        message = str(exc) if status_code < 500 or kind != "internal_error" else "internal server error"
        yield {"event": "error", "data": json.dumps(error_body(kind, message))}
    finally:
        if not finished:
            logger.info("streamed run %s: ended before its result (client gone or error)", prepared.run_id)
