"""Schema of the Agent Protocol tables: the append-only migration list and the Core table objects.

Position + 1 in the list is the schema version; never edit or reorder an entry, append.
JSON columns are text, timestamps ISO-8601 text, so one DDL serves SQLite and Postgres.
"""

from __future__ import annotations

import sqlalchemy as sa

from workspace.migrations import MigrationSet

__all__ = [
    "MIGRATIONS",
    "assistant_versions_t",
    "assistants_t",
    "events_t",
    "migrations_t",
    "runs_t",
    "threads_t",
]

_STEPS: list[list[str]] = [
    [
        """CREATE TABLE IF NOT EXISTS ap_threads (
            thread_id VARCHAR(64) PRIMARY KEY,
            created_at VARCHAR(40) NOT NULL,
            updated_at VARCHAR(40) NOT NULL,
            metadata TEXT NOT NULL,
            status VARCHAR(16) NOT NULL,
            state_values TEXT,
            interrupts TEXT NOT NULL
        )""",
        """CREATE TABLE IF NOT EXISTS ap_runs (
            run_id VARCHAR(64) PRIMARY KEY,
            thread_id VARCHAR(64) NOT NULL,
            assistant_id VARCHAR(64) NOT NULL,
            created_at VARCHAR(40) NOT NULL,
            updated_at VARCHAR(40) NOT NULL,
            status VARCHAR(16) NOT NULL,
            metadata TEXT NOT NULL,
            multitask_strategy VARCHAR(16) NOT NULL,
            kwargs TEXT NOT NULL,
            error TEXT
        )""",
        "CREATE INDEX IF NOT EXISTS ap_runs_thread ON ap_runs (thread_id, created_at)",
        "CREATE INDEX IF NOT EXISTS ap_runs_status ON ap_runs (thread_id, status)",
    ],
    [  # 2: tenants; leases so a run whose process died is found and resumed by another (or the next)
        "ALTER TABLE ap_threads ADD COLUMN tenant VARCHAR(64) NOT NULL DEFAULT 'default'",
        "ALTER TABLE ap_runs ADD COLUMN tenant VARCHAR(64) NOT NULL DEFAULT 'default'",
        "ALTER TABLE ap_runs ADD COLUMN worker_id VARCHAR(64)",
        "ALTER TABLE ap_runs ADD COLUMN lease_until DOUBLE PRECISION",
        "ALTER TABLE ap_runs ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0",
        "CREATE INDEX IF NOT EXISTS ap_threads_tenant ON ap_threads (tenant, created_at)",
        "CREATE INDEX IF NOT EXISTS ap_runs_lease ON ap_runs (status, lease_until)",
    ],
    [  # 3: the shared run queue (cancel requests across processes) and the persisted stream events
        "ALTER TABLE ap_runs ADD COLUMN cancel_action VARCHAR(16)",
        "ALTER TABLE ap_runs ADD COLUMN ended_at DOUBLE PRECISION",
        "CREATE INDEX IF NOT EXISTS ap_runs_queue ON ap_runs (status, created_at)",
        "CREATE INDEX IF NOT EXISTS ap_runs_ended ON ap_runs (ended_at)",
        """CREATE TABLE IF NOT EXISTS ap_run_events (
            run_id VARCHAR(64) NOT NULL,
            seq INTEGER NOT NULL,
            event TEXT NOT NULL,
            data TEXT NOT NULL,
            PRIMARY KEY (run_id, seq)
        )""",
    ],
    [  # 4: assistants of tenants, versioned; a stateless run's result (its thread is gone when it ends)
        """CREATE TABLE IF NOT EXISTS ap_assistants (
            assistant_id VARCHAR(64) PRIMARY KEY,
            tenant VARCHAR(64) NOT NULL,
            graph_id VARCHAR(128) NOT NULL,
            version INTEGER NOT NULL,
            created_at VARCHAR(40) NOT NULL,
            updated_at VARCHAR(40) NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS ap_assistants_tenant ON ap_assistants (tenant, created_at)",
        """CREATE TABLE IF NOT EXISTS ap_assistant_versions (
            assistant_id VARCHAR(64) NOT NULL,
            version INTEGER NOT NULL,
            graph_id VARCHAR(128) NOT NULL,
            config TEXT NOT NULL,
            context TEXT NOT NULL,
            metadata TEXT NOT NULL,
            name TEXT NOT NULL,
            description TEXT,
            created_at VARCHAR(40) NOT NULL,
            PRIMARY KEY (assistant_id, version)
        )""",
        "ALTER TABLE ap_runs ADD COLUMN result TEXT",
    ],
]

_meta = sa.MetaData()
migrations_t = sa.Table(
    "agent_protocol_migrations",
    _meta,
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("applied_at", sa.String(40), nullable=False),
)
# One DDL serves both dialects.
MIGRATIONS = MigrationSet("agent protocol", migrations_t, {"sqlite": _STEPS, "postgresql": _STEPS})
threads_t = sa.Table(
    "ap_threads",
    _meta,
    sa.Column("thread_id", sa.String(64), primary_key=True),
    sa.Column("created_at", sa.String(40)),
    sa.Column("updated_at", sa.String(40)),
    sa.Column("metadata", sa.Text),
    sa.Column("status", sa.String(16)),
    sa.Column("state_values", sa.Text),
    sa.Column("interrupts", sa.Text),
    sa.Column("tenant", sa.String(64)),
)
runs_t = sa.Table(
    "ap_runs",
    _meta,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("thread_id", sa.String(64)),
    sa.Column("assistant_id", sa.String(64)),
    sa.Column("created_at", sa.String(40)),
    sa.Column("updated_at", sa.String(40)),
    sa.Column("status", sa.String(16)),
    sa.Column("metadata", sa.Text),
    sa.Column("multitask_strategy", sa.String(16)),
    sa.Column("kwargs", sa.Text),
    sa.Column("error", sa.Text),
    sa.Column("tenant", sa.String(64)),
    sa.Column("worker_id", sa.String(64)),
    sa.Column("lease_until", sa.Float),
    sa.Column("attempts", sa.Integer),
    sa.Column("cancel_action", sa.String(16)),
    sa.Column("ended_at", sa.Float),
    sa.Column("result", sa.Text),
)
events_t = sa.Table(
    "ap_run_events",
    _meta,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True),
    sa.Column("event", sa.Text),
    sa.Column("data", sa.Text),
)
assistants_t = sa.Table(
    "ap_assistants",
    _meta,
    sa.Column("assistant_id", sa.String(64), primary_key=True),
    sa.Column("tenant", sa.String(64)),
    sa.Column("graph_id", sa.String(128)),
    sa.Column("version", sa.Integer),  # the active one (``/latest`` moves it)
    sa.Column("created_at", sa.String(40)),
    sa.Column("updated_at", sa.String(40)),
)
assistant_versions_t = sa.Table(
    "ap_assistant_versions",
    _meta,
    sa.Column("assistant_id", sa.String(64), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("graph_id", sa.String(128)),
    sa.Column("config", sa.Text),
    sa.Column("context", sa.Text),
    sa.Column("metadata", sa.Text),
    sa.Column("name", sa.Text),
    sa.Column("description", sa.Text),
    sa.Column("created_at", sa.String(40)),
)
