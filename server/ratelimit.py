"""Token buckets: the hub's per-principal flood control, and the agents' turn budgets.

A principal may send ``burst`` events at once and ``rate`` events a second after that;
an event over the limit is refused with ``rate_limited`` and the seconds to wait. With
several hub processes each keeps its own buckets, so a principal connected to n hubs
gets at most n times the rate.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    stamp: float


class RateLimiter:
    """Token buckets, one per key (a principal id, an arena name...)."""

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._buckets: dict[Hashable, _Bucket] = {}

    def _refill(self, key: Hashable) -> _Bucket:
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(float(self.burst), now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.stamp) * self.rate)
        bucket.stamp = now
        return bucket

    def peek(self, key: Hashable) -> float:
        """The seconds until ``key`` may spend a token (0.0: now), spending nothing."""
        bucket = self._refill(key)
        return 0.0 if bucket.tokens >= 1.0 else (1.0 - bucket.tokens) / self.rate

    def take(self, key: Hashable) -> float:
        """Spend one token for ``key``: 0.0 when allowed, else the seconds to wait."""
        wait = self.peek(key)
        if wait == 0.0:
            self._buckets[key].tokens -= 1.0
        return wait

    def forget(self, key: Hashable) -> None:
        self._buckets.pop(key, None)
