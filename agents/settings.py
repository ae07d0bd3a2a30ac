"""The settings of ``agents`` (env prefix ``AGENTIC_``): the graph's own options and the model layer.

``agents.context.Context`` takes its defaults from here, ``agents.checkpoint`` its database, the
model factory and the embedded llama.cpp server their endpoint and tuning. The standard OpenAI
variables (``OPENAI_BASE_URL``, ``OPENAI_API_KEY``) are honoured so an existing client setup works
unchanged; the ``AGENTIC_`` names win when both are set. Nothing else in ``agents`` reads the
environment.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from workspace.config import default_data_dir  # the project's one default (agents may import workspace)

__all__ = ["GraphSettings", "ModelSettings", "default_cache_dir", "default_data_dir"]


class GraphSettings(BaseSettings):
    """Defaults for one graph run and where checkpoints are kept."""

    model_config = SettingsConfigDict(env_prefix="AGENTIC_", extra="ignore", populate_by_name=True)

    max_attempts: int = Field(default=3, ge=1, le=10, description="Code Agent runs per request.")
    max_steps: int = Field(default=6, ge=1, le=50, description="Task Agent decisions per user turn.")
    require_approval: bool = Field(default=False, description="Ask a human before each sandbox run.")
    sandbox_backend: str | None = Field(
        default=None,
        validation_alias=AliasChoices("AGENTIC_SANDBOX_BACKEND", "sandbox_backend"),
        description="Sandbox backend name; None means the sandbox settings' default.",
    )
    tier: str | None = Field(default=None, description="Resource tier; None lets the Resource Manager pick.")
    library_set: str = Field(default="base", description="Library set the Code Agent runs with.")
    generate_tests: bool = Field(default=True, description="Ask the model for assert checks (Python).")
    structured_output: bool = Field(default=True, description="Send a JSON schema with routing requests.")
    search_timeout_s: float = Field(default=4.0, gt=0, description="Whole web search budget.")
    search_read_pages: int = Field(
        default=2, ge=0, le=5, description="Web results the Search Agent reads in the sandboxed browser."
    )
    database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("AGENTIC_DATABASE_URL", "DATABASE_URL", "database_url"),
        description="Postgres URL for checkpoints; SQLite under data_dir when unset.",
    )
    checkpoint_flush_ms: int = Field(
        default=20,
        ge=0,
        le=60_000,
        description="Postgres: how long a run's checkpoint may wait to be committed with others "
        "(async durability; a run's are all committed before it is reported finished).",
    )
    data_dir: Path = Field(
        default_factory=default_data_dir,
        validation_alias=AliasChoices("AGENTIC_DATA_DIR", "data_dir"),
    )


def default_cache_dir() -> Path:
    """Return the default cache dir (``~/.cache/agentic``), shared by every checkout of the project."""
    return Path.home() / ".cache" / "agentic"


class ModelSettings(BaseSettings):
    """Which chat model the agents talk to, and how the embedded one is served.

    With no ``openai_base_url`` the embedded Qwen2.5-Coder model is served in-process by llama.cpp.
    """

    model_config = SettingsConfigDict(env_prefix="AGENTIC_", extra="ignore", populate_by_name=True)

    openai_base_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("AGENTIC_OPENAI_BASE_URL", "OPENAI_BASE_URL", "openai_base_url"),
        description="OpenAI-compatible endpoint; None means the embedded llama.cpp server.",
    )
    openai_api_key: str | None = Field(
        default=None,
        validation_alias=AliasChoices("AGENTIC_OPENAI_API_KEY", "OPENAI_API_KEY", "openai_api_key"),
        description="API key of the endpoint (not needed for the embedded server).",
    )
    model: str | None = Field(
        default=None,
        validation_alias=AliasChoices("AGENTIC_MODEL", "model"),
        description="Model name sent to the endpoint; ignored by the embedded server.",
    )
    temperature: float = Field(default=0.0, description="Default sampling temperature.")
    cache_dir: Path = Field(
        default_factory=default_cache_dir,
        validation_alias=AliasChoices("AGENTIC_CACHE_DIR", "cache_dir"),
        description="Where the assembled GGUF lives (outside the checkout, reused by fresh clones and CI).",
    )
    n_ctx: int = Field(
        default=8192,
        validation_alias=AliasChoices("AGENTIC_MODEL_N_CTX", "n_ctx"),
        description="Context window of the embedded server (tokens, shared by its parallel slots).",
    )
    n_parallel: int = Field(
        default=1,
        validation_alias=AliasChoices("AGENTIC_MODEL_N_PARALLEL", "n_parallel"),
        description="Concurrent request slots of the embedded server; each gets n_ctx / n_parallel.",
    )
    threads: int = Field(
        default_factory=lambda: os.cpu_count() or 2,
        validation_alias=AliasChoices("AGENTIC_MODEL_THREADS", "threads"),
        description="CPU threads for generation and prompt processing.",
    )
    omp_wait_policy: str = Field(
        default="PASSIVE",
        validation_alias=AliasChoices("AGENTIC_MODEL_OMP_WAIT_POLICY", "omp_wait_policy"),
        description="OpenMP idle policy; PASSIVE keeps llama.cpp fast when sandboxes compete for the cores.",
    )
    log_verbosity: int = Field(
        default=0,
        validation_alias=AliasChoices("AGENTIC_MODEL_LOG_VERBOSITY", "log_verbosity"),
        description="llama.cpp log verbosity (0 = errors only, 3 = per-request timings).",
    )
    max_tokens: int = Field(
        default=1024,
        validation_alias=AliasChoices("AGENTIC_MODEL_MAX_TOKENS", "max_tokens"),
        description="Default cap on generated tokens per reply for the embedded model.",
    )
    request_timeout: float = Field(
        default=600.0,
        validation_alias=AliasChoices("AGENTIC_MODEL_REQUEST_TIMEOUT", "request_timeout"),
        description="Seconds before a chat request is abandoned (CPU generation is slow).",
    )

    @property
    def models_dir(self) -> Path:
        """Directory holding assembled model files."""
        return self.cache_dir / "models"
