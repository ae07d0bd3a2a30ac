"""The UI tests drive the same kind of server as the Agent Protocol tests (agent graph, scripted model)."""

from tests.server.agent_protocol.conftest import agent_server, scripted_llm

__all__ = ["agent_server", "scripted_llm"]
