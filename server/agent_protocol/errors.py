"""Errors of the Agent Protocol layer; the routes map them to HTTP status codes.

AgentProtocolError
├── ThreadNotFoundError      404
├── RunNotFoundError         404
├── AssistantNotFoundError   404
├── CheckpointNotFoundError  404  (``before`` names no checkpoint of the thread)
├── ThreadExistsError        409
├── RunConflictError         409  (multitask_strategy "reject" on a busy thread)
├── InvalidRunError          422  (a payload the graph cannot run)
└── InvalidStateUpdateError  422  (``as_node`` not a node, values that do not fit the state)
"""

from __future__ import annotations

__all__ = [
    "AgentProtocolError",
    "AssistantNotFoundError",
    "CheckpointNotFoundError",
    "InvalidRunError",
    "InvalidStateUpdateError",
    "RunConflictError",
    "RunNotFoundError",
    "ThreadExistsError",
    "ThreadNotFoundError",
]


class AgentProtocolError(Exception):
    """Base of this package's errors; ``status`` and ``kind`` say how the routes answer."""

    status = 500
    kind = "agent_protocol_error"


class ThreadNotFoundError(AgentProtocolError):
    """No thread with that id."""

    status = 404
    kind = "thread_not_found"


class RunNotFoundError(AgentProtocolError):
    """No run with that id on that thread."""

    status = 404
    kind = "run_not_found"


class AssistantNotFoundError(AgentProtocolError):
    """The assistant id is neither the served graph's id nor its assistant uuid."""

    status = 404
    kind = "assistant_not_found"


class CheckpointNotFoundError(AgentProtocolError):
    """No checkpoint with that id in the thread."""

    status = 404
    kind = "checkpoint_not_found"


class ThreadExistsError(AgentProtocolError):
    """A thread with that id exists and ``if_exists`` was ``raise``."""

    status = 409
    kind = "thread_exists"


class RunConflictError(AgentProtocolError):
    """The thread is busy and the run asked to be rejected in that case."""

    status = 409
    kind = "thread_busy"


class InvalidRunError(AgentProtocolError):
    """The run payload cannot be executed (e.g. both input and command)."""

    status = 422
    kind = "invalid_run"


class InvalidStateUpdateError(AgentProtocolError):
    """A state update the graph cannot apply; the message says what to fix (e.g. the valid nodes)."""

    status = 422
    kind = "invalid_state_update"
