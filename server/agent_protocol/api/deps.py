"""Dependencies of the Agent Protocol routes, each paired with an ``Annotated`` alias."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request

from server.agent_protocol.service import AgentProtocolService

__all__ = ["ServiceDep", "get_service"]


async def get_service(request: Request) -> AgentProtocolService:
    """The service opened by the Agent Protocol router's lifespan (``async``: no worker-thread hop)."""
    service: AgentProtocolService | None = getattr(request.app.state, "agent_protocol", None)
    if service is None:
        reason = getattr(request.app.state, "agent_protocol_error", None) or "not started"
        raise HTTPException(
            status_code=503,
            detail={"type": "agent_unavailable", "message": f"the agent graph is unavailable: {reason}"},
        )
    return service


ServiceDep = Annotated[AgentProtocolService, Depends(get_service)]
