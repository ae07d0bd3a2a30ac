"""Settings of the Agent Protocol layer (env prefix ``AGENTIC_``).

``server.config`` composes this model into the server's one ``Settings``; nothing else in this
package reads the environment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from server.agent_protocol.memory.config import MemoryStoreSettings
from workspace.config import default_data_dir  # the project's one default (server may import workspace)

__all__ = ["AgentProtocolSettings", "default_data_dir"]


class AgentProtocolSettings(BaseSettings):
    """Where runs and threads are stored, which graph is served, and the streaming limits."""

    model_config = SettingsConfigDict(env_prefix="AGENTIC_", extra="ignore", populate_by_name=True)

    database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("AGENTIC_DATABASE_URL", "DATABASE_URL", "database_url"),
        description="Postgres URL; None means an embedded SQLite file in the data dir.",
    )
    data_dir: Path = Field(
        default_factory=default_data_dir,
        validation_alias=AliasChoices("AGENTIC_DATA_DIR", "data_dir"),
        description="Holds the SQLite file of threads and runs when no database URL is set.",
    )
    graph_ref: str = Field(
        default="agents.graph:graph",
        validation_alias=AliasChoices("AGENTIC_GRAPH_REF", "graph_ref"),
        description="``module:attribute`` of the compiled graph served as assistant ``agent``.",
    )
    graph_id: str = Field(default="agent", description="Graph id (and assistant name) clients ask for.")
    subscriber_queue_size: int = Field(
        default=1024,
        ge=2,
        description="Events buffered per subscriber before a slow client is resynced to the latest state.",
    )
    replay_buffer_size: int = Field(
        default=4096, ge=0, description="Events kept per run so a rejoin with Last-Event-ID can replay them."
    )
    finished_run_linger_s: float = Field(
        default=120.0, ge=0, description="How long a finished run's stream stays joinable in memory."
    )
    default_on_disconnect: Literal["cancel", "continue"] = Field(
        default="continue",
        description="What a stream / wait run does when its client leaves and the request did not say "
        "(``continue`` like the LangGraph server, so the SDK can reconnect).",
    )
    heartbeat_s: float = Field(default=10.0, gt=0, description="SSE keep-alive comment interval.")
    stream_coalesce_s: float = Field(
        default=0.005,
        ge=0,
        le=1,
        description="Stream events that come within this long of each other are sent in one write "
        "(fewer system calls and client wake-ups; an event waits at most this long). 0: one write "
        "per burst already buffered.",
    )
    run_lease_s: float = Field(
        default=30.0,
        gt=0,
        description="A process renews the lease of its active runs every third of this; a run whose lease "
        "ran out (its process died) is taken over and resumed by a live process.",
    )
    max_concurrent_runs: int = Field(
        default=32,
        ge=1,
        description="Runs this process executes at once; more wait in the database queue, where any "
        "server process sharing the database may claim them.",
    )
    queue_poll_s: float = Field(
        default=1.0,
        gt=0,
        description="How often the worker looks at the queue without being woken (Postgres wakes it with "
        "NOTIFY; on SQLite this process's own runs wake it at once).",
    )
    cancel_poll_s: float = Field(
        default=0.5,
        gt=0,
        description="How often a process checks for cancel requests of its runs made through another "
        "process (Postgres also sends them with NOTIFY).",
    )
    event_flush_s: float = Field(
        default=0.05,
        gt=0,
        description="Stream events are written to the database in batches gathered over this long, so "
        "clients of other processes can follow a run.",
    )
    tail_poll_s: float = Field(
        default=0.5,
        gt=0,
        description="How often a client of one process polls the events of a run executing on another "
        "(Postgres also wakes it with NOTIFY).",
    )
    persist_events: bool = Field(
        default=True,
        description="Write stream events to the database, so clients of other processes (or of this one "
        "after a restart, with Last-Event-ID) can follow a run; off keeps them in memory only.",
    )
    run_events_retention_s: float = Field(
        default=3600.0,
        ge=0,
        description="How long the stored events of a finished run stay (for Last-Event-ID rejoins).",
    )
    run_max_attempts: int = Field(
        default=2,
        ge=1,
        description="Executions a run may start (1 + resumes after restarts) before it is marked failed, "
        "so a run that crashes the server cannot crash it forever.",
    )
    # Crons (server.agent_protocol.crons).
    cron_min_interval_s: float = Field(
        default=60.0,
        ge=1,
        description="The shortest time between two fires of one cron: a schedule that fires more often "
        "is refused (422), and a fire is never followed by the next one sooner than this.",
    )
    cron_max_per_tenant: int = Field(
        default=100, ge=0, description="Crons one tenant may have at once (0: crons are off)."
    )
    cron_poll_s: float = Field(
        default=10.0,
        gt=0,
        description="How often the scheduler looks for crons made through other processes; it sleeps "
        "until the earliest fire it knows of when that comes sooner.",
    )
    # What clients may choose in a run's context (server.agent_protocol.context_policy).
    client_max_attempts: int = Field(
        default=5, ge=1, le=20, description="Largest context.max_attempts a client may ask for."
    )
    client_max_steps: int = Field(
        default=12, ge=1, le=50, description="Largest context.max_steps a client may ask for."
    )
    client_max_tier: Literal["light", "medium", "heavy"] = Field(
        default="heavy", description="Largest resource tier a client may ask for in context.tier."
    )
    client_models: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Model names (on the operator's endpoint) a client may pick with context.model_name; "
        "comma-separated in the environment. Empty: the operator's model only.",
    )

    memory: MemoryStoreSettings = Field(
        default_factory=MemoryStoreSettings,
        description="The long-term memory store (``/store/...``; ``AGENTIC_STORE_*``).",
    )

    @field_validator("client_models", mode="before")
    @classmethod
    def _split_models(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value
