"""Per-principal flood control: a token bucket for each principal, in this hub process.

A principal may send ``burst`` events at once and ``rate`` events a second after that;
an event over the limit is refused with ``rate_limited`` and the seconds to wait. With
several hub processes each keeps its own buckets, so a principal connected to n hubs
gets at most n times the rate.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    stamp: float


class RateLimiter:
    """Token buckets keyed by principal id."""

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._buckets: dict[int, _Bucket] = {}

    def take(self, key: int) -> float:
        """Spend one token for ``key``: 0.0 when allowed, else the seconds to wait."""
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(float(self.burst), now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.stamp) * self.rate)
        bucket.stamp = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate

    def forget(self, key: int) -> None:
        self._buckets.pop(key, None)
