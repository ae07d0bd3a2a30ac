"""A token bucket per API key, in memory: ``per_minute`` tokens a minute, at most ``burst`` saved up.

In memory on purpose: it protects this process from one noisy key without a database round trip
per request. With several server processes each enforces its own bucket (the limit is per process).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

__all__ = ["RateLimiter"]

_MAX_BUCKETS = 10_000  # past this, full buckets (idle keys) are forgotten


class RateLimiter:
    """Token buckets keyed by an id (the key id); ``per_minute=0`` allows everything."""

    def __init__(self, per_minute: int, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self.burst = max(1, burst)
        self._rate = per_minute / 60.0  # tokens per second
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # id -> (tokens, last refill time)

    def acquire(self, bucket_id: str) -> float:
        """Take one token; return 0 when allowed, else the seconds until a token is available."""
        if self.per_minute <= 0:
            return 0.0
        now = self._clock()
        tokens, last = self._buckets.get(bucket_id, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self._rate)
        if tokens >= 1.0:
            self._buckets[bucket_id] = (tokens - 1.0, now)
            if len(self._buckets) > _MAX_BUCKETS:
                self._forget_full(now)
            return 0.0
        self._buckets[bucket_id] = (tokens, now)
        return (1.0 - tokens) / self._rate

    @staticmethod
    def retry_after(wait_s: float) -> int:
        """The ``Retry-After`` header value: whole seconds, at least 1."""
        return max(1, math.ceil(wait_s))

    def _forget_full(self, now: float) -> None:
        for bucket_id, (tokens, last) in list(self._buckets.items()):
            if tokens + (now - last) * self._rate >= self.burst:
                del self._buckets[bucket_id]
