"""Where untrusted code runs: one :class:`Sandbox` protocol and its backends.

Backends live in their own modules (``sandbox.bubblewrap``, ``sandbox.gvisor``, ...) and are chosen
through ``sandbox.factory``; importing this package stays cheap.
"""

from __future__ import annotations

from sandbox.base import EndReason, Language, Limits, OutputChunk, RunRequest, RunResult, Sandbox
from sandbox.config import SandboxSettings
from sandbox.errors import (
    InvalidRunRequestError,
    LimitsExceededError,
    SandboxError,
    SandboxStartError,
    SandboxUnavailableError,
    UnknownLibrarySetError,
)

__all__ = [
    "EndReason",
    "InvalidRunRequestError",
    "Language",
    "Limits",
    "LimitsExceededError",
    "OutputChunk",
    "RunRequest",
    "RunResult",
    "Sandbox",
    "SandboxError",
    "SandboxSettings",
    "SandboxStartError",
    "SandboxUnavailableError",
    "UnknownLibrarySetError",
]
