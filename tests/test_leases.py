"""Agent leases against the real hub and PostgreSQL: an agent connecting from a worker
holds its lease, another worker is refused it until it is free, a session whose lease
lapsed or moved is closed and heard no more, and bad worker names are refused."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import pytest

from botarena.server.client import HubClient
from botarena.server.errors import Forbidden, InvalidPayload, Leased, NotConnected
from botarena.server.protocol import Role
from botarena.server.store.database import Database
from tests.harness import Arena, ArenaFactory, Faults, FaultyPool, RawSocket, eventually


async def worker_client(arena: Arena, token: str, worker: str) -> HubClient:
    client = HubClient(arena.url, token, worker=worker, reconnection=False)
    arena.clients.append(client)
    return client


async def audited(arena: Arena, action: str) -> list[dict]:
    rows = await arena.store.pool.fetch(
        "SELECT subject, detail FROM audit_log WHERE action = $1 ORDER BY seq", action
    )
    return [{"agent": r["subject"], **json.loads(r["detail"])} for r in rows]


async def test_one_worker_holds_an_agent_and_another_waits_for_it(arena: Arena) -> None:
    token = await arena.token("ada")
    first = await worker_client(arena, token, "w1")
    await first.connect()
    assert await arena.store.leases.held() == {"ada": "w1"}

    second = await worker_client(arena, token, "w2")
    with pytest.raises(Leased, match="ada runs on worker w1") as refused:
        await second.connect()
    assert refused.value.detail["holder"] == "w1"
    listed = await first.workers()
    assert listed.worker == "w1" and listed.workers == ["w1", "w2"]  # w2 waits: it is live

    # a reconnect of the same worker takes its own lease back at once
    again = await worker_client(arena, token, "w1")
    await again.connect()
    await eventually(lambda: not first.connected, what="the older session of w1 closed")
    assert await arena.store.leases.held() == {"ada": "w1"}

    await again.close()
    await eventually(lambda: arena.running.hub.sessions == {}, what="the hub saw it close")
    await second.connect()
    assert await arena.store.leases.held() == {"ada": "w2"}
    taken = await audited(arena, "lease.taken")
    assert [(t["worker"], t["from"]) for t in taken] == [("w1", None), ("w2", None)]
    assert [r["worker"] for r in await audited(arena, "lease.released")] == ["w1"]

    # a client without a worker takes no lease and may not list the workers
    plain = await arena.connect(token)
    with pytest.raises(Forbidden, match="workers is for an agent connected from a worker"):
        await plain.workers()
    assert await arena.store.leases.held() == {"ada": "w2"}


async def test_the_state_an_agent_reports_names_its_worker(arena: Arena) -> None:
    agent = await worker_client(arena, await arena.token("ada"), "host-12-ab")
    await agent.connect()
    await agent.report_state("idle", "connected")
    moderator = await arena.client("mod", Role.MODERATOR)
    (state,) = (await moderator.agent_states()).agents
    assert state.agent == "ada" and state.worker == "host-12-ab"


async def test_an_expired_lease_goes_to_another_worker_and_the_old_session_is_closed(
    hub_factory: ArenaFactory,
) -> None:
    """Two hubs on one database: the session on hub a whose lease lapsed (it expired and
    worker w2 took it through hub b) is closed by hub a's next renewal and refused meanwhile."""
    hub_a = await hub_factory(lease_seconds=1.5)
    hub_b = await hub_factory(lease_seconds=1.5)
    token = await hub_a.token("ada")
    old = await worker_client(hub_a, token, "w1")
    await old.connect()
    await old.join("compiler")
    await hub_a.store.pool.execute("UPDATE agent_leases SET expires_at = now()")

    new = await worker_client(hub_b, token, "w2")
    await new.connect()
    assert await hub_b.store.leases.held() == {"ada": "w2"}
    await eventually(lambda: not old.connected, timeout=5, what="hub a closes the lapsed session")
    assert old.closed_by_hub
    with pytest.raises(NotConnected):
        await old.send("compiler", "still here?")
    moved = await audited(hub_a, "lease.taken")
    assert [(t["worker"], t["from"]) for t in moved] == [("w1", None), ("w2", "w1")]
    assert await hub_a.store.leases.held() == {"ada": "w2"}  # the closing released nothing


async def test_a_session_whose_lease_cannot_be_renewed_stops_before_it_expires(
    hub_factory: ArenaFactory,
) -> None:
    """With the database away, the hub cannot renew a lease: it closes the session before
    the lease can expire (so another worker, once the database is back, finds it free and
    no two sessions act at once); an event sent past the session's deadline is refused by
    the gate before any handler."""
    arena = await hub_factory(lease_seconds=1.5)
    agent = await worker_client(arena, await arena.token("ada"), "w1")
    await agent.connect()
    await agent.join("compiler")
    (session,) = arena.running.hub.sessions.values()
    deadline = session.lease_until
    session.lease_until = 0.0
    with pytest.raises(Leased, match="lapsed"):
        await agent.send("compiler", "after my lease")
    session.lease_until = deadline

    faults = Faults()
    arena.store.leases.db = Database(FaultyPool(arena.store.pool, faults))  # type: ignore[arg-type]
    faults.away = True
    await eventually(lambda: not agent.connected, timeout=5, what="the session closed")
    closed_at = datetime.now(UTC)
    expires_at = await arena.store.pool.fetchval("SELECT expires_at FROM agent_leases")
    assert agent.closed_by_hub and closed_at < expires_at, "closed before its lease expired"
    assert await arena.store.pool.fetchval("SELECT count(*) FROM messages") == 0
    faults.away = False
    other = await worker_client(arena, await arena.token("ada"), "w2")
    await asyncio.sleep(max(0.0, (expires_at - datetime.now(UTC)).total_seconds()) + 0.1)
    await other.connect()  # the lease the closed session could not release has expired
    assert await arena.store.leases.held() == {"ada": "w2"}


@pytest.mark.parametrize(
    ("worker", "error"),
    [
        ("", "worker must match"),
        ("-starts-with-dash", "worker must match"),
        ("has space", "worker must match"),
        ("x" * 65, "worker must match"),
        (12, "worker must match"),
        (["w1"], "worker must match"),
        ("w\u00e9", "worker must match"),
    ],
)
async def test_a_malformed_worker_is_refused_at_connect(
    arena: Arena, worker: object, error: str
) -> None:
    token = await arena.token("ada")
    async with RawSocket(arena.url) as raw:
        accepted, refusal = await raw.connect({"token": token, "worker": worker})
    assert not accepted
    assert refusal["data"]["code"] == "invalid_payload" and error in refusal["message"]
    assert await arena.store.leases.held() == {}


async def test_only_agents_connect_from_a_worker(arena: Arena) -> None:
    token = await arena.token("mod", Role.MODERATOR)
    client = HubClient(arena.url, token, worker="w1", reconnection=False)
    with pytest.raises(InvalidPayload, match="only agents connect from a worker"):
        await client.connect()
    await client.close()
