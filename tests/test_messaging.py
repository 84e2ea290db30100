"""Clients in rooms exchange messages; history and resume return exactly what was missed."""

from __future__ import annotations

import pytest

from botarena.arenas.names import ARENAS
from botarena.server.errors import HubError
from botarena.server.protocol import Message
from botarena.server.store import Store
from tests.harness import Arena, eventually


async def test_clients_in_rooms_exchange_messages(arena: Arena) -> None:
    inboxes: dict[str, list[Message]] = {n: [] for n in ("ada", "bob", "cy", "mod")}
    ada = await arena.client("ada", inbox=inboxes["ada"])
    bob = await arena.client("bob", inbox=inboxes["bob"])
    cy = await arena.client("cy", inbox=inboxes["cy"], arenas=["creative"])
    mod = await arena.client("mod", "moderator", inbox=inboxes["mod"])
    for client in (ada, bob, mod):
        await client.join("compiler")
    await cy.join("creative")
    await mod.join("creative")

    first = await ada.send("compiler", "the parser drops trailing commas")
    reply = await bob.send("compiler", "I can fix that", reply_to=first.id)
    story = await cy.send("creative", "once upon a time")

    await eventually(lambda: len(inboxes["mod"]) == 3, what="moderator sees all three")
    await eventually(lambda: len(inboxes["ada"]) == 2 and len(inboxes["bob"]) == 2)
    assert [m.text for m in inboxes["ada"]] == [first.text, reply.text]
    assert inboxes["bob"][1].reply_to == first.id
    assert inboxes["bob"][1].author == "bob"
    assert [m.text for m in inboxes["cy"]] == ["once upon a time"]  # not compiler's traffic
    assert first.id < reply.id < story.id
    assert {m.room for m in inboxes["mod"]} == {"compiler", "creative"}


async def test_join_returns_recent_history_in_order(hub_factory) -> None:
    arena = await hub_factory(history_on_join=5)
    ada = await arena.client("ada")
    await ada.join("education")
    sent = [await ada.send("education", f"lesson {i}") for i in range(8)]

    inbox: list[Message] = []
    bob = await arena.client("bob", inbox=inbox)
    result = await bob.join("education")
    assert [m.id for m in result.messages] == [m.id for m in sent[-5:]]
    assert [m.text for m in inbox] == [f"lesson {i}" for i in range(3, 8)]
    assert result.room.last_id == sent[-1].id


async def test_reconnect_resumes_exactly_the_missed_messages(arena: Arena) -> None:
    inbox: list[Message] = []
    token = await arena.token("reader")
    reader = await arena.connect(token, inbox=inbox)
    writer = await arena.client("writer")
    await reader.join("operations")
    await writer.join("operations")
    before = [await writer.send("operations", f"before {i}") for i in range(3)]
    await eventually(lambda: len(inbox) == 3)

    await reader.close()
    missed = [await writer.send("operations", f"missed {i}") for i in range(4)]
    await reader.connect()
    await reader.join("operations", since=reader.last_seen["operations"])
    after = await writer.send("operations", "after")

    await eventually(lambda: len(inbox) == 8, what="missed and live messages")
    assert [m.id for m in inbox] == [m.id for m in (*before, *missed, after)]


async def test_hub_restart_delivers_missed_messages_once(hub_factory, free_port: int) -> None:
    first_hub = await hub_factory(port=free_port)
    inbox: list[Message] = []
    reader = await first_hub.client("reader", inbox=inbox)
    writer_token = await first_hub.token("writer")
    await reader.join("compiler")
    await reader.send("compiler", "one")
    await eventually(lambda: len(inbox) == 1)

    await first_hub.stop()
    await eventually(lambda: not reader.connected, what="reader sees the hub go")
    store = await Store.open(first_hub.store.url)  # another hub process, say, still writing
    writer = await store.principals.get("writer")
    assert writer is not None and writer_token
    for text in ("two", "three"):
        await store.messages.post("compiler", writer, text)
    await store.close()

    second_hub = await hub_factory(port=free_port)
    await eventually(reader.reconnected.is_set, timeout=20, what="reader reconnected")
    await eventually(lambda: len(inbox) == 3)
    fresh = await second_hub.client("fresh")
    await fresh.join("compiler")
    await fresh.send("compiler", "four")
    await eventually(lambda: len(inbox) == 4)
    assert [m.text for m in inbox] == ["one", "two", "three", "four"]


async def test_resume_pages_through_a_long_absence(hub_factory) -> None:
    arena = await hub_factory(history_page=10, rate_burst=500, rate_per_second=500)
    writer = await arena.client("writer")
    await writer.join("compiler")
    sent = [await writer.send("compiler", f"m{i}") for i in range(35)]
    inbox: list[Message] = []
    reader = await arena.client("reader", inbox=inbox)
    result = await reader.join("compiler", since=sent[4].id)
    assert result.has_more
    assert [m.id for m in inbox] == [m.id for m in sent[5:]]


async def test_client_id_makes_a_resend_idempotent(arena: Arena) -> None:
    ada = await arena.client("ada")
    await ada.join("compiler")
    first = await ada.call("send", {"room": "compiler", "text": "deploy", "client_id": "k-1"})
    again = await ada.call("send", {"room": "compiler", "text": "deploy", "client_id": "k-1"})
    assert first["duplicate"] is False and again["duplicate"] is True
    assert again["message"]["id"] == first["message"]["id"]
    history, _ = await ada.history("compiler")
    assert [m.text for m in history] == ["deploy"]


async def test_history_pages_backwards(arena: Arena) -> None:
    ada = await arena.client("ada")
    await ada.join("creative")
    sent = [await ada.send("creative", f"p{i}") for i in range(6)]
    newest, more = await ada.history("creative", limit=4)
    assert [m.id for m in newest] == [m.id for m in sent[2:]] and more
    older, more = await ada.history("creative", before=newest[0].id, limit=4)
    assert [m.id for m in older] == [m.id for m in sent[:2]] and not more


async def test_every_arena_exists_from_the_start(arena: Arena) -> None:
    mod = await arena.client("mod", "moderator")
    rooms = (await mod.call("rooms"))["rooms"]
    assert {r["name"] for r in rooms if r["kind"] == "arena"} == set(ARENAS)


async def test_ids_increase_across_concurrent_senders(arena: Arena) -> None:
    import asyncio

    senders = [await arena.client(f"s{i}") for i in range(4)]
    for s in senders:
        await s.join("compiler")
    inbox: list[Message] = []
    watcher = await arena.client("watcher", "moderator", inbox=inbox)
    await watcher.join("compiler")
    results = await asyncio.gather(
        *(s.send("compiler", f"{i}-{j}") for i, s in enumerate(senders) for j in range(5))
    )
    await eventually(lambda: len(inbox) == 20)
    assert [m.id for m in inbox] == sorted(m.id for m in results)
    history, _ = await watcher.history("compiler", since=0, limit=100)
    assert [m.id for m in history] == [m.id for m in inbox]


async def test_a_reply_must_point_into_the_same_room(arena: Arena) -> None:
    ada = await arena.client("ada")
    await ada.join("compiler")
    await ada.join("creative")
    other = await ada.send("creative", "elsewhere")
    with pytest.raises(HubError) as err:
        await ada.send("compiler", "re", reply_to=other.id)
    assert err.value.code == "not_found"
