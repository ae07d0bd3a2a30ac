"""Agent Protocol subset (what ``langgraph-sdk``, agent-chat-ui and Studio call), on our FastAPI app.

Where things are (one role per folder; imports point down this list)::

    mount.py         install_agent_protocol(app): routers, lifespan, API-key guard, error mapping
    api/             the HTTP layer only: one router per resource (assistants, threads, thread runs,
                     stateless runs, meta); handlers call the run manager and the assistants
    service.py       opens store, graph, checkpointer and run manager together (the routers' lifespan)
    runs/            a run's life: manager (what routes call), worker (registry, claims, leases,
                     cancel), executor (drives the graph, records the outcome)
    streaming/       a run's events to clients: fan-out (streams), hubs and tails, SSE responses
    storage/         every SQL statement: threads and runs (store), assistants and their versions,
                     queue, stream events, stateless runs' temporary threads, NOTIFY
    status.py        RunStatus, ThreadStatus, CancelAction (user), Handover (internal)
    assistants.py    the default assistant and the tenants' own, checked by the context policy
    checkpoints.py   a thread's checkpoints copied or pruned (thread copy / prune)
    graphs.py, context_policy.py, schemas.py, serde.py, errors.py, config.py

Runs wait in a queue in the database that every server process's worker claims from; each run
executes in its own asyncio task; its events fan out through bounded per-subscriber buffers and,
for clients of other processes, through the event table. Graph state lives in the checkpointer.
"""

from server.agent_protocol.config import AgentProtocolSettings
from server.agent_protocol.errors import AgentProtocolError

__all__ = ["AgentProtocolError", "AgentProtocolSettings"]
