"""``/docs``: Swagger UI served from the ``swagger-ui-bundle-v2`` package, so it works offline."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

__all__ = ["ASSETS_PREFIX", "router", "swagger_assets"]

ASSETS_PREFIX = "/docs/assets"

router = APIRouter(include_in_schema=False)


def swagger_assets() -> StaticFiles:
    """The vendored Swagger UI files (JS, CSS, favicon) as a static app."""
    return StaticFiles(directory=Path(str(swagger_ui_path)))


@router.get("/docs", response_class=HTMLResponse)
async def get_docs(request: Request) -> HTMLResponse:
    """Swagger UI page; every asset URL points at this server."""
    root = request.scope.get("root_path", "").rstrip("/")
    return get_swagger_ui_html(
        openapi_url=f"{root}{request.app.openapi_url}",
        title=f"{request.app.title} - API docs",
        swagger_js_url=f"{root}{ASSETS_PREFIX}/swagger-ui-bundle.js",
        swagger_css_url=f"{root}{ASSETS_PREFIX}/swagger-ui.css",
        swagger_favicon_url=f"{root}{ASSETS_PREFIX}/favicon-32x32.png",
        oauth2_redirect_url=f"{root}/docs/oauth2-redirect",
    )


@router.get("/docs/oauth2-redirect", response_class=HTMLResponse)
async def get_docs_oauth2_redirect() -> HTMLResponse:
    """The OAuth2 redirect page Swagger UI expects (no external assets)."""
    return get_swagger_ui_oauth2_redirect_html()
