"""Mount the Agent Protocol on the server's app: routers, their lifespan, the API-key guard, errors.

``install_agent_protocol(app)`` is called once from ``server.app.create_app``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse

from server.agent_protocol.api import assistants, crons, meta, runs, stateless_runs, store, threads
from server.agent_protocol.config import AgentProtocolSettings
from server.agent_protocol.errors import AgentProtocolError
from server.agent_protocol.service import AgentProtocolService
from server.deps import require_api_key
from server.errors import error_response

__all__ = ["install_agent_protocol", "service_router"]

logger = logging.getLogger(__name__)


def _settings_of(app: FastAPI, settings: AgentProtocolSettings | None) -> AgentProtocolSettings:
    if settings is not None:
        return settings
    composed = getattr(getattr(app.state, "settings", None), "agent_protocol", None)
    return composed if isinstance(composed, AgentProtocolSettings) else AgentProtocolSettings()


def service_router(settings: AgentProtocolSettings | None = None) -> APIRouter:
    """A router with no routes whose lifespan opens and closes the service (merged into the app's)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        extras = {name: getattr(app.state, name, None) for name in ("store", "sandbox", "apps")}
        app.state.agent_protocol = None
        try:
            async with AgentProtocolService.open(_settings_of(app, settings), extras) as service:
                app.state.agent_protocol = service
                app.state.agent_protocol_error = None
                yield
                return
        except Exception as exc:
            if app.state.agent_protocol is not None:
                raise
            # The REST API stays useful without the graph; the protocol routes answer 503 with the reason.
            logger.error("agent protocol unavailable: %s: %s", type(exc).__name__, exc)
            app.state.agent_protocol_error = f"{type(exc).__name__}: {exc}"
        yield

    return APIRouter(lifespan=lifespan)


async def _handle_protocol_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AgentProtocolError)
    return error_response(exc.status, exc.kind, str(exc) or exc.kind)


def install_agent_protocol(app: FastAPI, settings: AgentProtocolSettings | None = None) -> None:
    """Mount the Agent Protocol on ``app`` (call once, from ``create_app``).

    The route modules' routers go on the app itself, each with the API-key guard, not under one
    Agent Protocol router: FastAPI walks every level of nested routers on each request (to see
    whether their routes changed), and that level cost 0.04-0.06 ms of server CPU per request
    (``POST /threads``, ``GET`` of a run; 1,000 of each, sequential).
    """
    app.include_router(service_router(settings))
    # Tried in this order (see create_app): a chat run's requests first. No route here takes another's
    # requests (tests/server/test_routes.py), so the order changes only how soon one is found.
    for module in (runs, threads, stateless_runs, crons, assistants, store, meta):
        app.include_router(module.router, dependencies=[Depends(require_api_key)])
    app.add_exception_handler(AgentProtocolError, _handle_protocol_error)
