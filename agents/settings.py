"""Environment defaults of the graph's own options (env prefix ``AGENTIC_``).

``agents.context.Context`` takes its defaults from here and ``agents.checkpoint`` its database; the
model endpoint comes from ``agents.config.ModelSettings``. Nothing else in ``agents`` reads the
environment.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["GraphSettings", "default_data_dir"]


def default_data_dir() -> Path:
    """Return the default data dir (``~/.local/share/agentic``)."""
    return Path.home() / ".local" / "share" / "agentic"


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
    database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("AGENTIC_DATABASE_URL", "DATABASE_URL", "database_url"),
        description="Postgres URL for checkpoints; SQLite under data_dir when unset.",
    )
    data_dir: Path = Field(
        default_factory=default_data_dir,
        validation_alias=AliasChoices("AGENTIC_DATA_DIR", "data_dir"),
    )
