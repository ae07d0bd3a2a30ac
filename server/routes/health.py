"""``/healthz``: liveness plus which sandbox backends this host can run (no auth).

Each backend answers from its own preflight (:func:`sandbox.registry.available_backends`). Probing
starts a few short processes, so the answer is cached for a while: a monitoring system polling
every second must not spawn bubblewrap every second.
"""

from __future__ import annotations

import time

from fastapi import APIRouter, Request

from sandbox.registry import available_backends
from server import __version__
from server.deps import SettingsDep
from server.schemas import HealthPublic

__all__ = ["BACKENDS_TTL_S", "router"]

router = APIRouter(tags=["health"])

BACKENDS_TTL_S = 30.0


async def _backends(request: Request, settings: SettingsDep) -> dict[str, str | None]:
    cached: tuple[float, dict[str, str | None]] | None = getattr(request.app.state, "health_backends", None)
    if cached is not None and time.monotonic() - cached[0] < BACKENDS_TTL_S:
        return cached[1]
    backends = await available_backends(settings.sandbox)
    request.app.state.health_backends = (time.monotonic(), backends)
    return backends


@router.get("/healthz", response_model=HealthPublic)
async def get_health(request: Request, settings: SettingsDep) -> HealthPublic:
    """Report liveness and, per backend, null when usable or the reason with a fix hint."""
    url = settings.workspace.database_url or "sqlite"
    return HealthPublic(
        status="ok",
        version=__version__,
        sandbox_backend=settings.sandbox.backend,
        backends=await _backends(request, settings),
        store="postgresql" if url.startswith("postgres") else "sqlite",
        auth=settings.auth_enabled,
    )
