"""Token buckets: the hub's flood control, and the agents' turn budgets.

A key (a principal, an address...) may spend ``burst`` tokens at once and ``rate``
tokens a second after that; an event over the limit is refused with ``rate_limited``
and the seconds to wait. :class:`RateLimiter` keeps its buckets in this process;
a bucket outlives the connections that spend from it, so reconnecting does not refill
it, and idle buckets (full again, so equal to new ones) are dropped as more appear.
:class:`SharedBuckets` keeps them in Redis, so that every hub process sharing that
Redis spends from one bucket per key and a restarted hub finds them as they were; while
that Redis does not answer (within ``REDIS_TIMEOUT`` seconds) a spend raises
:class:`~botarena.server.errors.Unavailable`, which the hub answers as it does for its
database.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Protocol

import redis.asyncio as aioredis
import redis.exceptions

from botarena.server.errors import Unavailable

REDIS_TIMEOUT = 2.0
"""Seconds a spend waits for Redis (to connect, and to answer) before it is unavailable."""


@dataclass
class _Bucket:
    tokens: float
    stamp: float


class RateLimiter:
    """Token buckets, one per key (a principal id, an arena name...), in this process."""

    PRUNE_AT = 4096

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._buckets: dict[Hashable, _Bucket] = {}
        self._prune_at = self.PRUNE_AT

    def _refill(self, key: Hashable) -> _Bucket:
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self._prune_at:
                self._prune(now)
            bucket = self._buckets[key] = _Bucket(float(self.burst), now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.stamp) * self.rate)
        bucket.stamp = now
        return bucket

    def _prune(self, now: float) -> None:
        """Drop the buckets that have refilled: they equal new ones."""
        self._buckets = {
            key: b
            for key, b in self._buckets.items()
            if b.tokens + (now - b.stamp) * self.rate < self.burst
        }
        self._prune_at = max(self.PRUNE_AT, 2 * len(self._buckets))

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

    def __len__(self) -> int:
        return len(self._buckets)


class Buckets(Protocol):
    """Where the hub's buckets live: this process (:class:`LocalBuckets`) or Redis."""

    async def take(self, key: str) -> float:
        """Spend one token: 0.0 when allowed, else the seconds to wait."""
        ...

    async def peek(self, key: str) -> float:
        """The seconds until ``key`` may spend a token, spending nothing."""
        ...


class LocalBuckets:
    """:class:`Buckets` in this process."""

    def __init__(self, rate: float, burst: int) -> None:
        self.limiter = RateLimiter(rate, burst)

    async def take(self, key: str) -> float:
        return self.limiter.take(key)

    async def peek(self, key: str) -> float:
        return self.limiter.peek(key)


_TAKE = """
local rate, burst, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local held = redis.call('HMGET', KEYS[1], 'tokens', 'stamp')
local tokens = tonumber(held[1]) or burst
local stamp = tonumber(held[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - stamp) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - cost else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'stamp', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return tostring(wait)
"""


class SharedBuckets:
    """:class:`Buckets` in Redis (one Lua script per spend, Redis's clock for every hub);
    each expires once it would be full again."""

    def __init__(self, redis_url: str, name: str, rate: float, burst: int) -> None:
        self._redis = aioredis.from_url(
            redis_url, socket_timeout=REDIS_TIMEOUT, socket_connect_timeout=REDIS_TIMEOUT
        )
        self._script = self._redis.register_script(_TAKE)
        self._prefix = f"botarena:rate:{name}:"
        self._args = (rate, burst)

    async def _spend(self, key: str, cost: int) -> float:
        try:
            wait = await self._script(keys=[self._prefix + key], args=[*self._args, cost])
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
            raise Unavailable("the hub's rate limiter (Redis) is unavailable; retry") from None
        return float(wait)

    async def take(self, key: str) -> float:
        return await self._spend(key, 1)

    async def peek(self, key: str) -> float:
        return await self._spend(key, 0)

    async def close(self) -> None:
        await self._redis.aclose()


def buckets(redis_url: str | None, name: str, rate: float, burst: int) -> Buckets:
    """Shared buckets when hubs share a Redis, else this process's."""
    if redis_url:
        return SharedBuckets(redis_url, name, rate, burst)
    return LocalBuckets(rate, burst)
