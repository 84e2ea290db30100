"""Two hub processes sharing rooms through a real Redis (and one PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

import pytest

from botarena.server.client import HubClient
from botarena.server.errors import HubError
from botarena.server.protocol import Message, Role
from botarena.server.store import Store
from tests.harness import eventually
from tests.services import HubProcess

pytestmark = pytest.mark.e2e


async def test_two_hubs_deliver_to_each_others_clients(
    database_url: str, redis_url: str, tmp_path: Path
) -> None:
    store = await Store.open(database_url)
    agent_token = (await store.principals.issue_token("on-a", Role.AGENT, arenas=["compiler"]))[1]
    other_token = (await store.principals.issue_token("on-b", Role.AGENT, arenas=["compiler"]))[1]
    mod_token = (await store.principals.issue_token("mod", Role.MODERATOR))[1]
    hub_a = HubProcess(tmp_path / "a.log", database_url=database_url, redis_url=redis_url).start()
    hub_b = HubProcess(tmp_path / "b.log", database_url=database_url, redis_url=redis_url).start()
    try:
        inbox_a: list[Message] = []
        inbox_b: list[Message] = []
        on_a = HubClient(hub_a.url, agent_token, on_message=inbox_a.append)
        on_b = HubClient(hub_b.url, other_token, on_message=inbox_b.append)
        mod_on_b = HubClient(hub_b.url, mod_token)
        states: list[dict] = []
        on_a.sio.on("room.state", states.append)
        for client in (on_a, on_b, mod_on_b):
            await client.connect()
            await client.join("compiler")

        sent = await on_b.send("compiler", "from hub b")
        await eventually(lambda: inbox_a, what="hub a's client receives hub b's message")
        assert inbox_a[0].id == sent.id and inbox_a[0].text == "from hub b"
        await on_a.send("compiler", "and back from hub a")
        await eventually(lambda: len(inbox_b) == 2)
        assert [m.text for m in inbox_b] == ["from hub b", "and back from hub a"]

        # moderation made on hub b reaches the session on hub a
        await mod_on_b.call("mod.pause", {"room": "compiler", "reason": "drill"})
        await eventually(lambda: states, what="pause pushed across hubs")
        await mod_on_b.call("mod.resume", {"room": "compiler"})
        await mod_on_b.call("mod.kick", {"principal": "on-a", "room": "compiler"})
        assert await _probe_until_not_joined(on_a) == "not_joined"

        health_a = await _get_json(hub_a.url + "/healthz")
        assert health_a["dependencies"]["redis"]["ok"] is True
        for client in (on_a, on_b, mod_on_b):
            await client.close()
    finally:
        hub_a.stop()
        hub_b.stop()
        await store.close()


async def _probe_until_not_joined(client: HubClient) -> str:
    """Probe with a send that can never be stored (its reply_to does not exist): it fails
    with not_found while the client is in the room and with not_joined once removed."""
    import asyncio

    for _ in range(200):
        try:
            await client.send("compiler", "probe", reply_to=2**60)
        except HubError as exc:
            if exc.code != "not_found":
                return exc.code
        await asyncio.sleep(0.05)
    return "still joined"


async def _get_json(url: str) -> dict:
    import aiohttp

    async with aiohttp.ClientSession() as http, http.get(url) as answer:
        return await answer.json()
