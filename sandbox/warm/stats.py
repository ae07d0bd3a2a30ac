"""What the warm pool reports (``WarmPool.stats()``, exported on ``/metrics`` by the server)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["KeyStats", "PoolStats"]


@dataclass(frozen=True, kw_only=True)
class KeyStats:
    """One key's idle sandboxes now."""

    label: str
    idle: int
    idle_memory_bytes: int
    starting: int
    target: int


@dataclass(frozen=True, kw_only=True)
class PoolStats:
    """The pool's counters since it opened, and its idle sandboxes now (``/metrics``)."""

    backend: str
    hits: int
    waited: int  # hits that waited for their sandbox's start (none was idle)
    misses: Mapping[str, int]  # why: empty (none idle), unusable, shadowed
    cold: int  # runs no warm sandbox can serve (a command, network, ...)
    starts: int
    start_failures: int
    start_seconds_total: float
    expired: int
    over_budget: int
    idle: int
    idle_memory_bytes: int
    keys: tuple[KeyStats, ...]
