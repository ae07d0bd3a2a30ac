"""The states a run and a thread go through, and why a run stops before its end.

Why two stop enums: :class:`CancelAction` is what a *user* asked for (stored on the run row, so the
process executing it applies it, wherever that is); :class:`Handover` is this process letting go
of a run without ending it (another process took its lease, or this one shuts down). A run that
stops with a handover records no outcome: the next owner does.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["ACTIVE_STATUSES", "CancelAction", "Handover", "RunStatus", "ThreadStatus"]


class RunStatus(StrEnum):
    """A run's status as the Agent Protocol shows it (``pending`` and ``running`` are active)."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCESS = "success"
    ERROR = "error"
    INTERRUPTED = "interrupted"


ACTIVE_STATUSES: tuple[RunStatus, ...] = (RunStatus.PENDING, RunStatus.RUNNING)


class ThreadStatus(StrEnum):
    """A thread's status: ``busy`` while one of its runs executes."""

    IDLE = "idle"
    BUSY = "busy"
    INTERRUPTED = "interrupted"
    ERROR = "error"


class CancelAction(StrEnum):
    """What a user asked for: ``interrupt`` keeps the run (``interrupted``), ``rollback`` deletes it."""

    INTERRUPT = "interrupt"
    ROLLBACK = "rollback"

    @classmethod
    def parse(cls, value: str | None) -> CancelAction:
        """The action named by a client; anything unknown is ``interrupt`` (as the LangGraph server does)."""
        try:
            return cls(value or cls.INTERRUPT)
        except ValueError:
            return cls.INTERRUPT


class Handover(StrEnum):
    """Why this process stops executing a run without recording its outcome."""

    LOST = "lost"  # another process took over the lease (this one stalled): it records the outcome
    HANDOFF = "handoff"  # this process shuts down: the run goes back to the queue and is resumed
