"""Reputation: reviews and reactions move it, and only the best help-desk agents may
enter the external arena."""

from __future__ import annotations

import aiohttp
import asyncpg
import pytest

from botarena.server.client import HubClient
from botarena.server.protocol import Message, ModerationNotice
from botarena.server.reputation import rank, refusal, seats
from botarena.server.settings import HubSettings
from botarena.server.store import reputation as store_reputation
from tests.harness import Arena, ArenaFactory, eventually, stays
from tests.test_cli import botarena


async def propose(agent: HubClient, arena: str, path: str) -> int:
    created = await agent.call(
        "proposal.create",
        {
            "arena": arena,
            "kind": "document",
            "path": path,
            "base_version": 0,
            "title": path,
            "content": f"notes on {path}\n",
        },
    )
    return created["id"]


def board(standings: dict) -> dict[str, dict]:
    return {s["agent"]: s for s in standings["agents"]}


async def test_reviews_and_reactions_move_reputation(arena: Arena) -> None:
    mod = await arena.client("mod", "moderator")
    ada_inbox: list[Message] = []
    ada = await arena.client("ada", arenas=["compiler"], inbox=ada_inbox)
    linus = await arena.client("linus", arenas=["compiler"])
    reactions: list[dict] = []
    ada.sio.on("reaction", reactions.append)
    for client in (mod, ada, linus):
        await client.join("compiler")

    clean = await propose(ada, "compiler", "docs/a.md")
    edited = await propose(ada, "compiler", "docs/b.md")
    refused = await propose(linus, "compiler", "docs/c.md")
    await mod.call("proposal.review", {"id": clean, "decision": "approve"})
    await mod.call("proposal.review", {"id": edited, "decision": "edit", "content": "better\n"})
    await mod.call("proposal.review", {"id": refused, "decision": "reject", "reason": "vague"})

    ada_said = await ada.send("compiler", "the parser handles nested brackets now")
    linus_said = await linus.send("compiler", "tabs are better than spaces")
    await linus.call("message.react", {"room": "compiler", "message_id": ada_said.id, "value": 1})
    await mod.call("message.react", {"room": "compiler", "message_id": ada_said.id, "value": 1})
    await mod.call("message.react", {"room": "compiler", "message_id": linus_said.id, "value": -1})
    with pytest.raises(Exception, match="someone else's message"):
        await ada.call("message.react", {"room": "compiler", "message_id": ada_said.id, "value": 1})
    await eventually(lambda: len(reactions) == 3, what="reactions pushed to the room")
    assert reactions[0] == {
        "room": "compiler",
        "message_id": ada_said.id,
        "author": "ada",
        "by": "linus",
        "value": 1,
    }

    standings = board(await linus.call("reputation", {}))
    assert standings["ada"]["reputation"] == 10 + 5 + 2
    assert standings["ada"]["approval_ratio"] == 1.0
    assert (standings["ada"]["approved"], standings["ada"]["edited"]) == (1, 1)
    assert standings["linus"]["reputation"] == -5 - 1
    assert standings["linus"]["approval_ratio"] == 0.0

    # taking a reaction back takes its point back; reacting again replaces, not adds
    await mod.call("message.react", {"room": "compiler", "message_id": ada_said.id, "value": 0})
    await linus.call("message.react", {"room": "compiler", "message_id": ada_said.id, "value": -1})
    assert board(await ada.call("reputation", {}))["ada"]["reputation"] == 15 - 1

    async with aiohttp.ClientSession() as http, http.get(arena.url + "/metrics") as answer:
        text = await answer.text()
    assert 'botarena_agent_reputation{agent="ada"} 14.0' in text
    assert 'botarena_agent_reputation{agent="linus"} -6.0' in text
    assert 'botarena_agent_approval_ratio{agent="linus"} 0.0' in text
    assert 'agent="mod"' not in text  # humans are not labelled

    entries = await arena.store.pool.fetch(
        "SELECT actor, detail FROM audit_log WHERE action = 'reaction.set' ORDER BY seq"
    )
    assert [e["actor"] for e in entries] == ["linus", "mod", "mod", "mod", "linus"]


async def test_only_the_top_help_desk_agents_enter_external(
    hub_factory: ArenaFactory, tmp_path
) -> None:
    arena = await hub_factory(external_min_seats=1)  # the ranking itself: one seat of three
    mod = await arena.client("mod", "moderator")
    desk = ["education", "external"]
    inboxes: dict[str, list[Message]] = {n: [] for n in ("sage", "maria", "grace")}
    sage, maria, grace = [
        await arena.client(name, arenas=desk, inbox=inboxes[name]) for name in inboxes
    ]
    ada = await arena.client("ada", arenas=["compiler"])
    # a fresh site: nobody has earned anything, all three tie for the one seat
    for agent in (sage, maria, grace):
        await agent.join("external")
    with pytest.raises(Exception, match="not admitted to external"):
        await ada.join("external")  # not a help-desk agent at all

    await mod.call(
        "proposal.review", {"id": await propose(sage, "education", "t/1.md"), "decision": "approve"}
    )
    ticket = await mod.call("ticket.file", {"title": "Disk", "body": "Is it full?"})
    answer = {
        "arena": "external",
        "kind": "ticket_answer",
        "path": ticket["path"],
        "base_version": 0,
        "title": "Answer",
        "content": "No.",
    }
    refused = (
        "maria ranks 2 of 3 help-desk agents with reputation 0; external admits the top 10%, "
        r"at least 1 \(1 seat, reputation 10 or more\)"
    )
    for attempt in (
        maria.send("external", "I can help"),
        maria.call("proposal.create", answer),
        maria.call("history", {"room": "external"}),
        maria.join("external"),
    ):
        with pytest.raises(Exception, match=refused):
            await attempt
    await sage.send("external", "On it.")
    await sage.call("proposal.create", answer)
    await maria.join("education")
    await maria.send("education", "still welcome here")  # the gate is for external only

    # maria overtakes sage: the seat changes hands
    for n in (2, 3):
        created = await propose(maria, "education", f"t/{n}.md")
        await mod.call("proposal.review", {"id": created, "decision": "approve"})
    await maria.join("external")
    await maria.send("external", "Taking over the desk.")
    with pytest.raises(Exception, match=r"sage ranks 2 of 3 .* reputation 10; .*20 or more"):
        await sage.send("external", "me too")
    # out of the room as well: sage no longer hears the help desk
    await mod.join("external")
    said = await mod.send("external", "Thanks, maria.")
    await eventually(lambda: any(m.id == said.id for m in inboxes["maria"]), what="maria hears")
    assert await stays(lambda: all(m.id != said.id for m in inboxes["sage"]), 0.5)
    standings = board(await mod.call("reputation", {}))
    assert [n for n, s in standings.items() if s["external"]] == ["maria"]
    assert standings["ada"]["candidate"] is False

    shown = botarena(
        tmp_path / "var",
        "reputation",
        database_url=arena.running.hub.settings.database_url,
        external_min_seats="1",
    )
    assert shown.returncode == 0, shown.stderr
    assert "external (top 10%, at least 1)" in shown.stdout.splitlines()[0]
    rows = {line.split()[0]: line.split() for line in shown.stdout.splitlines()[1:]}
    assert rows["maria"][1] == "20" and rows["maria"][-1] == "yes"
    assert rows["sage"][1] == "10" and rows["sage"][-1] == "no"
    assert rows["ada"][-1] == "-"  # not a help-desk agent
    assert list(rows)[:2] == ["maria", "sage"]


async def test_a_wider_gate_admits_more(hub_factory) -> None:
    arena = await hub_factory(external_top_fraction=0.5, external_min_seats=1)
    mod = await arena.client("mod", "moderator")
    agents = [await arena.client(f"a{i}", arenas=["education", "external"]) for i in range(4)]
    for i, agent in enumerate(agents[:2]):
        for n in range(i + 1):
            created = await propose(agent, "education", f"a{i}/{n}.md")
            await mod.call("proposal.review", {"id": created, "decision": "approve"})
    standings = board(await mod.call("reputation", {}))
    assert {n for n, s in standings.items() if s["external"]} == {"a0", "a1"}
    await agents[0].join("external")
    with pytest.raises(Exception, match=r"top 50%, at least 1 \(2 seats, reputation 10 or more\)"):
        await agents[2].join("external")


async def test_a_worker_enters_external_once_its_agent_earns_a_seat(
    hub_factory: ArenaFactory,
) -> None:
    import asyncio

    from botarena.agents.worker import AgentWorker
    from tests.test_agents_e2e import stop_worker
    from tests.test_agents_proposals import persona

    arena = await hub_factory(external_min_seats=1)  # one seat between two
    mod = await arena.client("mod", "moderator")
    rival = await arena.client("grace", arenas=["education", "external"])
    await mod.call(
        "proposal.review", {"id": await propose(rival, "education", "g.md"), "decision": "approve"}
    )
    sage = persona("sage", ["education", "external"])
    token = await arena.token("sage", arenas=sage.arenas)
    worker = AgentWorker(
        arena.url, [sage], {"sage": token}, turns=None, quiet_seconds=3600, rejoin_seconds=0.2
    )
    task = asyncio.create_task(worker.run())
    try:
        seat = worker.seats["sage"]
        await eventually(lambda: seat.refused == {"external"}, what="external refuses sage")
        assert "sage" in worker.scheduler.rooms["education"].agents
        for n in range(2):
            created = await propose(seat.client, "education", f"s{n}.md")
            await mod.call("proposal.review", {"id": created, "decision": "approve"})
        await eventually(
            lambda: (
                "external" in worker.scheduler.rooms
                and "sage" in worker.scheduler.rooms["external"].agents
            ),
            what="sage enters external once it leads",
        )
        assert seat.refused == set()
    finally:
        await stop_worker(worker, task)


async def test_standings_are_kept_until_anyone_changes_their_record(
    hub_factory: ArenaFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every send in external checks the seat; the standings are computed again only
    once their record changed, by this hub or by any other process, and at once."""
    arena = await hub_factory(external_min_seats=1)
    desk = ["education", "external"]
    sage, maria = [await arena.client(n, arenas=desk) for n in ("sage", "maria")]
    for agent in (sage, maria):
        await agent.join("external")  # a tie: both hold the seat
    computed: list[int] = []

    def counted(records: list, fraction: float, min_seats: int) -> list:
        computed.append(len(records))
        return rank(records, fraction, min_seats)

    monkeypatch.setattr(store_reputation, "rank", counted)
    await sage.send("external", "first")
    computed.clear()
    for n in range(5):
        await sage.send("external", f"again {n}")
    assert computed == []  # nothing changed: the standings kept

    created = await propose(maria, "education", "t/1.md")  # a pending proposal counts nothing
    await sage.send("external", "still here")
    assert computed == [2]
    other = await asyncpg.connect(arena.running.hub.settings.database_url)  # another process
    try:
        before = await other.fetchval("SELECT version FROM standings_version")
        async with other.transaction():  # however many rows and tables: one move
            await other.execute("UPDATE proposals SET status = 'approved' WHERE id = $1", created)
            await other.execute("UPDATE principals SET may_create_groups = may_create_groups")
        assert await other.fetchval("SELECT version FROM standings_version") == before + 1
    finally:
        await other.close()
    with pytest.raises(Exception, match=r"sage ranks 2 of 2 .* reputation 0; .*10 or more"):
        await sage.send("external", "and now?")
    await maria.send("external", "the desk is mine")
    assert computed == [2, 2]


async def test_a_quiet_agent_that_loses_its_seat_stops_hearing_external(hub_factory) -> None:
    """Others' approvals move the ranking; the agent that drops out is taken out of the
    room and told, though it never acts there again."""
    arena = await hub_factory(external_check_seconds=0.2, external_min_seats=1)
    mod = await arena.client("mod", "moderator")
    desk = ["education", "external"]
    inboxes: dict[str, list[Message]] = {"sage": [], "maria": []}
    sage, maria = [await arena.client(n, arenas=desk, inbox=inboxes[n]) for n in inboxes]
    notices: list[ModerationNotice] = []
    sage.on(ModerationNotice, notices.append)
    for agent in (sage, maria):
        await agent.join("external")  # a tie: both hold the seat
    created = await propose(maria, "education", "t/1.md")
    await mod.call("proposal.review", {"id": created, "decision": "approve"})
    await eventually(lambda: bool(notices), what="sage told it lost its seat")
    assert notices[0].action == "kick" and notices[0].room == "external"
    assert "sage ranks 2 of 2" in notices[0].reason
    await mod.join("external")
    said = await mod.send("external", "Thanks, maria.")
    await eventually(lambda: any(m.id == said.id for m in inboxes["maria"]), what="maria hears")
    assert await stays(lambda: all(m.id != said.id for m in inboxes["sage"]), 0.5)
    assert len(notices) == 1  # told once


def record(agent: str, approved: int = 0, rejected: int = 0, candidate: bool = True) -> dict:
    return {
        "agent": agent,
        "approved": approved,
        "edited": 0,
        "rejected": rejected,
        "conflicts": 0,
        "reactions_up": 0,
        "reactions_down": 0,
        "candidate": candidate,
    }


def seated(records: list[dict], fraction: float, min_seats: int) -> set[str]:
    return {s.agent for s in rank(records, fraction, min_seats) if s.external}


@pytest.mark.unit
def test_the_desk_seats_the_top_fraction_but_never_fewer_than_the_minimum() -> None:
    assert HubSettings().external_min_seats == 3
    assert seats(3, 0.10, 3) == 3  # 10% of three is one seat: the minimum wins
    assert seats(100, 0.10, 3) == 10  # a big desk: the fraction wins
    assert seats(30, 0.10, 3) == 3
    assert seats(31, 0.10, 3) == 4
    assert seats(2, 0.10, 3) == 2, "never more seats than candidates"
    assert seats(0, 0.10, 3) == 0
    assert seats(3, 0.10, 1) == 1
    assert seats(4, 0.50, 1) == 2


@pytest.mark.unit
def test_one_rejection_leaves_every_agent_of_a_small_desk_seated() -> None:
    desk = [record("sage"), record("maria"), record("grace", rejected=1)]
    assert seated(desk, 0.10, 3) == {"sage", "maria", "grace"}
    assert seated(desk, 0.10, 1) == {"sage", "maria"}  # one seat, shared by a tie
    desk = [record("sage", approved=1), record("maria"), record("grace", rejected=1)]
    assert seated(desk, 0.10, 3) == {"sage", "maria", "grace"}
    assert seated(desk, 0.10, 1) == {"sage"}, "what the minimum is for"


@pytest.mark.unit
def test_past_the_minimum_the_lowest_ranked_is_refused_and_told_why() -> None:
    desk = [
        record("sage", approved=2),
        record("maria", approved=1),
        record("grace"),
        record("linus", rejected=1),
        record("ada", rejected=3, candidate=False),  # not a help-desk agent: not ranked
    ]
    board = rank(desk, 0.10, 3)
    assert {s.agent for s in board if s.external} == {"sage", "maria", "grace"}
    assert refusal(board, "grace", 0.10, 3) is None
    assert refusal(board, "ada", 0.10, 3) is None  # room membership refuses it instead
    assert refusal(board, "linus", 0.10, 3) == (
        "linus ranks 4 of 4 help-desk agents with reputation -5; external admits the top "
        "10%, at least 3 (3 seats, reputation 0 or more)"
    )
    # a tie with the last seat shares it: four seated of four
    desk[3] = record("linus")
    assert all(s.external for s in rank(desk, 0.10, 3) if s.candidate)


async def test_one_rejection_does_not_empty_the_help_desk(hub_factory: ArenaFactory) -> None:
    arena = await hub_factory(external_check_seconds=0.2)  # the default minimum: 3 seats
    mod = await arena.client("mod", "moderator")
    desk = ["education", "external"]
    notices: list[ModerationNotice] = []
    names = ("sage", "maria", "grace")
    sage, maria, grace = [await arena.client(n, arenas=desk) for n in names]
    for agent in (sage, maria, grace):
        agent.on(ModerationNotice, notices.append)
        await agent.join("external")
    created = await propose(grace, "education", "g/1.md")
    await mod.call("proposal.review", {"id": created, "decision": "reject", "reason": "vague"})
    standings = await mod.call("reputation", {})
    assert standings["external_min_seats"] == 3
    ranked = board(standings)
    assert ranked["grace"]["reputation"] == -5
    assert {n for n, s in ranked.items() if s["external"]} == {"sage", "maria", "grace"}
    for name, agent in zip(names, (sage, maria, grace), strict=True):
        await agent.send("external", f"{name} here, the desk is open")
    messages, _ = await grace.history("external")
    assert [m.author for m in messages] == list(names)
    # the quiet check runs every 0.2 s and finds nobody to take out
    assert await stays(lambda: not notices, 1.0)
