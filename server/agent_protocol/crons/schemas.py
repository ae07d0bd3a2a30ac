"""Request bodies of the cron routes, as ``langgraph-sdk`` 0.4 sends them (``client.crons``).

A cron carries the run it makes (assistant, input, config, context, stream options) beside its
schedule. Unknown fields are ignored, as in :mod:`server.agent_protocol.schemas`; ``webhook`` is
refused (422), since this server calls no webhooks and a cron that silently never calls one
would mislead.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import AwareDatetime, Field, field_validator

from server.agent_protocol.schemas import JsonBody, RunCreate, StreamModeName, Text
from server.schemas import MAX_INT64

__all__ = ["RUN_FIELDS", "CronCount", "CronCreate", "CronPatch", "CronSearch", "ThreadCronCreate"]

RUN_FIELDS = (
    "assistant_id",
    "input",
    "config",
    "context",
    "metadata",
    "interrupt_before",
    "interrupt_after",
    "multitask_strategy",
    "stream_mode",
    "stream_subgraphs",
    "stream_resumable",
    "durability",
)
"""What of a cron's body is the run it makes (stored as the cron's ``payload``)."""

CronField = Literal[
    "cron_id",
    "assistant_id",
    "thread_id",
    "end_time",
    "schedule",
    "timezone",
    "created_at",
    "updated_at",
    "user_id",
    "payload",
    "next_run_date",
    "metadata",
    "now",
    "on_run_completed",
    "enabled",
]
CronSortBy = Literal[
    "cron_id", "assistant_id", "thread_id", "created_at", "updated_at", "next_run_date", "end_time"
]


def _no_webhook(value: str | None) -> str | None:
    if value is not None:
        raise ValueError("webhooks are not built on this server: leave webhook out")
    return value


class _RunFields(JsonBody):
    input: Any = None
    config: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    interrupt_before: Literal["*"] | list[str] | None = None
    interrupt_after: Literal["*"] | list[str] | None = None
    stream_mode: StreamModeName | list[StreamModeName] | None = None
    stream_subgraphs: bool | None = None
    stream_resumable: bool | None = None
    durability: Literal["sync", "async", "exit"] | None = None
    webhook: str | None = None
    timezone: Text = Field(default=None, max_length=64)
    enabled: bool | None = None
    end_time: AwareDatetime | None = None

    _webhook = field_validator("webhook")(_no_webhook)

    def run_fields(self) -> dict[str, Any]:
        """The run part of the body, as sent (fields left out are left out)."""
        return self.model_dump(include=set(RUN_FIELDS), exclude_unset=True, exclude_none=True)


class ThreadCronCreate(_RunFields):
    """``POST /threads/{id}/runs/crons``."""

    schedule: str = Field(min_length=1, max_length=256)
    assistant_id: str = Field(min_length=1, max_length=128)
    multitask_strategy: Literal["reject", "interrupt", "rollback", "enqueue"] | None = None

    def run(self) -> RunCreate:
        """The run each fire makes (checked now as a run would be)."""
        return RunCreate.model_validate(self.run_fields())


class CronCreate(ThreadCronCreate):
    """``POST /runs/crons``: each fire runs on a thread of its own, deleted after (or kept)."""

    on_run_completed: Literal["delete", "keep"] | None = None


class CronPatch(_RunFields):
    """``PATCH /runs/crons/{id}``: fields left out keep their value; ``end_time: null`` clears it."""

    schedule: str | None = Field(default=None, min_length=1, max_length=256)
    on_run_completed: Literal["delete", "keep"] | None = None


class CronSearch(JsonBody):
    """``POST /runs/crons/search``."""

    assistant_id: str | None = None
    thread_id: str | None = None
    enabled: bool | None = None
    metadata: dict[str, Any] | None = None
    limit: int = Field(default=10, ge=1, le=1000)
    offset: int = Field(default=0, ge=0, le=MAX_INT64)
    sort_by: CronSortBy | None = None
    sort_order: Literal["asc", "desc"] | None = None
    select: list[CronField] | None = None


class CronCount(JsonBody):
    """``POST /runs/crons/count``."""

    assistant_id: str | None = None
    thread_id: str | None = None
    metadata: dict[str, Any] | None = None


def epoch(moment: datetime | None) -> float | None:
    """A timezone-aware datetime as epoch seconds."""
    return moment.timestamp() if moment is not None else None
