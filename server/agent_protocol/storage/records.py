"""The rows of the threads, runs and events tables as frozen records, and their Agent Protocol shapes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from server.agent_protocol.serde import loads
from server.agent_protocol.status import CancelAction, RunStatus

__all__ = ["RunEvent", "RunRecord", "ThreadRecord", "run_from_row", "thread_from_row"]


@dataclass(frozen=True, slots=True)
class RunEvent:
    """One SSE event: ``id`` counts from 1 per run; ``data`` is JSON bytes shared by all subscribers."""

    id: int
    event: str
    data: bytes

    @property
    def mode(self) -> str:
        """The stream mode the event belongs to (``messages|ns`` -> ``messages``)."""
        return self.event.split("|", 1)[0]


@dataclass(frozen=True, kw_only=True)
class ThreadRecord:
    """One thread row; ``values`` is the last state a run left (the checkpointer holds the truth)."""

    thread_id: str
    created_at: str
    updated_at: str
    metadata: dict[str, Any]
    status: str
    values: Any
    interrupts: dict[str, Any]
    tenant: str = "default"

    def public(self) -> dict[str, Any]:
        """The Agent Protocol ``Thread`` shape."""
        return {
            "thread_id": self.thread_id,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "metadata": self.metadata,
            "status": self.status,
            "values": self.values,
            "interrupts": self.interrupts,
        }


@dataclass(frozen=True, kw_only=True)
class RunRecord:
    """One run row; ``kwargs`` keeps the request (input, command, config, stream modes...)."""

    run_id: str
    thread_id: str
    assistant_id: str
    created_at: str
    updated_at: str
    status: RunStatus
    metadata: dict[str, Any]
    multitask_strategy: str
    kwargs: dict[str, Any]
    error: str | None
    tenant: str = "default"
    attempts: int = 0
    worker_id: str | None = None  # the process that claimed it (when it was read)
    cancel_action: CancelAction | None = None  # a cancel asked for while another process executes it
    result: Any = None  # the final values of a stateless run whose thread was deleted when it ended
    trace_parent: str | None = None  # the W3C traceparent of the request that made it (tracing on)

    def public(self) -> dict[str, Any]:
        """The Agent Protocol ``Run`` shape (plus ``error``, the reason, for a failed run)."""
        return {
            "run_id": self.run_id,
            "thread_id": self.thread_id,
            "assistant_id": self.assistant_id,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "status": self.status,
            "metadata": self.metadata,
            "multitask_strategy": self.multitask_strategy,
            "kwargs": self.kwargs,
            **({"error": self.error} if self.error else {}),
        }


def thread_from_row(row: sa.Row[Any] | Mapping[str, Any]) -> ThreadRecord:
    """A :class:`ThreadRecord` from an ``ap_threads`` row (a SQLAlchemy row or a column mapping)."""
    m = row._mapping if isinstance(row, sa.Row) else row
    return ThreadRecord(
        thread_id=m["thread_id"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
        metadata=loads(m["metadata"]) or {},
        status=m["status"],
        values=loads(m["state_values"]),
        interrupts=loads(m["interrupts"]) or {},
        tenant=m["tenant"],
    )


def run_from_row(row: sa.Row[Any] | Mapping[str, Any]) -> RunRecord:
    """A :class:`RunRecord` from an ``ap_runs`` row (a SQLAlchemy row or a column mapping)."""
    m = row._mapping if isinstance(row, sa.Row) else row
    return RunRecord(
        run_id=m["run_id"],
        thread_id=m["thread_id"],
        assistant_id=m["assistant_id"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
        status=RunStatus(m["status"]),
        metadata=loads(m["metadata"]) or {},
        multitask_strategy=m["multitask_strategy"],
        kwargs=loads(m["kwargs"]) or {},
        error=m["error"],
        tenant=m["tenant"],
        attempts=m["attempts"] or 0,
        worker_id=m["worker_id"],
        cancel_action=CancelAction(m["cancel_action"]) if m["cancel_action"] else None,
        result=loads(m["result"]),
        trace_parent=m.get("trace_parent"),
    )
