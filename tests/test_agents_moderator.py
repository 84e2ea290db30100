"""The AI moderator persona: its watch flags an agent that repeats itself and mutes one
that does not stop, through the real hub, within what the hub lets an AI moderator do."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from botarena.agents.moderator import ModeratorSpec, Watch
from botarena.agents.persona import load_personas
from botarena.agents.worker import AgentWorker
from botarena.arenas.policy import Category
from botarena.server.errors import Muted
from botarena.server.protocol import Message, QueueState, Role
from tests.harness import Arena, eventually
from tests.test_agents_e2e import stop_worker
from tests.test_personas import SHIPPED

LOOP = "I will add a test for the parser and keep the fix small"
VARIANT = "I will add a test for the parser and keep the fix tiny"


def said(n: int, text: str, author: str = "ada", role: Role = Role.AGENT) -> Message:
    return Message(
        id=n,
        room="compiler",
        author=author,
        author_role=role,
        text=text,
        created_at=datetime(2026, 12, 1, tzinfo=UTC),
    )


@pytest.mark.unit
def test_a_repeat_is_flagged_and_a_loop_muted() -> None:
    watch = Watch(ModeratorSpec(flags_to_mute=2, window_seconds=60), "warden")
    assert watch.observe(said(1, LOOP), now=0) == []
    assert watch.observe(said(2, "The lexer change needs fuzz tests first, I think."), 1) == []
    [flag] = watch.observe(said(3, LOOP + "."), now=2)
    assert (flag.action, flag.agent, flag.message_id) == ("flag", "ada", 3)
    assert "repeats message 1" in flag.reason
    flag, mute = watch.observe(said(4, LOOP), now=3)
    assert (mute.action, mute.agent, mute.seconds) == ("mute", "ada", 300)
    # the count starts again after a mute, and old flags fall out of the window
    assert [d.action for d in watch.observe(said(5, LOOP), now=100)] == ["flag"]
    assert [d.action for d in watch.observe(said(6, LOOP), now=200)] == ["flag"]


@pytest.mark.unit
def test_a_near_verbatim_repeat_is_held_and_counts_toward_the_mute() -> None:
    watch = Watch(ModeratorSpec(hold_from=0.95, flags_to_mute=2), "warden")
    watch.observe(said(1, LOOP), now=0)
    [flag] = watch.observe(said(2, VARIANT), now=1)  # 11 of 13 words: 85%
    [hold, mute] = watch.observe(said(3, LOOP), now=2)
    assert (flag.action, hold.action, hold.message_id, mute.action) == ("flag", "hold", 3, "mute")
    assert [d.action for d in Watch(ModeratorSpec(), "w").observe(said(1, LOOP), 0)] == []


@pytest.mark.unit
def test_humans_peers_itself_and_short_lines_are_not_judged() -> None:
    watch = Watch(ModeratorSpec(), "warden", {"keeper"})
    for n, (author, role) in enumerate(
        [("mod", Role.MODERATOR), ("keeper", Role.AGENT), ("warden", Role.AGENT)] * 3
    ):
        assert watch.observe(said(n, LOOP, author, role), now=n) == []
    for n in range(10, 14):
        assert watch.observe(said(n, "ok, thanks"), now=n) == []  # too short to be a loop


@pytest.mark.unit
def test_the_shipped_ai_moderator_persona() -> None:
    personas, errors = load_personas(SHIPPED)
    assert errors == []
    [warden] = [p for p in personas if p.moderator is not None]
    assert warden.id == "warden" and "external" not in warden.arenas


class NoTurns:
    """A turn runner that must not be asked: the room is never quiet long enough."""

    async def take(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the moderator took a turn")


async def test_the_ai_moderator_flags_a_loop_and_mutes_it(arena: Arena) -> None:
    [warden] = [p for p in load_personas(SHIPPED)[0] if p.id == "warden"]
    warden = warden.model_copy(update={"arenas": ["compiler"]})
    token = await arena.token("warden", Role.AGENT, arenas=["compiler"], ai_moderator=True)
    worker = AgentWorker(arena.url, [warden], {"warden": token}, NoTurns(), quiet_seconds=600)
    task = asyncio.create_task(worker.run())
    try:
        await eventually(lambda: worker.seats["warden"].held, 30, what="the warden seated")
        await eventually(
            lambda: (
                "compiler" in worker.scheduler.rooms
                and "warden" in worker.scheduler.rooms["compiler"].agents
            ),
            30,
            what="the warden in compiler",
        )
        ada = await arena.client("ada", arenas=["compiler"])
        mod = await arena.client("mod", "moderator")
        await ada.join("compiler")
        await mod.join("compiler")
        sent = [await ada.send("compiler", LOOP)]
        for text in (LOOP, VARIANT, LOOP):  # held, flagged (85% the same), held
            await asyncio.sleep(0.2)  # each heard before the next
            sent.append(await ada.send("compiler", text))
        items: list[Any] = []

        async def flagged() -> bool:
            items[:] = await mod.queue()
            return len(items) == 3

        for _ in range(100):
            if await flagged():
                break
            await asyncio.sleep(0.1)
        assert [(i.message_id, i.kind, i.source, i.categories) for i in items] == [
            (m.id, kind, "warden", [Category.NOISE])
            for m, kind in zip(sent[1:], ["held", "flagged", "held"], strict=True)
        ]
        shown, _ = await mod.history("compiler", since=0)
        assert [m.id for m in shown] == [sent[0].id, sent[2].id]  # the echoes withheld

        def seen() -> list[int]:  # what the worker's turns see of the room
            return [m.id for m in worker.scheduler.history("compiler")]

        await eventually(lambda: sent[3].id not in seen(), what="the worker told")
        assert seen() == [sent[0].id, sent[2].id]
        for _ in range(100):
            try:
                await ada.send("compiler", "a new thought about the lexer, really")
            except Muted:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("ada was never muted")
        await mod.send("compiler", LOOP)  # a human repeating is no one's business
        await mod.send("compiler", LOOP)
        await asyncio.sleep(0.5)
        assert len(await mod.queue()) == 3
        cleared = await mod.clear(items[1].id, "fine")
        assert cleared.state is QueueState.CLEARED
        released = await mod.release(items[0].id, "the first one may stay")
        assert released.state is QueueState.RELEASED
        await eventually(lambda: sent[1].id in seen(), what="the release told")
        assert seen()[:3] == [m.id for m in sent[:3]]  # in its place
    finally:
        await stop_worker(worker, task)
