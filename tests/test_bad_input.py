"""Malformed, oversized, hostile and forbidden input gets an error code, never a crash,
and leaves the store exactly as it was."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from botarena.server.client import HubClient
from botarena.server.errors import HubError
from tests.harness import Arena, eventually

BAD_EVENTS: list[tuple[str, object, str]] = [
    ("send", "not an object", "invalid_payload"),
    ("send", ["compiler", "hello"], "invalid_payload"),
    ("send", {"room": "compiler"}, "invalid_payload"),
    ("send", {"room": "compiler", "text": ""}, "invalid_payload"),
    ("send", {"room": "compiler", "text": " \n\t "}, "invalid_payload"),
    ("send", {"room": "compiler", "text": 42}, "invalid_payload"),
    ("send", {"room": "compiler", "text": "hi", "reply_to": "first"}, "invalid_payload"),
    ("send", {"room": "compiler", "text": "hi", "author": "boss"}, "invalid_payload"),
    ("send", {"room": "compiler", "text": "hi", "as": "boss"}, "invalid_payload"),
    ("send", {"room": "compiler", "text": "x" * 4001}, "too_large"),
    ("send", {"room": "compiler", "text": "hi", "reply_to": 10**9}, "not_found"),
    ("send", {"room": "nowhere", "text": "hi"}, "unknown_room"),
    ("send", {"room": "r" * 5000, "text": "hi"}, "invalid_payload"),
    ("send", {"room": "external", "text": "hi"}, "not_joined"),
    ("send", {"room": "dm:boss+other", "text": "hi"}, "not_joined"),
    ("join", {"room": "external"}, "forbidden"),
    ("join", {"room": "group:staff"}, "forbidden"),
    ("join", {"room": "dm:boss+other"}, "forbidden"),
    ("join", {"room": "group:never-made"}, "forbidden"),  # as one that exists
    ("join", {"room": "../../etc/passwd"}, "unknown_room"),
    ("join", {"room": "compiler", "since": -1}, "invalid_payload"),
    ("join", None, "invalid_payload"),
    ("leave", {"room": "creative"}, "not_joined"),
    ("history", {"room": "external"}, "forbidden"),
    ("history", {"room": "compiler", "limit": 10**6}, "invalid_payload"),
    ("history", {"room": "compiler", "since": 1, "before": 5}, "invalid_payload"),
    ("dm.open", {"principal": "ghost"}, "not_found"),
    ("dm.open", {"principal": "Robert'); DROP TABLE messages;--"}, "invalid_payload"),
    ("dm.open", {"principal": "mallory"}, "invalid_payload"),  # oneself
    ("group.create", {"name": "mine"}, "forbidden"),
    ("room.invite", {"room": "compiler", "principal": "other"}, "forbidden"),
    ("room.invite", {"room": "group:staff", "principal": "mallory"}, "forbidden"),
    ("mod.mute", {"principal": "other", "seconds": 60}, "forbidden"),
    ("mod.unmute", {"principal": "mallory"}, "forbidden"),
    ("mod.kick", {"principal": "other"}, "forbidden"),
    ("mod.pause", {"room": "compiler"}, "forbidden"),
    ("mod.resume", {"room": "compiler"}, "forbidden"),
    ("message.react", {"room": "compiler", "message_id": 1, "value": 5}, "invalid_payload"),
    ("message.react", {"room": "compiler", "message_id": "one", "value": 1}, "invalid_payload"),
    ("message.react", {"room": "compiler", "message_id": 10**9, "value": 1}, "not_found"),
    ("message.react", {"room": "creative", "message_id": 1, "value": 1}, "not_joined"),
    (
        "message.react",
        {"room": "compiler", "message_id": 1, "value": 1, "as": "boss"},
        "invalid_payload",
    ),
    ("whoami", {"extra": 1}, "invalid_payload"),
    ("no.such.event", {"room": "compiler"}, "unknown_event"),
    ("", {}, "unknown_event"),
]


@pytest.fixture
async def mallory(hub_factory) -> tuple[Arena, HubClient]:
    """An agent admitted to the four working arenas, with a busy world around it."""
    arena = await hub_factory(rate_burst=1000, rate_per_second=1000)
    boss = await arena.client("boss", "moderator")
    other = await arena.client("other")
    await other.join("compiler")
    await other.send("compiler", "an existing message")
    await boss.call("group.create", {"name": "staff", "members": ["other"]})
    await boss.call("dm.open", {"principal": "other"})
    mallory = await arena.client("mallory")
    await mallory.join("compiler")
    return arena, mallory


async def test_every_bad_event_gets_its_error_and_changes_nothing(mallory) -> None:
    arena, client = mallory
    before = await arena.fingerprint()
    seen = []
    for event, payload, code in BAD_EVENTS:
        with pytest.raises(HubError) as err:
            await client.call(event, payload)
        seen.append((event, err.value.code))
        assert err.value.code == code, (event, payload, err.value)
        assert err.value.message, "every error explains itself"
    assert await arena.fingerprint() == before
    assert client.connected
    assert (await client.call("whoami"))["name"] == "mallory"


async def test_validation_errors_name_the_field(mallory) -> None:
    _arena, client = mallory
    with pytest.raises(HubError) as err:
        await client.call("send", {"room": "compiler", "text": 7})
    assert "text" in err.value.message
    assert err.value.detail["problems"][0]["field"] == "text"


async def test_several_arguments_are_refused(mallory) -> None:
    arena, client = mallory
    before = await arena.fingerprint()
    ack = await client.sio.call("send", ({"room": "compiler", "text": "a"}, "b"), timeout=5)
    assert ack["ok"] is False and ack["error"]["code"] == "invalid_payload"
    assert await arena.fingerprint() == before


async def test_flood_is_rate_limited_per_principal(hub_factory) -> None:
    arena = await hub_factory(rate_burst=5, rate_per_second=1)
    flooder = await arena.client("flooder")
    calm = await arena.client("calm")
    await flooder.join("compiler")  # the connect and the join spend a token each
    await calm.join("compiler")
    results = await asyncio.gather(
        *(flooder.send("compiler", f"spam {i}") for i in range(12)), return_exceptions=True
    )
    refused = [r for r in results if isinstance(r, HubError)]
    stored = [r for r in results if not isinstance(r, Exception)]
    assert len(stored) == 3 and len(refused) == 9
    assert {r.code for r in refused} == {"rate_limited"}
    assert all(r.detail["retry_after"] > 0 for r in refused)
    history, _ = await calm.history("compiler", since=0)
    assert sorted(m.text for m in history) == sorted(m.text for m in stored)
    assert (await calm.send("compiler", "others are not limited")).author == "calm"


@pytest.mark.parametrize(
    ("auth", "reason"),
    [
        (None, "no token"),
        ({}, "no token"),
        ({"token": 12345}, "no token"),
        ({"token": "bat_wrong"}, "unknown token"),
        ({"token": "x" * 100_000}, None),
    ],
)
async def test_connections_without_a_valid_token_are_refused(arena: Arena, auth, reason) -> None:
    import socketio

    messages: list[object] = []
    sio = socketio.AsyncClient(reconnection=False)
    sio.on("connect_error", lambda data: messages.append(data))
    with pytest.raises(socketio.exceptions.ConnectionError):
        await sio.connect(arena.url, auth=auth, transports=["websocket"], wait_timeout=5)
    if sio.eio.http is not None:
        await sio.eio.http.close()
    if reason is not None:  # an oversized handshake may be cut by the transport instead
        assert messages and messages[0]["data"]["code"] == "unauthorized"
        assert reason in messages[0]["message"]
    assert arena.running.hub.sessions == {}


async def test_a_revoked_token_is_refused_and_its_session_dropped(arena: Arena) -> None:
    token = await arena.token("leaver")
    client = await arena.connect(token)
    assert await arena.store.principals.revoke_tokens(name="leaver") == 1
    await eventually(lambda: not client.connected, what="revoked session dropped")
    again = HubClient(arena.url, token, reconnection=False)
    with pytest.raises(HubError) as err:
        await again.connect()
    assert err.value.code == "unauthorized" and "revoked" in err.value.message


async def test_the_hub_stops_while_it_drops_a_revoked_session(
    arena: Arena, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stop that lands while the control job drops a revoked session (its disconnect
    handler writing the agent's state) ends: python-socketio's event dispatch swallows
    the job's cancellation, which once left the hub's stop waiting forever."""
    context = arena.running.hub.context
    publish, writing = context.publish_agent_state, asyncio.Event()

    async def slow_publish(*args: object, **kwargs: object) -> None:
        writing.set()
        await asyncio.sleep(2)  # a slow database
        await publish(*args, **kwargs)  # type: ignore[arg-type]

    token = await arena.token("leaver")
    await arena.connect(token)
    monkeypatch.setattr(context, "publish_agent_state", slow_publish)
    await arena.store.principals.revoke_tokens(name="leaver")
    await asyncio.wait_for(writing.wait(), 10)
    await asyncio.wait_for(arena.stop(), 30)
    left = [t.get_name() for t in asyncio.all_tasks() if t.get_name().startswith("hub.")]
    assert left == [], "every job of the hub ended"


async def test_an_oversized_frame_drops_only_that_connection(hub_factory) -> None:
    arena = await hub_factory(max_payload_bytes=8192, max_message_chars=100_000)
    bystander = await arena.client("bystander")
    await bystander.join("compiler")
    big = await arena.client("big")
    await big.join("compiler")
    before = await arena.fingerprint(ignore=("agent_states",))  # big goes offline: fine
    with pytest.raises(HubError):
        await big.call("send", {"room": "compiler", "text": "y" * 50_000}, timeout=3)
    assert await arena.fingerprint(ignore=("agent_states",)) == before
    assert (await bystander.send("compiler", "still here")).text == "still here"


GARBAGE_FRAMES: list[str | bytes] = [
    "42",
    '42["send",{"room":',
    "42[]",
    "42[1,2,3]",
    '42["send"]',
    '421["send",{"room":"compiler","text":"no auth"}]',
    "4" + "9" * 20,
    "99",
    "",
    '42["join",{"room":"compiler","since":1e400}]',
    json.dumps(["send", {"room": "compiler"}]),
    b"\x00\xff\xfe",
]


async def test_raw_garbage_frames_do_not_hurt_the_hub(arena: Arena) -> None:
    """Hostile Engine.IO/Socket.IO frames, before and after authenticating."""
    token = await arena.token("raw")
    before = await arena.fingerprint()
    ws_url = arena.url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket"
    async with aiohttp.ClientSession() as http:
        for authenticate in (False, True):
            async with http.ws_connect(ws_url) as ws:
                opened = await ws.receive_str(timeout=5)
                assert opened.startswith("0")
                if authenticate:
                    await ws.send_str("40" + json.dumps({"token": token}))
                    assert (await ws.receive_str(timeout=5)).startswith("40")
                for frame in GARBAGE_FRAMES:
                    if ws.closed:
                        break
                    if isinstance(frame, bytes):
                        await ws.send_bytes(frame)
                    else:
                        await ws.send_str(frame)
                await asyncio.sleep(0.2)
    assert await arena.fingerprint() == before
    fine = await arena.client("fine")
    await fine.join("compiler")
    assert (await fine.send("compiler", "the hub still works")).id > 0
    async with aiohttp.ClientSession() as http:
        async with http.get(arena.url + "/healthz") as answer:
            assert answer.status == 200
