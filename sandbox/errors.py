"""Errors raised by sandbox backends.

    SandboxError
    ├── SandboxUnavailableError   the backend cannot run on this host (tool missing, no permission)
    ├── InvalidRunRequestError    the request is malformed (no entry, unknown language, bad path)
    │   └── UnknownLibrarySetError    the requested library set does not exist
    ├── LimitsExceededError       the requested limits exceed the server's maximums (or a budget)
    ├── SandboxBusyError          no capacity now (admission control); retry after ``retry_after_s``
    └── SandboxStartError         the backend failed to start the run (not the program's fault)

A program that fails, times out or runs out of memory is *not* an error: it is a ``RunResult``.
Backends chain third-party errors with ``raise ... from exc``.
"""

from __future__ import annotations

__all__ = [
    "InvalidRunRequestError",
    "LimitsExceededError",
    "SandboxBusyError",
    "SandboxError",
    "SandboxStartError",
    "SandboxUnavailableError",
    "UnknownLibrarySetError",
]


class SandboxError(Exception):
    """Base of all sandbox errors."""


class SandboxUnavailableError(SandboxError):
    """The backend cannot run on this host; the message says what to install or change."""


class InvalidRunRequestError(SandboxError):
    """The run request is malformed; the message says what to fix."""


class UnknownLibrarySetError(InvalidRunRequestError):
    """The requested library set does not exist."""


class LimitsExceededError(SandboxError):
    """Requested limits are above the server's maximums."""


class SandboxBusyError(SandboxError):
    """No capacity now (memory budget or run count); retry after ``retry_after_s`` seconds."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class SandboxStartError(SandboxError):
    """The backend failed to start the run."""
