"""Dependencies of the routes, each paired with an ``Annotated`` alias (``StoreDep``, ``SandboxDep``).

The lifespan in :mod:`server.app` puts the settings, the store and the sandbox on ``app.state``;
these functions hand them to handlers, and ``require_api_key`` guards every ``/v1`` and Agent
Protocol route: it finds the caller's tenant and applies the per-key rate limit. ``StoreDep`` is a
:class:`~server.tenancy.TenantStore`, so a route cannot reach another tenant's workspace.
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from opentelemetry import trace

from sandbox.base import Sandbox
from server import logs
from server.config import DEFAULT_TENANT, Settings
from server.keys import KeyRing
from server.metrics import RATE_LIMITED
from server.ratelimit import RateLimiter
from server.tenancy import Principal, TenantStore
from workspace.base import VersionStore

__all__ = [
    "ApiKeyDep",
    "PrincipalDep",
    "SandboxDep",
    "SettingsDep",
    "StoreDep",
    "TenantDep",
    "get_keyring",
    "get_rate_limiter",
    "get_sandbox",
    "get_settings",
    "get_store",
    "get_tenant",
    "require_api_key",
    "require_json",
]

logger = logging.getLogger(__name__)

# auto_error=False: we answer 401 ourselves, with the JSON envelope and one message for both headers.
_bearer = HTTPBearer(auto_error=False, description="API key as a Bearer token")
_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="API key")


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


# Dependencies are ``async def`` although they never await: FastAPI runs a plain ``def`` dependency
# in a worker thread, a hop to a thread and back for each one of each request.


async def get_settings(request: Request) -> Settings:
    """The settings the app was created with."""
    return _settings(request)


SettingsDep = Annotated[Settings, Depends(get_settings)]


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(
        status_code=status.HTTP_401_UNAUTHORIZED,
        detail={"type": "unauthorized", "message": message},
        headers={"WWW-Authenticate": "Bearer"},
    )


def get_keyring(request: Request) -> KeyRing:
    """The key ring opened by the lifespan (environment keys only when the lifespan did not run)."""
    keyring: KeyRing | None = getattr(request.app.state, "keyring", None)
    if keyring is None:
        keyring = KeyRing(_settings(request).tenant_keys)
        request.app.state.keyring = keyring
    return keyring


def get_rate_limiter(request: Request) -> RateLimiter:
    """The per-key token buckets of this app."""
    limiter: RateLimiter | None = getattr(request.app.state, "rate_limiter", None)
    if limiter is None:
        settings = _settings(request)
        limiter = RateLimiter(settings.rate_limit_per_minute, settings.bucket_size)
        request.app.state.rate_limiter = limiter
    return limiter


async def require_api_key(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    header_key: Annotated[str | None, Depends(_api_key_header)],
) -> Principal:
    """Find the caller's tenant from the API key (``Authorization: Bearer`` or ``X-API-Key``), then
    apply the rate limit of that key. With no key configured anywhere, everyone is tenant "default".

    Returns:
        The caller; also bound to the logs of this request.

    Raises:
        HTTPException: 401 for a missing or unknown key, 429 when the key's bucket is empty.
    """
    keyring = get_keyring(request)
    if not await keyring.enabled():
        host = request.client.host if request.client else "unknown"
        principal = Principal(tenant=DEFAULT_TENANT, key_id=f"anonymous-{host}")
    else:
        supplied = bearer.credentials if bearer is not None else header_key
        if not supplied:
            raise _unauthorized("missing API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'")
        found = await keyring.authenticate(supplied)
        if found is None:
            raise _unauthorized("invalid API key")
        principal = found
    wait_s = get_rate_limiter(request).acquire(principal.key_id)
    if wait_s > 0:
        RATE_LIMITED.inc()
        retry = RateLimiter.retry_after(wait_s)
        logger.info(
            "rate limit: key %s of tenant %s must wait %d s", principal.key_id, principal.tenant, retry
        )
        raise HTTPException(
            status_code=status.HTTP_429_TOO_MANY_REQUESTS,
            detail={
                "type": "rate_limited",
                "message": f"too many requests for this API key; retry in {retry} s",
            },
            headers={"Retry-After": str(retry)},
        )
    logs.bind(tenant=principal.tenant)
    trace.get_current_span().set_attribute("agentic.tenant", principal.tenant)  # a no-op, tracing off
    request.state.principal = principal
    return principal


PrincipalDep = Annotated[Principal, Depends(require_api_key)]
# Kept for compatibility with code written before tenants: same dependency.
ApiKeyDep = PrincipalDep


async def get_tenant(request: Request) -> str:
    """The caller's tenant, as the API-key guard of the route's router found it.

    Why not ``Depends(require_api_key)`` again: FastAPI solves a cached dependency's own
    dependencies (here the two security schemes) anew for each dependant, and dependency solving
    was a third of a simple request's server CPU (``GET`` of a run, under cProfile). Every router
    serving tenant data has the guard as a router dependency, which FastAPI solves before the
    route's own; a route without it authenticates here, the same way.
    """
    principal: Principal | None = getattr(request.state, "principal", None)
    if principal is None:
        principal = await require_api_key(request, await _bearer(request), await _api_key_header(request))
    return principal.tenant


TenantDep = Annotated[str, Depends(get_tenant)]


async def get_store(request: Request, tenant: TenantDep) -> VersionStore:
    """The version store opened by the lifespan, seen through the caller's tenant."""
    store: VersionStore = request.app.state.store
    return TenantStore(store, tenant)


StoreDep = Annotated[VersionStore, Depends(get_store)]


async def get_sandbox(request: Request, tenant: TenantDep) -> Sandbox:
    """The sandbox opened by the lifespan, as a view that charges the caller's tenant's budget."""
    sandbox: Sandbox = request.app.state.sandbox
    for_owner = getattr(sandbox, "for_owner", None)
    return for_owner(tenant) if for_owner is not None else sandbox


SandboxDep = Annotated[Sandbox, Depends(get_sandbox)]


async def require_json(request: Request) -> None:
    """Refuse bodies that are not JSON (e.g. a raw binary upload) with 415."""
    content_type = request.headers.get("content-type", "")
    media = content_type.split(";", 1)[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        raise HTTPException(
            status_code=status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            detail={
                "type": "unsupported_media_type",
                "message": f"expected a JSON body (application/json), got '{media or 'none'}'; "
                'binary files are not supported, send text as {"content": "..."}',
            },
        )
