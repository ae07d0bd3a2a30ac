"""Git export: push a workspace's history to one of the operator's remotes, each version a commit.

The client names a remote; its URL, branch and credentials come only from the server's settings
(``AGENTIC_EXPORT_REMOTES``), so a client cannot make the server push anywhere else. The store
handed in is the caller's tenant view: another tenant's workspace is a 404 like everywhere else.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from server.deps import StoreDep, require_json
from server.schemas import ErrorPublic, ExportCreate, ExportPublic
from workspace.git_export import GitExporter

__all__ = ["ExporterDep", "get_exporter", "router"]

router = APIRouter(prefix="/workspaces/{workspace_id}", tags=["export"])


def get_exporter(request: Request) -> GitExporter:
    """The exporter :func:`server.app.create_app` built from the settings."""
    exporter: GitExporter = request.app.state.exporter
    return exporter


ExporterDep = Annotated[GitExporter, Depends(get_exporter)]

_RESPONSES: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorPublic, "description": text}
    for code, text in {
        400: "Unknown remote (the message lists the remotes this tenant may use)",
        409: "The remote's branch changed while exporting: export again",
        502: "The remote refused the push or could not be reached",
        503: "git is not installed on the server",
        504: "A git command ran past the remote's timeout",
    }.items()
}


@router.post(
    "/export", response_model=ExportPublic, dependencies=[Depends(require_json)], responses=_RESPONSES
)
async def export_workspace(
    workspace_id: str, body: ExportCreate, store: StoreDep, exporter: ExporterDep
) -> ExportPublic:
    """Push the versions the remote's branch lacks as new commits (author, time, message of each),
    without force: a second export after more writes is a fast-forward of the first."""
    return ExportPublic.from_result(await exporter.export(store, workspace_id, body.remote))
