"""The web UI: one chat page served from this package (plain HTML / JS / CSS, no CDN, no build step).

The page talks to the Agent Protocol routes (threads, streamed runs) and to the ``/v1`` REST API
(workspaces, files, versions, diffs) of the same server.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

__all__ = ["STATIC_DIR", "STATIC_PREFIX", "install_ui", "router"]

STATIC_DIR = Path(__file__).parent / "static"
STATIC_PREFIX = "/ui/static"

router = APIRouter(include_in_schema=False)


@router.get("/")
async def get_index() -> FileResponse:
    """The chat page."""
    return FileResponse(
        STATIC_DIR / "index.html", media_type="text/html", headers={"Cache-Control": "no-cache"}
    )


def install_ui(app: FastAPI) -> None:
    """Serve the page at ``/`` and its assets under ``/ui/static``."""
    app.include_router(router)
    app.mount(STATIC_PREFIX, StaticFiles(directory=STATIC_DIR), name="ui-static")
