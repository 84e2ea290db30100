"""A batch of one room's messages, stored as a set, answers each draft as storing the
drafts one at a time would: against a real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from botarena.server.errors import Muted, NotFound, RoomPaused, UnknownRoom
from botarena.server.protocol import Role
from botarena.server.store import Store
from botarena.server.store.messages import Draft, Posted


async def test_a_batch_answers_each_draft_as_one_post_at_a_time_would(database_url: str) -> None:
    store = await Store.open(database_url)
    ada, _ = await store.principals.issue_token("ada", Role.AGENT, arenas=["compiler"])
    bob, _ = await store.principals.issue_token("bob", Role.AGENT, arenas=["compiler"])
    mod, _ = await store.principals.issue_token("mod", Role.MODERATOR)
    messages = store.messages
    first = await messages.post("compiler", ada, "the first one", client_id="a1")
    await store.moderation.mute(bob, datetime.now(UTC) + timedelta(minutes=5), "noise", mod)

    answers = await messages.post_batch(
        "compiler",
        [
            Draft(ada, "a new one", client_id="a2"),
            Draft(ada, "the first one, resent", client_id="a1"),
            Draft(bob, "from a muted agent", client_id="b1"),
            Draft(ada, "a reply to nothing here", reply_to=first.message.id + 1000),
            Draft(mod, "a reply", reply_to=first.message.id),
            Draft(ada, "no client id"),
        ],
    )
    new, resent, muted, bad_reply, reply, keyless = answers
    assert isinstance(new, Posted) and isinstance(reply, Posted) and isinstance(keyless, Posted)
    assert not new.duplicate and new.message.prev_id == first.message.id
    assert reply.message.prev_id == new.message.id and reply.message.reply_to == first.message.id
    assert keyless.message.prev_id == reply.message.id
    assert new.message.id < reply.message.id < keyless.message.id
    assert reply.message.author == "mod" and reply.message.author_role is Role.MODERATOR
    assert isinstance(resent, Posted) and resent.duplicate and not resent.announce
    assert resent.message.id == first.message.id and resent.message.text == "the first one"
    assert isinstance(muted, Muted)
    assert isinstance(bad_reply, NotFound)
    stored = await store.pool.fetch("SELECT id, text FROM messages ORDER BY id")
    assert [r["text"] for r in stored] == ["the first one", "a new one", "a reply", "no client id"]
    assert [r["id"] for r in stored][1:] == [
        new.message.id,
        reply.message.id,
        keyless.message.id,
    ]

    # two drafts with one client id: stored one at a time, the second finds the first
    twice = await messages.post_batch(
        "compiler", [Draft(ada, "once", client_id="a3"), Draft(ada, "once", client_id="a3")]
    )
    assert isinstance(twice[0], Posted) and not twice[0].duplicate
    assert isinstance(twice[1], Posted) and twice[1].duplicate
    assert twice[1].message.id == twice[0].message.id

    await store.moderation.set_paused("compiler", True, "a break", mod)
    paused = await messages.post_batch(
        "compiler",
        [
            Draft(ada, "while paused", client_id="a4"),
            Draft(mod, "a moderator may", client_id="m1", may_post_when_paused=True),
        ],
    )
    assert isinstance(paused[0], RoomPaused)
    assert isinstance(paused[1], Posted) and paused[1].message.prev_id == twice[0].message.id
    nowhere = await messages.post_batch(
        "kitchen", [Draft(ada, "hello", client_id="a5"), Draft(mod, "hi", client_id="m2")]
    )
    assert all(isinstance(a, UnknownRoom) for a in nowhere)
    assert await store.pool.fetchval("SELECT count(*) FROM messages") == 6
    await store.close()
