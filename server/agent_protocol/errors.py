"""Errors of the Agent Protocol layer; the routes map them to HTTP status codes.

AgentProtocolError
├── ThreadNotFoundError      404
├── RunNotFoundError         404
├── AssistantNotFoundError   404  (also another tenant's assistant, and an unknown version of one)
├── GraphNotFoundError       404  (an assistant names a graph this server does not serve)
├── CheckpointNotFoundError  404  (``before`` names no checkpoint of the thread)
├── ThreadExistsError        409
├── AssistantExistsError     409  (``if_exists="raise"``, or an id another tenant uses)
├── AssistantReadOnlyError   409  (the server's default assistant of a graph: the operator's, not editable)
├── RunConflictError         409  (multitask_strategy "reject" on a busy thread)
├── InvalidRunError          422  (a payload the graph cannot run)
├── InvalidStateUpdateError  422  (``as_node`` not a node, values that do not fit the state)
└── InvalidAssistantError    422  (a config or context the operator's policy refuses)
"""

from __future__ import annotations

__all__ = [
    "AgentProtocolError",
    "AssistantExistsError",
    "AssistantReadOnlyError",
    "GraphNotFoundError",
    "InvalidAssistantError",
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


class GraphNotFoundError(AgentProtocolError):
    """An assistant names a graph this server does not serve."""

    status = 404
    kind = "graph_not_found"


class AssistantExistsError(AgentProtocolError):
    """An assistant with that id exists (``if_exists="raise"``), or another tenant uses the id."""

    status = 409
    kind = "assistant_exists"


class AssistantReadOnlyError(AgentProtocolError):
    """The server's default assistant of a graph cannot be changed or deleted through the API."""

    status = 409
    kind = "assistant_read_only"


class InvalidAssistantError(AgentProtocolError):
    """An assistant's config or context is outside what the operator allows; the message says what to fix."""

    status = 422
    kind = "invalid_assistant"
