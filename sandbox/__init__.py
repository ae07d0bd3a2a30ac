"""Where untrusted code runs: one :class:`Sandbox` protocol and its backends.

The contract and the shared types sit at the package top (``base``, ``errors``, ``guard``, ``plan``,
``resources``, ``config``, ``service``); backends live side by side in :mod:`sandbox.backends`
and are found by name through :mod:`sandbox.registry` (``await open_sandbox(settings)``, which puts
the warm pool of :mod:`sandbox.warm` in front when it can); what the backends on this host's kernel
share (cgroups, namespaces, launcher, seccomp, OCI bundles, warm sandboxes) is :mod:`sandbox.host`.
Importing this package stays cheap: no backend is imported until asked for.
"""

from __future__ import annotations

from sandbox.base import Check, EndReason, Language, Limits, OutputChunk, RunRequest, RunResult, Sandbox
from sandbox.config import SandboxSettings
from sandbox.errors import (
    InvalidRunRequestError,
    LimitsExceededError,
    SandboxError,
    SandboxStartError,
    SandboxUnavailableError,
    UnknownLibrarySetError,
)
from sandbox.registry import open_sandbox

__all__ = [
    "Check",
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
    "open_sandbox",
]
