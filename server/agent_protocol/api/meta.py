"""``/info``: what this server supports (the SDK and Studio probe it first)."""

from __future__ import annotations

from typing import Any

import langgraph.version
from fastapi import APIRouter

from server.agent_protocol.api.deps import ServiceDep
from server.agent_protocol.api.json_body import JSONBodyRoute

__all__ = ["router"]

router = APIRouter(tags=["agent-protocol"], route_class=JSONBodyRoute)


@router.get("/info")
async def get_info(service: ServiceDep) -> dict[str, Any]:
    """Server version and feature flags (assistants yes; no crons, no store, no LangSmith)."""
    return {
        "version": "agentic-0.1.0",
        "langgraph_py_version": langgraph.version.__version__,
        "flags": {
            "assistants": True,
            "crons": False,
            "langsmith": False,
            "langsmith_tracing_replicas": False,
        },
        "host": {"kind": "self-hosted", "project_id": None, "revision_id": None, "tenant_id": None},
        "graphs": [service.host.graph_id],
    }
