"""The token bucket behind flood control, on a clock the test controls; the shared
buckets of hubs when their Redis goes away."""

import asyncio

import pytest

from botarena.server.ratelimit import RateLimiter


@pytest.mark.unit
def test_burst_then_steady_rate() -> None:
    now = [0.0]
    limiter = RateLimiter(rate=2.0, burst=3, clock=lambda: now[0])
    assert [limiter.take(1) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take(1) == 0.5  # empty: the next token comes in half a second
    assert limiter.take(2) == 0.0  # another principal has its own bucket
    now[0] += 0.5
    assert limiter.take(1) == 0.0
    assert limiter.take(1) > 0
    now[0] += 100
    assert [limiter.take(1) for _ in range(4)][-1] > 0  # refills to the burst, no further


@pytest.mark.unit
def test_idle_buckets_are_dropped_and_spent_ones_kept() -> None:
    now = [0.0]
    limiter = RateLimiter(rate=1.0, burst=2, clock=lambda: now[0])
    limiter.take("spender")
    limiter.take("spender")
    for key in range(RateLimiter.PRUNE_AT - 1):
        limiter.peek(key)  # full buckets, as good as new ones
    now[0] = 1.0  # the spender has one token of two back
    limiter.peek("newcomer")  # prunes
    assert len(limiter) == 2
    assert limiter.take("spender") == 0.0 and limiter.take("spender") > 0


async def test_a_redis_that_went_away_is_answered_unavailable_not_left_hanging(hub_factory) -> None:
    """Hubs share their buckets in Redis; when it stops answering, connects and events are
    refused ``unavailable`` (and retried by the clients) rather than never answered."""
    from tests.harness import RawSocket
    from tests.services import redis_server

    with redis_server() as url:
        hub = await hub_factory(redis_url=url)
        token = await hub.token("steady")
        raw = RawSocket(hub.url)
        await raw.__aenter__()
        accepted, _ = await raw.connect({"token": token})
        assert accepted and (await raw.call('["whoami"]'))["ok"]
    try:  # Redis is gone now
        answer = await asyncio.wait_for(raw.call('["whoami"]'), 10)
        assert answer["error"]["code"] == "unavailable", answer
        async with RawSocket(hub.url) as late:
            accepted, body = await asyncio.wait_for(late.connect({"token": token}), 10)
        assert not accepted and body["data"]["code"] == "unavailable", body
    finally:
        await raw.__aexit__(None, None, None)
