"""Run-scoped options of the graph (``Runtime.context``), with defaults from the environment.

Plain values (model endpoint, attempts, approval, tier, ...) can be sent by any Agent Protocol
client. ``store``, ``sandbox`` and ``web_search`` are live objects the server or a test may inject;
they are hidden from the JSON schema, and when left ``None`` the tools open process-wide ones from
settings (``tools.services``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import ConfigDict
from pydantic.json_schema import SkipJsonSchema

from agents.config import ModelSettings
from agents.settings import GraphSettings

__all__ = ["Context"]


def _model() -> ModelSettings:
    return ModelSettings()


def _graph() -> GraphSettings:
    return GraphSettings()


Injected = Annotated[Any, SkipJsonSchema()]


@dataclass(kw_only=True)
class Context:
    """Options of one run of the agent graph."""

    __pydantic_config__ = ConfigDict(arbitrary_types_allowed=True)

    model_base_url: str | None = field(
        default_factory=lambda: _model().openai_base_url,
        metadata={"description": "OpenAI-compatible endpoint; None starts the embedded model."},
    )
    model_api_key: str | None = field(
        default_factory=lambda: _model().openai_api_key,
        metadata={"description": "API key of the endpoint."},
    )
    model_name: str | None = field(
        default_factory=lambda: _model().model,
        metadata={"description": "Model name sent to the endpoint."},
    )
    max_attempts: int = field(
        default_factory=lambda: _graph().max_attempts,
        metadata={"description": "How many times the Code Agent may run and repair the code."},
    )
    max_steps: int = field(
        default_factory=lambda: _graph().max_steps,
        metadata={"description": "How many Task Agent decisions one user turn may take."},
    )
    require_approval: bool = field(
        default_factory=lambda: _graph().require_approval,
        metadata={"description": "Pause for a human approve / edit / reject before each run."},
    )
    sandbox_backend: str | None = field(
        default_factory=lambda: _graph().sandbox_backend,
        metadata={"description": "Sandbox backend (local, gvisor, kata, unikraft)."},
    )
    tier: str | None = field(
        default_factory=lambda: _graph().tier,
        metadata={"description": "Resource tier light / medium / heavy; None lets the server choose."},
    )
    library_set: str = field(
        default_factory=lambda: _graph().library_set,
        metadata={"description": "Library set for runs (base, datascience)."},
    )
    generate_tests: bool = field(
        default_factory=lambda: _graph().generate_tests,
        metadata={"description": "Ask the model for a few assert checks and run them with the code."},
    )
    structured_output: bool = field(
        default_factory=lambda: _graph().structured_output,
        metadata={"description": "Constrain routing replies with a JSON schema where supported."},
    )
    search_timeout_s: float = field(
        default_factory=lambda: _graph().search_timeout_s,
        metadata={"description": "Seconds the web search may take in total."},
    )
    store: Injected = field(default=None, repr=False, compare=False)
    sandbox: Injected = field(default=None, repr=False, compare=False)
    web_search: Injected = field(default=None, repr=False, compare=False)
