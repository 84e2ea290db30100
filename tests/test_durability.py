"""Kill the hub with SIGKILL in the middle of a burst: every acknowledged message survives,
in order, and resending what was not acknowledged never duplicates anything."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from botarena.server.client import HubClient
from botarena.server.errors import HubError
from botarena.server.protocol import Role
from botarena.server.store import Store
from tests.harness import eventually
from tests.services import HubProcess

pytestmark = pytest.mark.e2e

WRITERS = 3
PER_WRITER = 150


async def test_sigkill_mid_burst_loses_no_acknowledged_message(
    database_url: str, tmp_path: Path
) -> None:
    store = await Store.open(database_url)
    tokens = [
        (await store.principals.issue_token(f"writer{i}", Role.AGENT, arenas=["compiler"]))[1]
        for i in range(WRITERS)
    ]
    hub = HubProcess(
        tmp_path / "hub.log", database_url=database_url, rate_per_second="10000", rate_burst="10000"
    ).start()
    clients = [HubClient(hub.url, token, call_timeout=3) for token in tokens]
    for client in clients:
        await client.connect()
        await client.join("compiler")

    acked: dict[int, list[tuple[str, int]]] = {i: [] for i in range(WRITERS)}
    unacked: dict[int, list[str]] = {i: [] for i in range(WRITERS)}

    async def write(i: int) -> None:
        for n in range(PER_WRITER):
            key = f"w{i}-{n}"
            try:
                message = await clients[i].send("compiler", key, client_id=key)
                acked[i].append((key, message.id))
            except HubError:
                unacked[i].append(key)

    async def kill_mid_burst() -> None:
        await eventually(
            lambda: sum(map(len, acked.values())) >= WRITERS * PER_WRITER // 3,
            timeout=60,
            what="a third of the burst",
        )
        hub.kill()

    await asyncio.gather(kill_mid_burst(), *(write(i) for i in range(WRITERS)))
    total_acked = sum(map(len, acked.values()))
    assert 0 < total_acked < WRITERS * PER_WRITER, "the kill landed mid-burst"

    hub.start()  # same port, same database
    for client in clients:
        await eventually(lambda c=client: c.connected, timeout=30, what="client reconnected")

    # nothing acknowledged is lost, each writer's messages are in the order it sent them
    history = []
    more, since = True, 0
    while more:
        page, more = await clients[0].history("compiler", since=since, limit=500)
        history.extend(page)
        since = page[-1].id if page else since
    by_text = {m.text: m.id for m in history}
    assert len(by_text) == len(history), "no duplicates"
    for i in range(WRITERS):
        assert all(by_text.get(key) == mid for key, mid in acked[i]), "acked message missing"
        ids = [by_text[key] for key, _ in acked[i]]
        assert ids == sorted(ids)

    # resending what was never acknowledged stores each at most once
    for i in range(WRITERS):
        for key in unacked[i]:
            await clients[i].call("send", {"room": "compiler", "text": key, "client_id": key})
    final, _ = await clients[0].history("compiler", since=0, limit=5000)
    texts = [m.text for m in final]
    assert len(texts) == len(set(texts)) == WRITERS * PER_WRITER

    for client in clients:
        await client.close()
    assert hub.stop() == 0
    await store.close()
