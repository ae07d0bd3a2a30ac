"""The served graph as an Agent Protocol assistant, and its state in the protocol's shapes.

One assistant per graph: its id is ``uuid5(NAMESPACE_GRAPH, graph_id)`` (the same derivation the
LangGraph server uses, so clients that hard-code it keep working), and the graph id itself is
accepted wherever an assistant id is.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid5

from langchain_core.runnables import RunnableConfig
from langgraph.pregel import Pregel
from langgraph.store.base import BaseStore
from langgraph.types import StateSnapshot

from sandbox.libsets import LIBRARY_SETS
from server.agent_protocol.config import AgentProtocolSettings
from server.agent_protocol.context_policy import ContextPolicy
from server.agent_protocol.memory.tenant import TenantMemoryStore
from server.agent_protocol.serde import dumps_to_obj

__all__ = ["NAMESPACE_GRAPH", "GraphHost", "load_graph", "snapshot_to_state"]

logger = logging.getLogger(__name__)

NAMESPACE_GRAPH = UUID("6ba7b821-9dad-11d1-80b4-00c04fd430c8")
_CREATED_AT = datetime(2025, 1, 1, tzinfo=UTC).isoformat()


def load_graph(ref: str) -> Pregel[Any, Any, Any, Any]:
    """Import ``module:attribute`` and check it is a compiled graph."""
    module_name, _, attr = ref.partition(":")
    graph = getattr(importlib.import_module(module_name), attr or "graph")
    if not isinstance(graph, Pregel):
        raise TypeError(f"{ref} is a {type(graph).__name__}, not a compiled LangGraph graph")
    return graph


def _checkpoint(config: RunnableConfig | None) -> dict[str, Any] | None:
    if not config:
        return None
    conf = config.get("configurable", {})
    return {
        "thread_id": conf.get("thread_id"),
        "checkpoint_ns": conf.get("checkpoint_ns", ""),
        "checkpoint_id": conf.get("checkpoint_id"),
        "checkpoint_map": conf.get("checkpoint_map"),
    }


def _interrupt(item: Any) -> dict[str, Any]:
    return {"value": getattr(item, "value", item), "id": getattr(item, "id", "")}


def snapshot_to_state(snapshot: StateSnapshot) -> dict[str, Any]:
    """Convert a LangGraph ``StateSnapshot`` to the protocol's ``ThreadState`` (plain JSON values)."""
    tasks = [
        {
            "id": t.id,
            "name": t.name,
            "path": list(t.path),
            "error": repr(t.error) if t.error else None,
            "interrupts": [_interrupt(i) for i in t.interrupts],
            "checkpoint": _checkpoint(t.state) if isinstance(t.state, dict) else None,
            "state": snapshot_to_state(t.state) if isinstance(t.state, StateSnapshot) else None,
            "result": t.result,
        }
        for t in snapshot.tasks
    ]
    return dumps_to_obj(  # type: ignore[no-any-return]
        {
            "values": snapshot.values,
            "next": list(snapshot.next),
            "tasks": tasks,
            "metadata": snapshot.metadata,
            "created_at": snapshot.created_at,
            "checkpoint": _checkpoint(snapshot.config),
            "parent_checkpoint": _checkpoint(snapshot.parent_config),
            "interrupts": [_interrupt(i) for i in snapshot.interrupts],
        }
    )


def interrupts_by_task(snapshot: StateSnapshot) -> dict[str, list[dict[str, Any]]]:
    """Pending interrupts keyed by task id, as ``Thread.interrupts`` wants them."""
    found: dict[str, list[dict[str, Any]]] = {}
    for task in snapshot.tasks:
        if task.interrupts:
            found[task.id] = dumps_to_obj([_interrupt(i) for i in task.interrupts])
    return found


def _defaults_of(schema: type | None) -> Any:
    """An instance of a dataclass context schema with every default, or None (not one, or no defaults)."""
    if schema is None or not dataclasses.is_dataclass(schema):
        return None
    try:
        return schema()
    except Exception as exc:  # a field without a default, or a factory that fails: build per run
        logger.info("context %s has no complete defaults (%s); built per run", schema.__name__, exc)
        return None


class GraphHost:
    """The compiled graph bound to the checkpointer, described as the protocol's one assistant."""

    def __init__(
        self,
        graph: Pregel[Any, Any, Any, Any],
        graph_id: str,
        settings: AgentProtocolSettings | None = None,
        library_sets: Collection[str] = frozenset(LIBRARY_SETS),
        *,
        memory: BaseStore | None = None,
    ) -> None:
        """``library_sets``: those a client may pick (the server's sandbox backend's ready ones);
        ``memory``: the long-term memory store, which runs see through their tenant's view."""
        self.graph = graph
        self.graph_id = graph_id
        self.memory = memory
        self._settings = settings or AgentProtocolSettings()
        self.assistant_id = str(uuid5(NAMESPACE_GRAPH, graph_id))
        self.policy = ContextPolicy(
            getattr(graph, "context_schema", None), settings or AgentProtocolSettings(), library_sets
        )
        self._default_context = _defaults_of(getattr(graph, "context_schema", None))

    def graph_for(self, tenant: str) -> Pregel[Any, Any, Any, Any]:
        """The graph a run of ``tenant`` executes: its ``store`` is the tenant's view of the memory store.

        A copy per run (tens of microseconds): nodes reach the store through LangGraph's
        ``Runtime.store`` / ``get_store()``, which name no tenant, so the scope must be the store's.
        """
        if self.memory is None:
            return self.graph
        view = TenantMemoryStore(self.memory, tenant, self._settings.memory)
        return self.graph.copy(update={"store": view})

    def matches(self, assistant_id: str) -> bool:
        """True for the assistant's uuid or its graph id."""
        return assistant_id in (self.assistant_id, self.graph_id)

    def context_for(self, client: dict[str, Any], server: dict[str, Any]) -> Any:
        """The run's context: the client's checked values, then the server's objects over them.

        ``client`` must come from :meth:`ContextPolicy.check` (run at create time, so a bad context is
        a 422, not a failed run); the server's values (tenant-scoped store, sandbox) always win.
        A dataclass context is built from the defaults read once at start-up (the operator's
        settings do not change while the process runs); other schemas get the dict.
        """
        merged = {**client, **server}
        declared = self.policy.declared_fields(getattr(self.graph, "context_schema", None))
        if declared:
            merged = {k: v for k, v in merged.items() if k in declared}
        if self._default_context is not None:
            # Every field given: no default factory runs (the graph's read the environment per field).
            return dataclasses.replace(self._default_context, **merged)
        return merged or None

    def assistant(self) -> dict[str, Any]:
        """The protocol's ``Assistant`` object."""
        return {
            "assistant_id": self.assistant_id,
            "graph_id": self.graph_id,
            "config": {},
            "context": {},
            "created_at": _CREATED_AT,
            "updated_at": _CREATED_AT,
            "metadata": {"created_by": "system"},
            "version": 1,
            "name": self.graph_id,
            "description": None,
        }

    def drawable(self, xray: bool | int = False) -> dict[str, Any]:
        """The graph's nodes and edges (``Graph.to_json``)."""
        return dumps_to_obj(self.graph.get_graph(xray=xray).to_json())  # type: ignore[no-any-return]

    def schemas(self) -> dict[str, Any]:
        """Input / output / state / config / context JSON schemas; a failing one becomes None."""

        def safe(fn: Any) -> Any:
            try:
                return dumps_to_obj(fn())
            except Exception as exc:  # schema generation of user types may fail; the rest still helps
                logger.warning("schema generation failed: %s", exc)
                return None

        graph = self.graph
        return {
            "graph_id": self.graph_id,
            "input_schema": safe(lambda: graph.get_input_jsonschema()),
            "output_schema": safe(lambda: graph.get_output_jsonschema()),
            "state_schema": safe(lambda: graph.get_input_jsonschema() | {"title": "State"}),
            "config_schema": safe(lambda: graph.config_schema().model_json_schema()),
            "context_schema": self.policy.public_schema(safe(lambda: graph.get_context_jsonschema())),
        }
