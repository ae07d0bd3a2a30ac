"""The context policy on the real agent graph's ``Context``: what a client may set, within which bounds."""

from __future__ import annotations

from typing import Any

import pytest

from agents.context import Context
from sandbox.libsets import LIBRARY_SETS
from server.agent_protocol.config import AgentProtocolSettings
from server.agent_protocol.context_policy import ContextPolicy, InvalidContextError


def _policy(**settings: Any) -> ContextPolicy:
    return ContextPolicy(Context, AgentProtocolSettings(**settings), LIBRARY_SETS)


def test_client_fields_pass_checked_and_typed() -> None:
    values = _policy(client_models=["small"]).check(
        {"max_attempts": "2", "tier": "medium", "require_approval": True, "model_name": "small"}
    )
    assert values == {"max_attempts": 2, "tier": "medium", "require_approval": True, "model_name": "small"}


def test_unknown_keys_are_dropped_operator_keys_refused() -> None:
    policy = _policy()
    assert policy.check({"not_a_field": 1}) == {}
    for key in ("store", "sandbox", "web_search", "model_base_url", "model_api_key", "sandbox_backend"):
        with pytest.raises(InvalidContextError, match=key):
            policy.check({key: None})


@pytest.mark.parametrize(
    ("settings", "context", "match"),
    [
        ({"client_max_attempts": 3}, {"max_attempts": 4}, "between 1 and 3"),
        ({}, {"max_steps": 0}, "max_steps"),
        ({"client_max_tier": "medium"}, {"tier": "heavy"}, "light, medium"),
        ({}, {"library_set": "nope"}, "library_set"),
        ({}, {"model_name": "other"}, "not offered"),
        ({}, {"generate_tests": [1]}, "generate_tests"),
    ],
)
def test_out_of_bounds(settings: dict[str, Any], context: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidContextError, match=match):
        _policy(**settings).check(context)


def test_public_schema_keeps_only_client_fields() -> None:
    schema = {"properties": {"max_attempts": {}, "model_base_url": {}}, "required": ["model_base_url"]}
    assert _policy().public_schema(schema) == {"properties": {"max_attempts": {}}, "required": []}


def test_a_graph_without_client_fields_accepts_no_context_values() -> None:
    from dataclasses import dataclass

    @dataclass
    class Plain:
        store: Any = None

    policy = ContextPolicy(Plain, AgentProtocolSettings(), LIBRARY_SETS)
    with pytest.raises(InvalidContextError, match="clients may set: nothing"):
        policy.check({"store": "x"})
