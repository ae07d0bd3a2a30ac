"""Run-scoped options of the graph (``Runtime.context``), with defaults from the environment.

Who sets what: fields whose metadata says ``client=True`` (attempts, approval, checks, tier,
library set, model name) are the ones an Agent Protocol client may choose per run, within the
bounds the server's operator sets (``server.agent_protocol.context_policy``). Everything else is
the operator's: the model endpoint and its key, the sandbox backend, and the live objects
``store``, ``sandbox``, ``web_search`` and ``apps`` that the server injects, scoped to the run's
tenant (hidden from the JSON schema). Outside a server (``langgraph dev``, tests) the caller is the
operator and may set any field; with the objects left ``None`` the tools open process-wide ones
from settings (``tools.services``), except ``apps``: without the server nothing hosts apps, and
the Code Agent says so.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import ConfigDict
from pydantic.json_schema import SkipJsonSchema

from agents.settings import GraphSettings, ModelSettings

__all__ = ["CLIENT", "Context", "client_fields"]

CLIENT = "client"
"""Field metadata key: True when an Agent Protocol client may set the field per run."""


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
        default=None,
        repr=False,
        metadata={
            "description": "API key of the endpoint; None uses the operator's key, and only for the "
            "operator's endpoint (agents.models)."
        },
    )
    model_name: str | None = field(
        default_factory=lambda: _model().model,
        metadata={"description": "Model name sent to the endpoint.", CLIENT: True},
    )
    max_attempts: int = field(
        default_factory=lambda: _graph().max_attempts,
        metadata={"description": "How many times the Code Agent may run and repair the code.", CLIENT: True},
    )
    max_steps: int = field(
        default_factory=lambda: _graph().max_steps,
        metadata={"description": "How many Task Agent decisions one user turn may take.", CLIENT: True},
    )
    require_approval: bool = field(
        default_factory=lambda: _graph().require_approval,
        metadata={"description": "Pause for a human approve / edit / reject before each run.", CLIENT: True},
    )
    sandbox_backend: str | None = field(
        default_factory=lambda: _graph().sandbox_backend,
        metadata={"description": "Sandbox backend (local, gvisor, kata, unikraft)."},
    )
    tier: str | None = field(
        default_factory=lambda: _graph().tier,
        metadata={
            "description": "Resource tier light / medium / heavy; None lets the server choose.",
            CLIENT: True,
        },
    )
    library_set: str = field(
        default_factory=lambda: _graph().library_set,
        metadata={"description": "Library set for runs (base, datascience).", CLIENT: True},
    )
    generate_tests: bool = field(
        default_factory=lambda: _graph().generate_tests,
        metadata={
            "description": "Ask the model for a few assert checks and run them with the code.",
            CLIENT: True,
        },
    )
    structured_output: bool = field(
        default_factory=lambda: _graph().structured_output,
        metadata={"description": "Constrain routing replies with a JSON schema where supported."},
    )
    search_timeout_s: float = field(
        default_factory=lambda: _graph().search_timeout_s,
        metadata={"description": "Seconds the web search may take in total."},
    )
    search_read_pages: int = field(
        default_factory=lambda: _graph().search_read_pages,
        metadata={"description": "Web results the Search Agent reads in the sandboxed browser (0: none)."},
    )
    store: Injected = field(default=None, repr=False, compare=False)
    sandbox: Injected = field(default=None, repr=False, compare=False)
    web_search: Injected = field(default=None, repr=False, compare=False)
    apps: Injected = field(default=None, repr=False, compare=False)
    """The tenant's hosted apps (``tools.apps.AppHost``); None: hosting is unavailable here."""


def client_fields(schema: type) -> frozenset[str]:
    """Names of the fields of a dataclass context schema that clients may set (none if not a dataclass)."""
    if not dataclasses.is_dataclass(schema):
        return frozenset()
    return frozenset(f.name for f in dataclasses.fields(schema) if f.metadata.get(CLIENT))
