"""Direct messages and groups: who may create, join, read and post."""

from __future__ import annotations

import pytest

from botarena.arenas.names import dm_room
from botarena.server.errors import HubError
from botarena.server.protocol import Message
from tests.harness import Arena, eventually


async def test_direct_messages_reach_only_the_two_principals(arena: Arena) -> None:
    inboxes: dict[str, list[Message]] = {"ann": [], "ben": [], "eve": []}
    ann = await arena.client("ann", inbox=inboxes["ann"])
    invited: list[dict] = []
    ben = await arena.client("ben", inbox=inboxes["ben"])
    ben.sio.on("room.invited", invited.append)
    eve = await arena.client("eve", inbox=inboxes["eve"])

    room = (await ann.call("dm.open", {"principal": "ben"}))["name"]
    assert room == dm_room("ann", "ben") == "dm:ann+ben"
    await eventually(lambda: invited, what="ben told of the DM")
    await ann.join(room)
    await ben.join(room)
    await ann.send(room, "psst")
    await eventually(lambda: inboxes["ben"], what="ben receives")
    assert inboxes["ben"][0].text == "psst"
    with pytest.raises(HubError) as err:
        await eve.join(room)
    assert err.value.code == "forbidden"
    assert inboxes["eve"] == []

    mod = await arena.client("mod", "moderator")
    joined = await mod.join(room)  # moderators supervise direct messages
    assert [m.text for m in joined.messages] == ["psst"]
    assert joined.room.may_post is False
    with pytest.raises(HubError) as err:
        await mod.send(room, "moderators read but do not speak in others' DMs")
    assert err.value.code == "forbidden"


async def test_groups_are_created_by_the_allowed_and_joined_by_members(arena: Arena) -> None:
    plain = await arena.client("plain")
    with pytest.raises(HubError) as err:
        await plain.call("group.create", {"name": "plotters"})
    assert err.value.code == "forbidden"

    lead = await arena.client("lead", may_create_groups=True)
    await arena.token("member")
    info = await lead.call(
        "group.create", {"name": "reviewers", "title": "Code review", "members": ["member"]}
    )
    assert info["name"] == "group:reviewers"
    with pytest.raises(HubError) as err:
        await lead.call("group.create", {"name": "reviewers"})
    assert err.value.code == "conflict"
    with pytest.raises(HubError) as err:
        await plain.join("group:reviewers")
    assert err.value.code == "forbidden"

    assert (await lead.call("room.invite", {"room": "group:reviewers", "principal": "plain"}))[
        "added"
    ]
    await plain.join("group:reviewers")
    assert (await plain.send("group:reviewers", "thanks")).room == "group:reviewers"
    with pytest.raises(HubError) as err:  # members do not invite; the creator does
        await plain.call("room.invite", {"room": "group:reviewers", "principal": "lead"})
    assert err.value.code == "forbidden"


async def test_moderators_admit_agents_to_arenas(arena: Arena) -> None:
    mod = await arena.client("mod", "moderator")
    agent = await arena.client("newcomer", arenas=["compiler"])
    with pytest.raises(HubError):
        await agent.join("external")
    await mod.call("room.invite", {"room": "external", "principal": "newcomer"})
    assert (await agent.join("external")).room.name == "external"
    rooms = await agent.call("whoami")
    assert sorted(rooms["rooms"]) == ["compiler", "external"]


async def test_a_group_members_list_must_name_real_principals(arena: Arena) -> None:
    mod = await arena.client("mod", "moderator")
    before = await arena.fingerprint()
    with pytest.raises(HubError) as err:
        await mod.call("group.create", {"name": "ghosts", "members": ["nobody"]})
    assert err.value.code == "not_found"
    assert await arena.fingerprint() == before


async def test_whether_others_talk_does_not_show_to_an_outsider(arena: Arena) -> None:
    """A direct message or group an outsider is not in answers exactly as one that does
    not exist: the room names are predictable, the answers must not tell them apart."""
    mod = await arena.client("mod", "moderator")
    ann = await arena.client("ann")
    await arena.client("ben")
    eve = await arena.client("eve")
    await ann.open_dm("ben")
    await mod.call("group.create", {"name": "staff", "members": ["ann"]})

    async def answer(event: str, payload: dict) -> tuple[str, str]:
        with pytest.raises(HubError) as refused:
            await eve.call(event, payload)
        shown = refused.value.message.replace(payload["room"], "<room>")
        return refused.value.code, shown

    for real, made_up in [("dm:ann+ben", "dm:ann+carl"), ("group:staff", "group:nobody")]:
        for event, payload in [
            ("join", {}),
            ("history", {}),
            ("send", {"text": "hello?"}),
            ("room.invite", {"principal": "eve"}),
        ]:
            seen = await answer(event, {"room": real, **payload})
            assert seen == await answer(event, {"room": made_up, **payload}), (event, real)
            assert seen[0] in {"forbidden", "not_joined"}
    with pytest.raises(HubError, match="no room named"):  # supervisors see what exists
        await mod.join("dm:ann+carl")
