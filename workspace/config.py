"""Settings of the workspace package (env prefix ``AGENTIC_``) and the one way to open a store.

Only this module reads the environment for ``workspace``. ``DATABASE_URL`` (the usual name, also
read by the checkpointer) selects Postgres; without it the store is the embedded SQLite file
``<data_dir>/agentic.db``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from workspace.paths import MAX_PATH_LENGTH
from workspace.retention import (
    DEFAULT_RUN_OUTPUT_MAX_BYTES,
    DEFAULT_RUN_OUTPUT_PRUNE_INTERVAL_S,
    DEFAULT_RUN_OUTPUT_QUOTA_BYTES,
    DEFAULT_RUN_OUTPUT_RETENTION_S,
    RunOutputPolicy,
)
from workspace.sql import DEFAULT_MAX_FILE_BYTES, SqlVersionStore

__all__ = ["WorkspaceSettings", "default_data_dir", "open_store"]


def default_data_dir() -> Path:
    """Return the default data dir (``~/.local/share/agentic``)."""
    return Path.home() / ".local" / "share" / "agentic"


class WorkspaceSettings(BaseSettings):
    """Where versioned files are stored, and the caps on what may be stored."""

    model_config = SettingsConfigDict(env_prefix="AGENTIC_", extra="ignore", populate_by_name=True)

    data_dir: Path = Field(default_factory=default_data_dir, description="Holds agentic.db (SQLite).")
    database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("AGENTIC_DATABASE_URL", "DATABASE_URL", "database_url"),
        description="postgresql://... or sqlite:///...; None means <data_dir>/agentic.db.",
    )
    max_file_bytes: int = Field(
        default=DEFAULT_MAX_FILE_BYTES, gt=0, description="Cap on one file's UTF-8 size."
    )
    max_path_length: int = Field(default=MAX_PATH_LENGTH, gt=0, le=4096)
    run_output_retention_s: float = Field(
        default=DEFAULT_RUN_OUTPUT_RETENTION_S,
        ge=0,
        description="Age at which run output is deleted; 0 keeps it.",
    )
    run_output_max_bytes: int = Field(
        default=DEFAULT_RUN_OUTPUT_MAX_BYTES,
        ge=0,
        description="Cap on one run output (head + tail kept); 0: none.",
    )
    run_output_quota_bytes: int = Field(
        default=DEFAULT_RUN_OUTPUT_QUOTA_BYTES,
        ge=0,
        description="Run output kept per tenant (oldest out); 0: none.",
    )
    run_output_prune_interval_s: float = Field(
        default=DEFAULT_RUN_OUTPUT_PRUNE_INTERVAL_S, ge=0, description="Seconds between sweeps; 0: no sweeps."
    )

    def run_output_policy(self) -> RunOutputPolicy:
        """Return the limits on stored run output."""
        return RunOutputPolicy(
            max_bytes=self.run_output_max_bytes,
            quota_bytes=self.run_output_quota_bytes,
            retention_s=self.run_output_retention_s,
        )

    def resolved_url(self) -> str:
        """Return the database URL in use: ``database_url``, else the SQLite file in ``data_dir``."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir.expanduser() / 'agentic.db').resolve()}"


@contextlib.asynccontextmanager
async def open_store(
    settings: WorkspaceSettings | None = None, *, setup: bool = True
) -> AsyncIterator[SqlVersionStore]:
    """Open the configured store, run its ``setup()`` (unless ``setup=False``), close it after."""
    settings = settings or WorkspaceSettings()
    store = SqlVersionStore.from_url(
        settings.resolved_url(),
        max_file_bytes=settings.max_file_bytes,
        max_path_length=settings.max_path_length,
        run_outputs=settings.run_output_policy(),
    )
    try:
        if setup:
            await store.setup()
        yield store
    finally:
        await store.close()
