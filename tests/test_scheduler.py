"""The turn scheduler on a clock the test controls: mentions first, nobody dominates,
budgets hold, quiet rooms get initiative, muted agents and paused rooms stay silent."""

from __future__ import annotations

from datetime import UTC, datetime
from itertools import count, pairwise

import pytest

from botarena.agents.echoes import is_echo
from botarena.agents.persona import Persona, TurnLimits
from botarena.agents.scheduler import TurnScheduler

pytestmark = pytest.mark.unit

_ids = count(1)


def persona(pid: str, **limits: float) -> Persona:
    return Persona(
        id=pid,
        display_name=pid.title(),
        role="r",
        goal="g",
        backstory="b",
        arenas=["compiler"],
        limits=TurnLimits(**{"turns_per_minute": 60, "cooldown_seconds": 0, **limits}),
    )


def message(author: str, text: str, room: str = "compiler"):
    from botarena.server.protocol import Message

    return Message(
        id=next(_ids),
        room=room,
        author=author,
        author_role="agent",
        text=text,
        created_at=datetime.now(UTC),
    )


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def world():
    clock = Clock()
    scheduler = TurnScheduler(
        [persona("ada"), persona("bob"), persona("cy")],
        {"compiler": 600},
        quiet_seconds=10,
        clock=clock,
    )
    for agent in ("ada", "bob", "cy"):
        scheduler.enter(agent, "compiler")
    return scheduler, clock


def run(scheduler, turn, spoke=True):
    scheduler.finish(turn, spoke=spoke)
    return turn


def test_a_mention_is_answered_first_by_the_agent_mentioned(world) -> None:
    scheduler, _ = world
    scheduler.observe(message("human", "hello everyone"))
    asked = message("human", "@cy can you look at the lexer?")
    scheduler.observe(asked)
    turn = scheduler.next_turn()
    assert (turn.agent, turn.kind, turn.trigger) == ("cy", "mention", asked)
    by_name = message("human", "Bob, what do you think?")
    run(scheduler, turn)
    scheduler.observe(by_name)
    assert scheduler.next_turn().agent == "bob"


def test_an_unusable_answer_to_a_mention_is_tried_again_a_bounded_number_of_times(world) -> None:
    scheduler, clock = world
    scheduler.observe(message("human", "@ada ping"))
    attempts = []
    while (turn := scheduler.next_turn()) is not None and turn.kind == "mention":
        attempts.append(turn.attempt)
        scheduler.finish(turn, spoke=False)
        clock.now += 2
    assert attempts == [1, 2, 3]


def test_replies_rotate_so_no_agent_dominates(world) -> None:
    scheduler, clock = world
    speakers = []
    scheduler.observe(message("human", "what should we fix first?"))
    for _ in range(6):
        clock.now += 2
        turn = run(scheduler, scheduler.next_turn())
        speakers.append(turn.agent)
        scheduler.observe(message(turn.agent, f"{turn.agent} says something"))
    assert all(a != b for a, b in pairwise(speakers))
    assert {speakers.count(a) for a in ("ada", "bob", "cy")} == {2}


def test_when_turns_are_scarce_every_room_gets_its_turn(world) -> None:
    """A worker whose LLM is saturated takes one turn at a time: rooms that all wait for
    a reply are served in turn, not the first room listed over and over."""
    _, clock = world
    rooms = ["compiler", "creative", "education"]
    scheduler = TurnScheduler(
        [persona("ada"), persona("bob")], dict.fromkeys(rooms, 600), quiet_seconds=1e9, clock=clock
    )
    for room in rooms:
        for agent in ("ada", "bob"):
            scheduler.enter(agent, room)
    served = []
    for n in range(9):
        for room in rooms:  # every room always has a new message waiting
            scheduler.observe(message("human", f"news {n} in {room}", room))
        clock.now += 2
        turn = run(scheduler, scheduler.next_turn())
        served.append(turn.room)
    assert [served.count(room) for room in rooms] == [3, 3, 3], served
    assert len(set(served[:3])) == 3, "no room is served twice before each was once"


def test_the_arena_budget_limits_turns_per_minute(world) -> None:
    _, clock = world
    scheduler = TurnScheduler(
        [persona("ada"), persona("bob")], {"compiler": 6}, quiet_seconds=10, clock=clock
    )
    scheduler.enter("ada", "compiler")
    scheduler.enter("bob", "compiler")
    turns = 0
    for second in range(60):
        clock.now += 1
        scheduler.observe(message("human", f"message {second}"))
        turn = scheduler.next_turn()
        if turn is not None:
            turns += 1
            run(scheduler, turn)
    assert 5 <= turns <= 7


def test_an_agents_cooldown_and_own_budget_hold(world) -> None:
    _, clock = world
    scheduler = TurnScheduler(
        [persona("solo", turns_per_minute=60, cooldown_seconds=30)],
        {"compiler": 600},
        quiet_seconds=1000,
        clock=clock,
    )
    scheduler.enter("solo", "compiler")
    scheduler.observe(message("human", "first"))
    run(scheduler, scheduler.next_turn())
    scheduler.observe(message("human", "second"))
    assert scheduler.next_turn() is None
    clock.now += 31
    assert scheduler.next_turn().kind == "reply"


def test_a_quiet_room_gets_initiative(world) -> None:
    scheduler, clock = world
    assert scheduler.next_turn() is None
    clock.now += 11
    turn = scheduler.next_turn()
    assert turn.kind == "initiative" and turn.trigger is None


def test_muted_agents_and_paused_rooms_get_no_turn(world) -> None:
    scheduler, clock = world
    scheduler.mute("cy", 60)
    scheduler.observe(message("human", "@cy are you there?"))
    turn = scheduler.next_turn()
    assert turn is None or turn.agent != "cy"
    if turn:
        run(scheduler, turn)
    scheduler.set_paused("compiler", True)
    scheduler.observe(message("human", "anyone?"))
    clock.now += 100
    assert scheduler.next_turn() is None
    scheduler.set_paused("compiler", False)
    scheduler.unmute("cy")
    assert scheduler.next_turn() is not None


def test_history_from_before_arrival_needs_no_answer(world) -> None:
    scheduler, _ = world
    old = message("human", "an old question")
    scheduler.enter("ada", "creative", answered_through=old.id)
    scheduler.observe(old.model_copy(update={"room": "creative"}))
    assert scheduler.next_turn() is None


def test_a_lone_agent_still_takes_initiative_in_a_quiet_room(world) -> None:
    scheduler, clock = world
    scheduler.mute("bob", 600)
    scheduler.mute("cy", 600)
    scheduler.observe(message("ada", "I spoke last"))
    clock.now += 11
    turn = scheduler.next_turn()
    assert (turn.agent, turn.kind) == ("ada", "initiative")


def test_an_echo_or_an_agents_own_message_starts_no_mention_turn(world) -> None:
    scheduler, _ = world
    echo = message("human", 'You are Cy in the "compiler" room of a team chat. Reply to ada.')
    assert scheduler.mentioned(echo) == set()
    quoted = message("bob", "Chat so far:\nada: hi\nAnswer cy in one or two sentences.")
    assert scheduler.mentioned(quoted) == set()
    own = message("cy", "@cy Cy here: I looked at the lexer, @bob.")
    assert scheduler.mentioned(own) == {"bob"}
    for m in (echo, quoted, own):
        scheduler.observe(m)
    turn = scheduler.next_turn()
    assert (turn.agent, turn.kind, turn.trigger) == ("bob", "mention", own)


@pytest.mark.unit
def test_an_echo_naming_one_of_a_thousand_agents_is_found_and_other_texts_are_not() -> None:
    names = [n for i in range(500) for n in (f"bench{i}", f"Bench {i}")]
    assert is_echo('You are Bench 417 in the "compiler" room. Speak.', names)
    assert is_echo("so: you are @bench3 in the education room", names)
    assert not is_echo("You are Bench 9000 in the compiler room.", names), "not an agent"
    assert not is_echo("You are Bench 417, the one in the compiler room.", names)
    assert not is_echo("Bench 417 is in the compiler room; you are late.", names)


# tickets: queued work in the external arena --------------------------------------


def announce(ticket: int, question: str, *, role: str = "moderator"):
    from botarena.server.protocol import ticket_announcement

    return message(
        "mod", ticket_announcement(ticket, question, "please help"), "external"
    ).model_copy(update={"author_role": role})


def ticket_info(ticket: int, *, answer: int | None = None, status: str = "open"):
    from botarena.server.protocol import TicketInfo

    return TicketInfo(
        id=ticket,
        title=f"question {ticket}",
        body="please help",
        filed_by="mod",
        status=status,
        answer_proposal_id=answer,
        human_intervention=False,
        created_at=datetime.now(UTC),
        closed_at=None,
    )


@pytest.fixture
def desk():
    """ada and bob at the help desk (external), cy in compiler only."""
    clock = Clock()
    scheduler = TurnScheduler(
        [persona("ada"), persona("bob"), persona("cy")],
        {"compiler": 600, "external": 600},
        quiet_seconds=1000,
        clock=clock,
    )
    for agent in ("ada", "bob"):
        scheduler.enter(agent, "external")
    scheduler.enter("cy", "compiler")
    return scheduler, clock


def test_a_ticket_followed_by_other_messages_still_gets_its_turn(desk) -> None:
    scheduler, clock = desk
    scheduler.mute("bob", 600)  # one agent at the desk
    scheduler.observe(message("human", "hello desk", "external"))
    busy = scheduler.next_turn()
    assert (busy.agent, busy.kind) == ("ada", "reply")
    ticket = announce(7, "Which port does the hub listen on?")
    scheduler.observe(ticket)
    scheduler.observe(message("human", "also, good morning", "external"))
    scheduler.observe(message("human", "anyone there?", "external"))
    run(scheduler, busy)
    clock.now += 1
    turn = scheduler.next_turn()
    assert (turn.agent, turn.kind, turn.ticket, turn.trigger) == ("ada", "ticket", 7, ticket)


def test_tickets_are_answered_in_filing_order_one_agent_each(desk) -> None:
    scheduler, clock = desk
    scheduler.observe(announce(3, "first"))
    scheduler.observe(announce(4, "second"))
    scheduler.observe(message("human", "thanks in advance", "external"))
    first, second = scheduler.next_turn(), scheduler.next_turn()
    assert [(t.kind, t.ticket) for t in (first, second)] == [("ticket", 3), ("ticket", 4)]
    assert first.agent != second.agent
    assert scheduler.next_turn() is None  # both busy: no third turn on either ticket
    scheduler.ticket_done(3)
    scheduler.ticket_done(4)
    run(scheduler, first)
    run(scheduler, second)
    clock.now += 1
    after = scheduler.next_turn()  # the small talk comes only now
    assert (after.kind, after.ticket) == ("reply", None)
    assert after.trigger.text == "thanks in advance"
    assert scheduler.open_tickets() == []


def test_a_ticket_turn_comes_before_a_pending_small_talk_turn(desk) -> None:
    scheduler, clock = desk
    scheduler.enter("ada", "compiler")
    scheduler.mute("bob", 600)
    scheduler.observe(message("human", "@ada can you look at the lexer?", "compiler"))
    scheduler.observe(announce(9, "How do I restore last night's backup?"))
    turn = scheduler.next_turn()
    assert (turn.agent, turn.kind, turn.ticket) == ("ada", "ticket", 9)
    scheduler.ticket_done(9)
    run(scheduler, turn)
    clock.now += 1
    assert scheduler.next_turn().kind == "mention"  # the small talk follows


def test_an_unanswered_ticket_goes_back_to_the_queue_a_bounded_number_of_times(desk) -> None:
    scheduler, clock = desk
    scheduler.observe(announce(5, "a hard one"))
    attempts = []
    while (turn := scheduler.next_turn()) is not None and turn.kind == "ticket":
        attempts.append(turn.attempt)
        scheduler.finish(turn, spoke=False)  # the draft was refused
        clock.now += 2
    assert attempts == [1, 2, 3]
    assert scheduler.open_tickets() == [5]  # it waits for a human


def test_open_tickets_from_the_hub_are_queued_and_answered_ones_are_not(desk) -> None:
    scheduler, _ = desk
    scheduler.observe(announce(2, "seen, answered meanwhile"))
    scheduler.sync_tickets(
        [
            ticket_info(12),
            ticket_info(11),
            ticket_info(2, answer=40),
            ticket_info(1, status="closed"),
        ]
    )
    assert scheduler.open_tickets() == [11, 12]
    turn = scheduler.next_turn()
    assert (turn.kind, turn.ticket, turn.trigger.id) == ("ticket", 11, 0)
    assert turn.trigger.text.startswith("Ticket #11: question 11\n")
    assert turn.trigger.author_role == "moderator"
    scheduler.sync_tickets([ticket_info(12)], answered=[12])  # its answer waits for review
    assert scheduler.open_tickets() == [11]


def test_an_agents_ticket_like_message_is_not_a_ticket(desk) -> None:
    scheduler, _ = desk
    scheduler.observe(announce(31, "UPS runtime", role="agent"))
    assert scheduler.open_tickets() == []
