"""Everything the Agent Protocol routes need, opened and closed together by the router's lifespan.

``AgentProtocolService.open(settings)`` loads the graph, binds it to the checkpointer from
``agents.checkpoint`` (and each run to its tenant's view of the memory store), migrates the
threads / runs tables and starts the run manager and the cron scheduler; leaving the context
cancels the runs still going here (they are marked ``interrupted``) and closes the rest. Runs left
``running`` by a process that was killed are resumed by any process's worker
(:mod:`server.agent_protocol.runs.worker`).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver

from agents.checkpoint import open_checkpointer
from sandbox.libsets import LIBRARY_SETS, ready_library_sets
from server.agent_protocol.assistants import Assistants
from server.agent_protocol.config import AgentProtocolSettings
from server.agent_protocol.crons.scheduler import CronScheduler
from server.agent_protocol.crons.service import Crons
from server.agent_protocol.graphs import GraphHost, load_graph
from server.agent_protocol.memory.backends import open_memory_store
from server.agent_protocol.memory.semantic import SemanticStore
from server.agent_protocol.runs.manager import RunManager
from server.agent_protocol.storage.assistants import AssistantStore
from server.agent_protocol.storage.crons import CronStore
from server.agent_protocol.storage.store import ProtocolStore, async_url

__all__ = ["AgentProtocolService"]

logger = logging.getLogger(__name__)


def _checkpointer(settings: AgentProtocolSettings) -> AbstractAsyncContextManager[BaseCheckpointSaver[Any]]:
    """The graph's checkpointer from ``agents.checkpoint`` (the graph owns how checkpoints are stored).

    Same database as the threads and runs: Postgres with a URL, SQLite in the data dir otherwise.
    """
    return open_checkpointer(settings.database_url or None, data_dir=settings.data_dir)


async def _library_sets(context_extras: dict[str, Any] | None) -> frozenset[str]:
    """The sets a run's context may name: those the server's sandbox has ready (every known one without)."""
    sandbox = (context_extras or {}).get("sandbox")
    if sandbox is None:
        return frozenset(LIBRARY_SETS)
    return ready_library_sets(await sandbox.library_sets())


@dataclass(frozen=True, kw_only=True)
class AgentProtocolService:
    """The store of threads and runs, the served graph, its assistants, and the run manager."""

    settings: AgentProtocolSettings
    store: ProtocolStore
    host: GraphHost
    manager: RunManager
    checkpointer: BaseCheckpointSaver[Any]
    assistants: Assistants
    crons: Crons
    memory: SemanticStore

    @classmethod
    @asynccontextmanager
    async def open(
        cls, settings: AgentProtocolSettings, context_extras: dict[str, Any] | None = None
    ) -> AsyncIterator[AgentProtocolService]:
        """Open every part; yield the service; cancel runs and close on exit.

        Args:
            settings: Where to store threads and runs, which graph to serve.
            context_extras: Live objects handed to every run's context when the graph declares them
                (the server's workspace store and sandbox), so runs share the server's.
        """
        async with AsyncExitStack() as stack:
            store = ProtocolStore.from_url(async_url(settings.database_url, settings.data_dir))
            stack.push_async_callback(store.close)
            await store.setup()
            saver = await stack.enter_async_context(_checkpointer(settings))
            memory = await stack.enter_async_context(
                open_memory_store(settings.memory, settings.database_url, store)
            )
            graph = load_graph(settings.graph_ref).copy(update={"checkpointer": saver})
            host = GraphHost(
                graph, settings.graph_id, settings, await _library_sets(context_extras), memory=memory
            )
            assistants = Assistants(AssistantStore(store), host)
            manager = RunManager(
                store,
                host,
                settings,
                context_extras,
                assistants=assistants,
                database_url=settings.database_url,
            )
            stack.push_async_callback(manager.close)
            manager.start()  # the worker: claims queued runs, and those a stopped process left behind
            cron_store = CronStore(store)
            scheduler = CronScheduler(cron_store, assistants, manager, settings)
            stack.push_async_callback(scheduler.close)  # stops before the manager does
            scheduler.start()  # fires due crons into the queue
            crons = Crons(cron_store, store, assistants, settings, on_scheduled=scheduler.wake)
            logger.info(
                "agent protocol ready: graph %s as assistant %s", settings.graph_ref, host.assistant_id
            )
            yield cls(
                settings=settings,
                store=store,
                host=host,
                manager=manager,
                checkpointer=saver,
                assistants=assistants,
                crons=crons,
                memory=memory,
            )
