"""The Unikraft Cloud backend: each run in a unikernel instance of its own, through the official SDK.

Import cost: the SDK (httpx, pydantic models) loads with this package; nothing else in ``sandbox``
imports it, so only a registry that picks ``unikraft`` pays for it. Entry points for the registry:
``await UnikraftSandbox.open(UnikraftSettings())``, ``await box.preflight()``,
``await box.library_sets()``.
"""

from __future__ import annotations

from sandbox.unikraft.backend import UnikraftSandbox
from sandbox.unikraft.preflight import PreflightCheck
from sandbox.unikraft.reaper import reap_expired
from sandbox.unikraft.service import UnikraftServiceHandle
from sandbox.unikraft.settings import UnikraftSettings

__all__ = [
    "PreflightCheck",
    "UnikraftSandbox",
    "UnikraftServiceHandle",
    "UnikraftSettings",
    "reap_expired",
]
