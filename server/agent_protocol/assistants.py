"""Assistants: the server's default one per graph, and the tenants' own, versioned configurations.

An assistant pins a graph, a ``config`` (tags, recursion limit) and a ``context`` (the options a
client may choose: model name from the operator's list, tier, attempts, approval...). Its context
is checked by the same operator policy as a run's (:class:`~server.agent_protocol.context_policy.
ContextPolicy`) when it is stored, and again when a run uses it (the operator may have lowered a
bound since): an assistant cannot carry a model endpoint, a key, a sandbox backend, or a value
past the operator's maximums. A run's context is laid over its assistant's, field by field, and
only the allowed fields exist in either, so what a client overrides per run is the allow-list and
everything else comes from the assistant (and, below it, from the operator's settings).

The default assistant of the served graph (``uuid5(NAMESPACE_GRAPH, graph_id)``, or the graph id)
is the operator's: every tenant sees it, no tenant may change or delete it. The others belong to
the tenant that created them; another tenant's reads as missing (404).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from server.agent_protocol.context_policy import InvalidContextError
from server.agent_protocol.errors import (
    AssistantNotFoundError,
    AssistantReadOnlyError,
    GraphNotFoundError,
    InvalidAssistantError,
)
from server.agent_protocol.graphs import GraphHost
from server.agent_protocol.schemas import AssistantSearch, RunCreate
from server.agent_protocol.storage.assistants import AssistantRecord, AssistantStore, AssistantVersionFields

__all__ = ["MAX_RECURSION_LIMIT", "Assistants", "is_uuid", "merged_config"]

MAX_RECURSION_LIMIT = 1000
_CONFIG_KEYS = ("configurable", "recursion_limit", "tags")
_SORT_KEYS = ("assistant_id", "graph_id", "name", "created_at", "updated_at")


def is_uuid(value: str) -> bool:
    """Whether ``value`` parses as a UUID (stored assistants have one; graph ids do not)."""
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def merged_config(assistant: AssistantRecord, run_config: Mapping[str, Any] | None) -> dict[str, Any]:
    """A run's config over its assistant's: the run's values win, tags add up, metadata names it."""
    config: dict[str, Any] = {**assistant.config, **(run_config or {})}
    tags = [*assistant.config.get("tags", []), *(run_config or {}).get("tags", [])]
    if tags:
        config["tags"] = list(dict.fromkeys(tags))
    config["metadata"] = {
        **(config.get("metadata") or {}),
        "assistant_id": assistant.assistant_id,
        "graph_id": assistant.graph_id,
    }
    return config


class Assistants:
    """Finds, checks and changes assistants for one tenant at a time."""

    def __init__(self, store: AssistantStore, host: GraphHost) -> None:
        self._store = store
        self._host = host
        public = host.assistant()
        self._default = AssistantRecord(
            assistant_id=public["assistant_id"],
            tenant="",
            version=public["version"],
            fields=AssistantVersionFields(
                graph_id=public["graph_id"],
                config=public["config"],
                context=public["context"],
                metadata=public["metadata"],
                name=public["name"],
                description=public["description"],
            ),
            created_at=public["created_at"],
            updated_at=public["updated_at"],
        )

    @property
    def store(self) -> AssistantStore:
        """The tenants' assistants in the database."""
        return self._store

    def is_default(self, assistant_id: str) -> bool:
        """The server's default assistant (by uuid or graph id)."""
        return self._host.matches(assistant_id)

    async def resolve(self, assistant_id: str, tenant: str) -> AssistantRecord:
        """The active version of an assistant ``tenant`` may use.

        Raises:
            AssistantNotFoundError: no such assistant, or another tenant's.
        """
        if self.is_default(assistant_id):
            return self._default
        record = await self._store.get(assistant_id, tenant) if is_uuid(assistant_id) else None
        if record is None:
            raise AssistantNotFoundError(f"assistant {assistant_id!r} not found")
        return record

    async def resolve_own(self, assistant_id: str, tenant: str) -> AssistantRecord:
        """Like :meth:`resolve`, for a change: the default assistant is read-only.

        Raises:
            AssistantNotFoundError, AssistantReadOnlyError.
        """
        if self.is_default(assistant_id):
            graph_id = self._host.graph_id
            raise AssistantReadOnlyError(
                f"assistant {assistant_id} is the server's default assistant of graph {graph_id!r}: the "
                "operator's configuration, not changeable through the API; create your own with "
                f'POST /assistants {{"graph_id": "{graph_id}", ...}}'
            )
        return await self.resolve(assistant_id, tenant)

    # checking ------------------------------------------------------------------------------------

    def checked(
        self, graph_id: str, config: Mapping[str, Any] | None, context: Mapping[str, Any] | None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """An assistant's config and context as they may be stored.

        ``config.configurable`` is the older name of ``context`` (as on the LangGraph server) and is
        stored as the context.

        Raises:
            GraphNotFoundError: a graph this server does not serve.
            InvalidAssistantError: an unknown config key, a bad tag or recursion limit, a context field
                that is not the graph's, or one the operator's policy refuses.
        """
        if graph_id != self._host.graph_id:
            raise GraphNotFoundError(
                f"graph {graph_id!r} not found; this server serves: {self._host.graph_id}"
            )
        config = dict(config or {})
        unknown = sorted(k for k in config if k not in _CONFIG_KEYS)
        if unknown:
            raise InvalidAssistantError(
                f"config key(s) {', '.join(unknown)} cannot be set on an assistant; it may set: "
                f"{', '.join(_CONFIG_KEYS)} (options of the graph go in context)"
            )
        configurable = config.pop("configurable", None)
        if configurable is not None and not isinstance(configurable, dict):
            raise InvalidAssistantError("config.configurable must be an object (prefer context)")
        if configurable and context:
            raise InvalidAssistantError(
                "give either context or config.configurable, not both (prefer context)"
            )
        self._check_config(config)
        return config, self._checked_context(dict(context or configurable or {}))

    def _check_config(self, config: dict[str, Any]) -> None:
        tags = config.get("tags")
        if tags is not None and (
            not isinstance(tags, list)
            or len(tags) > 64
            or not all(isinstance(t, str) and len(t) <= 128 for t in tags)
        ):
            raise InvalidAssistantError(
                "config.tags must be a list of at most 64 strings of up to 128 characters"
            )
        limit = config.get("recursion_limit")
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_RECURSION_LIMIT
        ):
            raise InvalidAssistantError(
                f"config.recursion_limit must be a whole number from 1 to {MAX_RECURSION_LIMIT}, "
                f"got {limit!r:.40}"
            )

    def _checked_context(self, context: dict[str, Any]) -> dict[str, Any]:
        policy = self._host.policy
        declared = policy.declared_fields(getattr(self._host.graph, "context_schema", None))
        unknown = sorted(k for k in context if k not in declared)
        if unknown:
            may = ", ".join(sorted(policy.allowed)) or "nothing"
            raise InvalidAssistantError(
                f"context field(s) {', '.join(unknown)} are not options of graph {self._host.graph_id!r}; "
                f"an assistant may set: {may}"
            )
        try:
            return policy.check(context)
        except InvalidContextError as exc:
            raise InvalidAssistantError(f"assistant {exc}") from None

    def run_payload(self, assistant: AssistantRecord, payload: RunCreate) -> RunCreate:
        """The run as it executes: its checked context over its assistant's, configs merged.

        Raises:
            InvalidContextError: the run's context breaks the operator's policy.
            InvalidAssistantError: the assistant's stored context does now (the bounds were lowered).
        """
        try:
            base = self._host.policy.check(assistant.context)
        except InvalidContextError as exc:
            raise InvalidAssistantError(
                f"assistant {assistant.assistant_id}'s stored {exc}; update it (PATCH /assistants/"
                f"{assistant.assistant_id}) to the operator's current bounds"
            ) from None
        context = {**base, **self._host.policy.check(payload.context)}
        return payload.model_copy(
            update={
                "assistant_id": assistant.assistant_id,
                "context": context or None,
                "config": merged_config(assistant, payload.config),
            }
        )

    # listing -------------------------------------------------------------------------------------

    async def matching(self, tenant: str, body: AssistantSearch) -> list[AssistantRecord]:
        """The default and ``tenant``'s assistants that match the filters, sorted (newest first)."""
        graph_id = body.graph_id
        if graph_id is not None and graph_id != self._host.graph_id:
            raise GraphNotFoundError(
                f"graph {graph_id!r} not found; this server serves: {self._host.graph_id}"
            )
        found = [self._default, *await self._store.of_tenant(tenant, graph_id)]
        if body.name:
            needle = body.name.lower()
            found = [a for a in found if needle in a.name.lower()]
        if body.metadata:
            wanted = body.metadata
            found = [a for a in found if all(a.metadata.get(k) == v for k, v in wanted.items())]
        key = body.sort_by if body.sort_by in _SORT_KEYS else "created_at"

        def sort_key(a: AssistantRecord) -> str:
            value = str(a.public()[key] or "")
            return value.lower() if key in ("name", "graph_id") else value

        found.sort(key=sort_key, reverse=(body.sort_order or "desc") == "desc")
        return found

    def versions_of_default(self) -> list[AssistantRecord]:
        """The default assistant's one version."""
        return [self._default]
