"""Moderators mute, kick and pause; every action is stored and survives reconnects."""

from __future__ import annotations

import asyncio

import pytest

from botarena.server.errors import HubError
from botarena.server.protocol import Message
from tests.harness import Arena, eventually


async def test_a_muted_agent_cannot_post_even_after_reconnecting(arena: Arena) -> None:
    mod = await arena.client("mod", "moderator")
    notices: list[dict] = []
    token = await arena.token("noisy")
    noisy = await arena.connect(token)
    noisy.sio.on("moderation", notices.append)
    await noisy.join("compiler")

    result = await mod.call("mod.mute", {"principal": "noisy", "seconds": 600, "reason": "spam"})
    assert result["principal"] == "noisy"
    await eventually(lambda: notices, what="mute notice")
    assert notices[0]["action"] == "mute" and notices[0]["reason"] == "spam"
    with pytest.raises(HubError) as err:
        await noisy.send("compiler", "still talking")
    assert err.value.code == "muted" and err.value.detail["until"]

    await noisy.close()
    await noisy.connect()
    await noisy.join("compiler")
    with pytest.raises(HubError) as err:
        await noisy.send("compiler", "after reconnect")
    assert err.value.code == "muted"

    assert (await mod.call("mod.unmute", {"principal": "noisy"}))["lifted"] is True
    assert (await noisy.send("compiler", "thank you")).text == "thank you"
    history, _ = await noisy.history("compiler", since=0)
    assert [m.text for m in history] == ["thank you"]


async def test_a_mute_ends_by_itself(arena: Arena) -> None:
    mod = await arena.client("mod", "moderator")
    agent = await arena.client("brief")
    await agent.join("creative")
    await mod.call("mod.mute", {"principal": "brief", "seconds": 1})
    with pytest.raises(HubError):
        await agent.send("creative", "now")
    await asyncio.sleep(1.1)
    assert (await agent.send("creative", "later")).text == "later"


async def test_a_hub_restart_keeps_mutes_and_pauses(hub_factory, free_port: int) -> None:
    first = await hub_factory(port=free_port)
    mod_token = await first.token("mod", "moderator")
    agent_token = await first.token("agent1")
    mod = await first.connect(mod_token)
    await mod.call("mod.mute", {"principal": "agent1", "seconds": 600})
    await mod.call("mod.pause", {"room": "education"})
    await first.stop()

    second = await hub_factory(port=free_port)
    agent = await second.connect(agent_token)
    await agent.join("education")
    joined = await agent.join("operations")
    assert joined.room.paused is False
    with pytest.raises(HubError) as err:
        await agent.send("operations", "hello")
    assert err.value.code == "muted"
    mod2 = await second.connect(mod_token)
    await mod2.call("mod.unmute", {"principal": "agent1"})
    with pytest.raises(HubError) as err:
        await agent.send("education", "hello")
    assert err.value.code == "room_paused"


async def test_pause_and_resume_a_room(arena: Arena) -> None:
    mod = await arena.client("mod", "moderator")
    states: list[dict] = []
    agent = await arena.client("worker")
    agent.sio.on("room.state", states.append)
    await agent.join("operations")
    await mod.join("operations")

    paused = await mod.call("mod.pause", {"room": "operations", "reason": "incident"})
    assert paused == {"room": "operations", "paused": True, "changed": True}
    await eventually(lambda: states, what="room.state pushed")
    assert states[0] == {"room": "operations", "paused": True, "by": "mod", "reason": "incident"}
    with pytest.raises(HubError) as err:
        await agent.send("operations", "rm -rf /")
    assert err.value.code == "room_paused"
    assert (await mod.send("operations", "moderators may still speak")).author == "mod"
    assert (await agent.join("operations")).room.paused is True

    assert (await mod.call("mod.pause", {"room": "operations"}))["changed"] is False
    assert (await mod.call("mod.resume", {"room": "operations"}))["changed"] is True
    assert (await agent.send("operations", "back to work")).author == "worker"


async def test_kick_disconnects_and_kick_from_a_room_revokes_it(arena: Arena) -> None:
    mod = await arena.client("mod", "moderator")
    token = await arena.token("rowdy")
    rowdy = await arena.connect(token)
    await mod.call("mod.kick", {"principal": "rowdy", "reason": "cool off"})
    await eventually(lambda: not rowdy.connected, what="rowdy disconnected")

    inbox: list[Message] = []
    rowdy = await arena.connect(token, inbox=inbox)  # a plain kick does not ban
    await rowdy.join("compiler")
    await rowdy.join("creative")
    await mod.join("compiler")
    await mod.call("mod.kick", {"principal": "rowdy", "room": "compiler"})
    await eventually(
        lambda: (
            "compiler"
            not in arena.running.hub.sessions[
                next(
                    s for s, v in arena.running.hub.sessions.items() if v.principal.name == "rowdy"
                )
            ].joined
        ),
        what="left compiler",
    )
    await mod.send("compiler", "rowdy must not see this")
    with pytest.raises(HubError) as err:
        await rowdy.send("compiler", "let me back")
    assert err.value.code == "not_joined"
    with pytest.raises(HubError) as err:
        await rowdy.join("compiler")
    assert err.value.code == "forbidden"
    assert (await rowdy.send("creative", "still welcome here")).room == "creative"
    assert all(m.text != "rowdy must not see this" for m in inbox)


async def test_moderators_cannot_moderate_their_equals_or_admins(arena: Arena) -> None:
    mod = await arena.client("mod", "moderator")
    await arena.token("peer", "moderator")
    await arena.token("root", "admin")
    admin = await arena.client("chief", "admin")
    for target in ("peer", "root", "mod"):
        with pytest.raises(HubError) as err:
            await mod.call("mod.mute", {"principal": target, "seconds": 60})
        assert err.value.code == "forbidden"
    assert (await admin.call("mod.mute", {"principal": "peer", "seconds": 60}))["principal"]


async def test_moderation_actions_are_logged(arena: Arena) -> None:
    mod = await arena.client("mod", "moderator")
    await arena.token("target")
    await mod.call("mod.mute", {"principal": "target", "seconds": 60, "reason": "r1"})
    await mod.call("mod.unmute", {"principal": "target"})
    await mod.call("mod.pause", {"room": "external", "reason": "maintenance"})
    await mod.call("mod.resume", {"room": "external"})
    await mod.call("mod.kick", {"principal": "target", "room": "creative"})
    log = await arena.store.moderation.log()
    assert [(e["action"], e["actor"], e["target"], e["room"]) for e in reversed(log)] == [
        ("mute", "mod", "target", None),
        ("unmute", "mod", "target", None),
        ("pause", "mod", None, "external"),
        ("resume", "mod", None, "external"),
        ("kick", "mod", "target", "creative"),
    ]


async def test_mute_duration_is_bounded(arena: Arena) -> None:
    mod = await arena.client("mod", "moderator")
    await arena.token("target")
    for seconds in (0, -5, 10**9):
        with pytest.raises(HubError) as err:
            await mod.call("mod.mute", {"principal": "target", "seconds": seconds})
        assert err.value.code == "invalid_payload"
