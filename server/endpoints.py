"""The hub's HTTP endpoints: ``/healthz`` for probes and ``/metrics`` for Prometheus.

``/healthz`` answers 200 when the hub and every dependency it uses are ready and 503
when one is not, with each dependency's state in the body; ``/healthz?probe=live``
answers 200 whenever the process serves requests (a liveness probe must not restart
a hub because its database is briefly away).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg
import redis.asyncio as aioredis
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from botarena.server.hub import Hub

_CHECK_TIMEOUT = 2.0


async def _timed(check: Any) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        await asyncio.wait_for(check, timeout=_CHECK_TIMEOUT)
    except Exception as exc:  # any failure is the dependency's state, shown as such
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
    return {"ok": True, "latency_ms": round((time.perf_counter() - started) * 1000, 2)}


def routes(hub: Hub) -> list[web.RouteDef]:
    redis_client = aioredis.from_url(hub.settings.redis_url) if hub.settings.redis_url else None

    async def healthz(request: web.Request) -> web.Response:
        if request.query.get("probe") == "live":
            return web.json_response({"live": True})
        deps: dict[str, Any] = {"database": await _timed(hub.store.ping())}
        deps["database"]["schema_version"] = hub.store.schema_version
        if redis_client is not None:
            deps["redis"] = await _timed(redis_client.ping())
        else:
            deps["redis"] = {"ok": True, "mode": "in-process (no BOTARENA_REDIS_URL)"}
        ready = all(d["ok"] for d in deps.values())
        body = {
            "live": True,
            "ready": ready,
            "status": "ok" if ready else "degraded",
            "connections": len(hub.sessions),
            "dependencies": deps,
        }
        return web.json_response(body, status=200 if ready else 503)

    async def metrics(_request: web.Request) -> web.Response:
        try:
            store = hub.store
            hub.metrics.set_work(await store.proposals.counts(), await store.tickets.counts())
            hub.metrics.set_agent_states(await store.agents.states())
            hub.metrics.set_leases(await store.leases.held())
            hub.metrics.set_queue(await store.queue.waiting())
            gate = hub.settings.external_top_fraction, hub.settings.external_min_seats
            hub.metrics.set_standings(await store.reputation.standings(*gate))
            hub.metrics.audit_entries.set(await store.audit.count())  # now, not at the last check
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            pass  # the database is away: the other metrics are still worth serving
        body = generate_latest(hub.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    return [web.get("/healthz", healthz), web.get("/metrics", metrics)]
