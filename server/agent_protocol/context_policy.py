"""What a client may put in a run's ``context``, and within which bounds the operator allows.

A run's ``context`` is untrusted input like the rest of the request. The graph names the fields a
client may set (dataclass field metadata ``client=True``, see :mod:`agents.context`); this module
refuses every other field the graph declares (model endpoint, API key, sandbox backend, the live
``store`` / ``sandbox`` / ``web_search`` / ``apps`` objects) with a 422 that lists what may be set,
checks each value's type, and holds it within the operator's bounds (:class:`AgentProtocolSettings`):
attempts and steps up to a maximum, a tier up to the operator's largest, a library set the
server's sandbox backend has ready (asked once, when the protocol starts: ``Sandbox.library_sets``),
a model name from the operator's list. Keys the graph does not declare at all are
dropped (a client sending an option this graph lacks should not fail the run).

The server's objects are added after this check (:meth:`GraphHost.context_for`) and always win.
"""

from __future__ import annotations

import logging
import typing
from collections.abc import Collection, Mapping
from typing import Any, get_args

from pydantic import TypeAdapter, ValidationError

from agents.context import client_fields
from sandbox.resources import Tier
from server.agent_protocol.config import AgentProtocolSettings
from server.agent_protocol.errors import InvalidRunError

__all__ = ["ContextPolicy", "InvalidContextError"]

logger = logging.getLogger(__name__)

_TIERS: tuple[str, ...] = get_args(Tier)


class InvalidContextError(InvalidRunError):
    """The run's context sets a field clients may not set, or a value outside the operator's bounds."""

    kind = "invalid_context"


class ContextPolicy:
    """Checks the client's context of one graph against the operator's bounds."""

    def __init__(
        self,
        schema: type | None,
        settings: AgentProtocolSettings,
        library_sets: Collection[str],
    ) -> None:
        self._schema = schema
        self._settings = settings
        self._library_sets = frozenset(library_sets)
        self.allowed = client_fields(schema) if schema is not None else frozenset()
        self._declared = self.declared_fields(schema)
        hints = typing.get_type_hints(schema) if schema is not None and self.allowed else {}
        self._adapters = {name: TypeAdapter(hints[name]) for name in self.allowed if name in hints}

    @staticmethod
    def declared_fields(schema: type | None) -> frozenset[str]:
        if schema is None:
            return frozenset()
        fields = getattr(schema, "__dataclass_fields__", None)
        if isinstance(fields, dict):
            return frozenset(fields)
        model_fields = getattr(schema, "model_fields", None)
        if isinstance(model_fields, dict):
            return frozenset(model_fields)
        hints = getattr(schema, "__annotations__", None)
        return frozenset(hints) if isinstance(hints, dict) else frozenset()

    def check(self, requested: Mapping[str, Any] | None) -> dict[str, Any]:
        """Return the client's values that may reach the graph.

        Raises:
            InvalidContextError: a field clients may not set, a wrongly typed value, or one outside
                the operator's bounds (the message names the field and what is allowed).
        """
        if not requested:
            return {}
        if not isinstance(requested, Mapping):
            raise InvalidContextError("context must be an object")
        forbidden = sorted(k for k in requested if k in self._declared and k not in self.allowed)
        if forbidden:
            may = ", ".join(sorted(self.allowed)) or "nothing"
            raise InvalidContextError(
                f"context field(s) {', '.join(forbidden)} are set by the server's operator, not per run; "
                f"clients may set: {may}"
            )
        dropped = sorted(k for k in requested if k not in self._declared)
        if dropped:
            logger.debug("context keys not in the graph's schema dropped: %s", dropped)
        values: dict[str, Any] = {}
        for name in sorted(k for k in requested if k in self.allowed):
            value = requested[name]
            adapter = self._adapters.get(name)
            if adapter is not None:
                try:
                    value = adapter.validate_python(value)
                except ValidationError as exc:
                    problem = exc.errors()[0].get("msg", "invalid value")
                    raise InvalidContextError(f"context.{name}: {problem} (got {value!r:.80})") from None
            self._bound(name, value)
            values[name] = value
        return values

    def _bound(self, name: str, value: Any) -> None:
        """Refuse a value outside the operator's bounds for that field."""
        s = self._settings
        if name == "max_attempts" and not 1 <= value <= s.client_max_attempts:
            raise InvalidContextError(
                f"context.max_attempts must be between 1 and {s.client_max_attempts}, got {value}"
            )
        if name == "max_steps" and not 1 <= value <= s.client_max_steps:
            raise InvalidContextError(
                f"context.max_steps must be between 1 and {s.client_max_steps}, got {value}"
            )
        if name == "tier" and value is not None:
            allowed = _TIERS[: _TIERS.index(s.client_max_tier) + 1]
            if value not in allowed:
                raise InvalidContextError(f"context.tier must be one of {', '.join(allowed)}, got {value!r}")
        if name == "library_set" and value not in self._library_sets:
            raise InvalidContextError(
                f"context.library_set must be one of {', '.join(sorted(self._library_sets))}, got {value!r}"
            )
        if name == "model_name" and value is not None and value not in s.client_models:
            offered = ", ".join(s.client_models) or "none (the operator's model only)"
            raise InvalidContextError(f"context.model_name {value!r} is not offered; models: {offered}")

    def public_schema(self, schema: dict[str, Any] | None) -> dict[str, Any] | None:
        """The graph's context JSON schema reduced to what clients may set (what forms should show)."""
        if not schema or not isinstance(schema.get("properties"), dict):
            return schema
        properties = {k: v for k, v in schema["properties"].items() if k in self.allowed}
        reduced = {**schema, "properties": properties}
        if isinstance(schema.get("required"), list):
            reduced["required"] = [k for k in schema["required"] if k in self.allowed]
        return reduced
