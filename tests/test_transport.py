"""The packet layer against frames a well-behaved client could not send: reserved event
names, a second CONNECT, values the store cannot hold, binary frames, deep nesting; each
refused with its code, the session and the store as they were."""

from __future__ import annotations

import asyncio
import json

import pytest

from botarena.server.errors import InvalidPayload
from botarena.server.hub.transport import MAX_DEPTH, MAX_VALUES, check_value
from tests.harness import Arena, RawSocket


def connections(arena: Arena) -> float:
    return arena.running.hub.metrics.connections._value.get()


async def test_a_disconnect_event_leaves_the_session_in_the_hubs_hands(arena: Arena) -> None:
    """Before, a raw ``disconnect`` event made the hub forget the session while the socket
    stayed open: a kick no longer reached it, and it kept receiving the room."""
    token = await arena.token("eve")
    mod = await arena.client("mod", "moderator")
    other = await arena.client("other")
    await other.join("compiler")
    async with RawSocket(arena.url) as eve:
        assert (await eve.connect({"token": token}))[0]
        assert (await eve.call('["join",{"room":"compiler"}]'))["ok"]
        gauge = connections(arena)
        for name in ("disconnect", "connect", "connect_error", "__disconnect_final", "*"):
            answer = await eve.call(json.dumps([name]))
            assert answer["error"]["code"] == "unknown_event", name
        assert connections(arena) == gauge
        assert (await eve.call('["whoami"]'))["data"]["name"] == "eve"
        await mod.kick("eve", room="compiler")
        await other.send("compiler", "after the kick")
        await asyncio.sleep(0.3)
        assert (await eve.call('["whoami"]'))["ok"]  # drains the frames before its ack
        texts = [p["text"] for name, p in eve.pushes if name == "message"]  # type: ignore[index]
        assert "after the kick" not in texts


async def test_a_connect_event_or_packet_cannot_switch_the_principal(arena: Arena) -> None:
    eve, boss = await arena.token("eve"), await arena.token("boss", "moderator")
    async with RawSocket(arena.url) as raw:
        assert (await raw.connect({"token": eve}))[0]
        answer = await raw.call(json.dumps(["connect", {"token": boss}]))
        assert answer["error"]["code"] == "unknown_event"
        accepted, body = await raw.connect({"token": boss})  # a second CONNECT packet
        assert not accepted and body["data"]["code"] == "invalid_payload"
        assert (await raw.call('["whoami"]'))["data"] == {
            "name": "eve",
            "role": "agent",
            "rooms": ["compiler", "creative", "education", "operations"],
        }
        assert (await raw.call('["mod.pause",{"room":"compiler"}]'))["error"]["code"] == "forbidden"
    assert len(arena.running.hub.sessions) == 0 or all(
        s.principal.name != "boss" for s in arena.running.hub.sessions.values()
    )


HOSTILE_VALUES = [
    ('["send",{"room":"compiler","text":"a\\u0000b"}]', "NUL"),
    ('["send",{"room":"compiler","text":"lone \\ud800 half"}]', "surrogate"),
    ('["send",{"room":"compiler","text":"low \\udc00 half"}]', "surrogate"),
    ('["send",{"room":"compiler\\u0000","text":"hi"}]', "NUL"),
    ('["send",{"room":"compiler","text":"hi","client_id":"\\ud83d"}]', "surrogate"),
    ('["send",{"room":"compiler","text":"hi","reply_to":18446744073709551617}]', "64 bits"),
    ('["send",{"room":"compiler","text":"hi","reply_to":9223372036854775808}]', "64 bits"),
    ('["join",{"room":"compiler","since":99999999999999999999999}]', "64 bits"),
    ('["history",{"room":"compiler","before":9223372036854775808}]', "64 bits"),
    ('["history",{"room":"compiler","since":-9223372036854775809}]', "64 bits"),
    ('["canon.get",{"path":"docs/a.md","version":2147483648}]', "less than or equal"),
    (
        '["proposal.create",{"arena":"compiler","kind":"document","path":"docs/a.md",'
        '"base_version":2147483648,"title":"t","content":"c"}]',
        "less than or equal",
    ),
    ('["message.react",{"room":"compiler","message_id":1e400,"value":1}]', "finite"),
    ('["agent.state",{"state":"idle","llm_seconds":NaN}]', "NaN"),
    ('["agent.state",{"state":"idle","drift":{"warmth":Infinity}}]', "Infinity"),
    ('["agent.state",{"state":"idle","drift":{"warmth":-Infinity}}]', "Infinity"),
    ('["send",{"room":"compiler","text":"hi","reply_to":' + "9" * 5000 + "}]", "not JSON"),
    ('["send",' + "[" * 10_000 + "]" * 10_000 + "]", "nested"),
    ('["send",' + '{"a":' * 100 + "1" + "}" * 100 + "]", "nested"),
    ('["send",[' + ",".join(["0"] * (MAX_VALUES + 1)) + "]]", "values"),
    ('["send",{"room":"compiler","text":"hi"', "not JSON"),
]


@pytest.mark.parametrize(("frame", "problem"), HOSTILE_VALUES)
async def test_values_the_store_cannot_hold_are_refused(
    arena: Arena, frame: str, problem: str
) -> None:
    token = await arena.token("eve", "moderator")
    async with RawSocket(arena.url) as raw:
        assert (await raw.connect({"token": token}))[0]
        assert (await raw.call('["join",{"room":"compiler"}]'))["ok"]
        before = await arena.fingerprint()
        answer = await raw.call(frame)
        assert answer["ok"] is False
        assert answer["error"]["code"] == "invalid_payload", answer
        assert problem in answer["error"]["message"]
        assert await arena.fingerprint() == before
        assert (await raw.call('["send",{"room":"compiler","text":"still here"}]'))["ok"]


@pytest.mark.parametrize(
    "auth",
    [
        '{"token":"bat_\\ud800"}',
        '{"token":"bat_\\u0000"}',
        '{"token":' + "[" * 10_000 + "]" * 10_000 + "}",
        '{"token":NaN}',
        '{"token":',
    ],
)
async def test_a_connect_the_store_cannot_read_is_refused_with_a_code(
    arena: Arena, auth: str
) -> None:
    async with RawSocket(arena.url) as raw:
        accepted, body = await raw.connect(auth)
        assert not accepted and body["data"]["code"] == "invalid_payload"
        accepted, _ = await raw.connect({"token": await arena.token("late")})
        assert accepted  # the same connection may still authenticate


async def test_binary_frames_are_answered_and_never_buffered(arena: Arena) -> None:
    token = await arena.token("eve")
    async with RawSocket(arena.url) as raw:
        assert (await raw.connect({"token": token}))[0]
        await raw.frame('451-7["send",{"_placeholder":true,"num":0}]')
        answer = json.loads((await raw.receive("437"))[0:])[0]
        assert answer["error"]["code"] == "invalid_payload"
        for _ in range(200):  # attachments nobody waits for
            await raw.ws.send_bytes(b"x" * 60_000)
        await raw.frame('45999999999-["send",{"_placeholder":true,"num":0}]')
        assert (await raw.call('["whoami"]'))["data"]["name"] == "eve"
    assert arena.running.hub.sio._binary_packet == {}


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("{}", "invalid_payload"),
        ("[]", "invalid_payload"),
        ('"send"', "invalid_payload"),
        ("[42]", "unknown_event"),
        ('[["send"]]', "unknown_event"),
        ('[{"a":1}]', "unknown_event"),
    ],
)
async def test_malformed_event_frames_are_answered(arena: Arena, frame: str, code: str) -> None:
    """Frames whose event is not a name: answered, never dropped."""
    token = await arena.token("eve")
    async with RawSocket(arena.url) as raw:
        assert (await raw.connect({"token": token}))[0]
        assert (await raw.call(frame))["error"]["code"] == code


async def test_events_before_connecting_are_answered_unauthorized(arena: Arena) -> None:
    async with RawSocket(arena.url) as raw:
        assert (await raw.call('["whoami"]'))["error"]["code"] == "unauthorized"
        assert (await raw.call('["nothing"]'))["error"]["code"] == "unauthorized"


@pytest.mark.unit
def test_the_value_check_bounds_depth_count_and_text() -> None:
    check_value({"text": "fine 🙂", "n": 2**63 - 1, "x": -(2**63), "f": 1.5, "b": [None, True]})
    deep: object = 1
    for _ in range(MAX_DEPTH):
        deep = [deep]
    check_value(deep)
    with pytest.raises(InvalidPayload, match="nested"):
        check_value([deep])
    with pytest.raises(InvalidPayload, match="NUL"):
        check_value({"a\x00": 1})
    with pytest.raises(InvalidPayload, match="values"):
        check_value([[0] * (MAX_VALUES // 2), [0] * (MAX_VALUES // 2)])
    with pytest.raises(InvalidPayload, match="64 bits"):
        check_value([2**63])
    with pytest.raises(InvalidPayload, match="finite"):
        check_value([float("nan")])
