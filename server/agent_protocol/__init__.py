"""Agent Protocol subset (what ``langgraph-sdk``, agent-chat-ui and Studio call), on our FastAPI app.

``server.agent_protocol.mount.install_agent_protocol(app)`` adds the routers (``/info``,
``/assistants``, ``/threads`` and their runs), their lifespan (which opens
:class:`~server.agent_protocol.service.AgentProtocolService`), the API-key guard and the mapping of
this package's errors to the server's JSON error envelope. Runs wait in a queue in the database
(:mod:`server.agent_protocol.run_queue`) that every server process's worker claims from
(:mod:`server.agent_protocol.worker`); each run executes in its own asyncio task
(:mod:`server.agent_protocol.executor`); its events fan out through bounded per-subscriber buffers
(:mod:`server.agent_protocol.streams`) and, for clients of other processes, through the event table
(:mod:`server.agent_protocol.events`, :mod:`server.agent_protocol.hubs`). Threads and runs are stored
with SQLAlchemy Core (:mod:`server.agent_protocol.storage`), graph state in the graph's checkpointer.
"""

from server.agent_protocol.config import AgentProtocolSettings
from server.agent_protocol.errors import AgentProtocolError

__all__ = ["AgentProtocolError", "AgentProtocolSettings"]
