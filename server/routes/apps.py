"""Hosted apps: create from pinned versions, list, stop / start / restart, extend, delete, logs, links.

Each handler acts for the caller's tenant only (another tenant's app is 404). The app itself is
served by the reverse proxy at ``/apps/{id}/`` (:mod:`server.apps.proxy`), not under ``/v1``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status
from fastapi.responses import PlainTextResponse
from sse_starlette import EventSourceResponse

from sandbox.plan import require_language
from server.apps.logs import AppLog
from server.apps.manager import AppLimitError, AppManager, AppNotFoundError, AppSpec, AppStartError
from server.apps.origin import app_origin
from server.apps.schemas import AppCreate, AppCreated, AppLink, AppPublic, AppUpdate
from server.apps.static import is_static_entry
from server.apps.store import AppRecord
from server.deps import TenantDep

__all__ = ["router"]

router = APIRouter(prefix="/apps", tags=["apps"])

FOLLOW_WAKE_S = 15.0  # a follower re-checks at least this often (the app may have been deleted)


def get_apps(request: Request) -> AppManager:
    """The app manager of the lifespan (404 when hosting is off)."""
    manager: AppManager | None = getattr(request.app.state, "apps", None)
    if manager is None:
        raise HTTPException(status_code=404, detail={"type": "not_found", "message": "app hosting is off"})
    return manager


AppsDep = Annotated[AppManager, Depends(get_apps)]


def _url(request: Request, manager: AppManager, app_id: str) -> str:
    """The app's address for a browser: on its own origin when a domain is set."""
    domain = manager.settings.domain
    base = app_origin(request.scope, app_id, domain) if domain else str(request.base_url).rstrip("/")
    return base + manager.prefix(app_id) + "/"


def _public(request: Request, manager: AppManager, record: AppRecord) -> AppPublic:
    return AppPublic.of(record, url=_url(request, manager, record.id), running=manager.running(record.id))


def _http_error(exc: Exception) -> HTTPException:
    if isinstance(exc, AppNotFoundError):
        return HTTPException(status_code=404, detail={"type": "app_not_found", "message": str(exc)})
    if isinstance(exc, AppLimitError):
        return HTTPException(status_code=409, detail={"type": "app_limit", "message": str(exc)})
    return HTTPException(status_code=502, detail={"type": "app_start_failed", "message": str(exc)})


_ERRORS = (AppNotFoundError, AppLimitError, AppStartError)


def _link(request: Request, manager: AppManager, app_id: str) -> AppLink:
    value, exp = manager.signer.sign(app_id, manager.settings.link_ttl_s)
    return AppLink(url=_url(request, manager, app_id) + f"?agentic_link={value}", expires_at=exp)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=AppCreated)
async def create_app(body: AppCreate, request: Request, tenant: TenantDep, manager: AppsDep) -> AppCreated:
    """Host a workspace's app; answers once it listens, with its token (shown only now) and a link."""
    if (body.entry is None) == (body.command is None):
        raise HTTPException(
            status_code=400, detail={"type": "invalid_app", "message": "give entry or command"}
        )
    if is_static_entry(body.entry):
        language = None
    else:
        language = body.language or (require_language(body.entry) if body.entry else "python")
    spec = AppSpec(
        workspace_id=body.workspace_id,
        name=body.name,
        entry=body.entry,
        language=language,
        command=tuple(body.command) if body.command else None,
        versions=body.versions,
        port=body.port,
        tier=body.tier,
        library_set=body.library_set,
        env=body.env,
        permanent=body.permanent,
        ttl_s=body.ttl_s,
        public=body.public,
    )
    try:
        record, token = await manager.create(tenant, spec)
    except _ERRORS as exc:
        raise _http_error(exc) from exc
    public = _public(request, manager, record)
    return AppCreated(**public.model_dump(), token=token, link=_link(request, manager, record.id))


@router.get("", response_model=list[AppPublic])
async def list_apps(request: Request, tenant: TenantDep, manager: AppsDep) -> list[AppPublic]:
    """The caller's apps, oldest first."""
    records = await manager.store.list(tenant)
    return [_public(request, manager, r) for r in records if not r.expired()]


@router.get("/{app_id}", response_model=AppPublic)
async def get_app(app_id: str, request: Request, tenant: TenantDep, manager: AppsDep) -> AppPublic:
    """One app."""
    try:
        return _public(request, manager, await manager.get(tenant, app_id))
    except _ERRORS as exc:
        raise _http_error(exc) from exc


@router.patch("/{app_id}", response_model=AppPublic)
async def update_app(
    app_id: str, body: AppUpdate, request: Request, tenant: TenantDep, manager: AppsDep
) -> AppPublic:
    """Extend the TTL from now, make the app permanent or ephemeral, open or close it to the public."""
    try:
        record = await manager.extend(tenant, app_id, ttl_s=body.ttl_s, permanent=body.permanent)
        if body.public is not None:
            manager.forget(app_id)
            await manager.store.update(app_id, public=int(body.public))
            record = await manager.get(tenant, app_id)
    except _ERRORS as exc:
        raise _http_error(exc) from exc
    return _public(request, manager, record)


@router.post("/{app_id}/links", response_model=AppLink)
async def create_link(app_id: str, request: Request, tenant: TenantDep, manager: AppsDep) -> AppLink:
    """An expiring signed link that opens the app in a browser (sets a cookie scoped to the app)."""
    try:
        await manager.get(tenant, app_id)
    except _ERRORS as exc:
        raise _http_error(exc) from exc
    return _link(request, manager, app_id)


@router.post("/{app_id}/token")
async def rotate_token(app_id: str, tenant: TenantDep, manager: AppsDep) -> dict[str, str]:
    """A new access token; the old one stops working."""
    try:
        return {"token": await manager.rotate_token(tenant, app_id)}
    except _ERRORS as exc:
        raise _http_error(exc) from exc


@router.post("/{app_id}/{action}", response_model=AppPublic)
async def act_on_app(
    app_id: str, action: str, request: Request, tenant: TenantDep, manager: AppsDep
) -> AppPublic:
    """``stop``, ``start`` or ``restart`` the app (restart: a fresh sandbox from the pinned versions).

    Declared after ``/links`` and ``/token``: routes match in order, and this one takes any name.
    """
    try:
        if action == "stop":
            record = await manager.stop(tenant, app_id)
        elif action in ("start", "restart"):
            record = await manager.start(tenant, app_id, restart=action == "restart")
        else:
            raise HTTPException(
                status_code=404, detail={"type": "not_found", "message": f"no action {action!r}"}
            )
    except _ERRORS as exc:
        raise _http_error(exc) from exc
    return _public(request, manager, record)


@router.get(
    "/{app_id}/logs",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/plain": {}, "text/event-stream": {}}}},
)
async def get_logs(
    app_id: str,
    tenant: TenantDep,
    manager: AppsDep,
    follow: Annotated[bool, Query(description="Stream new output as server-sent events")] = False,
) -> Response:
    """The app's output (stdout and stderr, the newest 256 kB), or with ``follow`` a live SSE stream.

    The stream sends what is kept, then each new chunk as an event named after its stream
    (``stdout``, ``stderr``, ``platform`` for start / exit lines) with ``{"data": text}``; it ends
    when the app is deleted or the client leaves.
    """
    try:
        await manager.get(tenant, app_id)
    except _ERRORS as exc:
        raise _http_error(exc) from exc
    log = manager.log(app_id)
    if not follow:
        return PlainTextResponse(log.text())
    return EventSourceResponse(_follow(log), ping=15)


async def _follow(log: AppLog) -> AsyncIterator[dict[str, str]]:
    """SSE events of ``log`` from what is kept on (a follower that fell behind is told what it missed)."""
    position = log.start
    while True:
        chunks, missed, position = log.since(position)
        if missed:
            yield {"event": "missed", "data": json.dumps({"chars": missed})}
        for chunk in chunks:
            yield {"event": chunk.stream, "data": json.dumps({"data": chunk.data})}
        if log.closed:
            yield {"event": "end", "data": json.dumps({"reason": "the app was deleted"})}
            return
        await log.wait(position, FOLLOW_WAKE_S)


@router.delete("/{app_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_app(app_id: str, tenant: TenantDep, manager: AppsDep) -> Response:
    """Stop the app and forget it."""
    try:
        await manager.delete(tenant, app_id)
    except _ERRORS as exc:
        raise _http_error(exc) from exc
    return Response(status_code=status.HTTP_204_NO_CONTENT)
