"""Who speaks next: the turn scheduler of an agent worker.

It watches every room the worker's agents are in and hands out turns in this order:

1. mentions: a message naming an agent (``@id`` or its display name) gets that agent's
   answer first; never the agent's own message, nor one that echoes a prompt
   (:mod:`botarena.agents.echoes`), whose names are the prompt's, not a call;
2. replies: a room whose last message came from someone else gets an answer from the
   agent there that spoke least recently, never the room's last speaker, so no agent
   dominates;
3. initiative: a room quiet for ``quiet_seconds`` gets a turn from the agent that spoke
   least recently (the last speaker only when no other agent can), prompted by the
   arena's mission.

Before all of them come tickets: every ticket a human announces in the external arena
(:data:`~botarena.server.protocol.TICKET_ANNOUNCEMENT`), and every open one the hub lists
(:meth:`TurnScheduler.sync_tickets`, for tickets filed while the worker was away), is
queued work, not a message to reply to. The oldest open ticket goes to a free agent seated
in the external arena, one agent per ticket at a time, until the ticket has an answer or was handed
to a human (:meth:`TurnScheduler.ticket_done`); a ticket turn that ends without one puts the
ticket back in the queue, up to :data:`TICKET_ATTEMPTS` turns, after which it waits for a
human. Ticket turns respect each agent's own limits but not the arena's chat budget.

Every turn must fit the arena's budget (turns per minute for all agents of that arena
together, a token bucket) and the agent's own (its persona's turns per minute and
cooldown), so the LLM is never flooded. Muted agents, paused rooms and agents already
thinking get no turn. The scheduler is plain logic over a clock, with no I/O.
"""

from __future__ import annotations

import re
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

from botarena.agents.echoes import is_echo
from botarena.agents.persona import Persona
from botarena.arenas.names import EXTERNAL, RoomKind, TicketStatus, room_kind
from botarena.server.protocol import (
    TICKET_ANNOUNCEMENT,
    Message,
    TicketInfo,
    ticket_announcement,
)
from botarena.server.ratelimit import RateLimiter

TurnKind = Literal["ticket", "mention", "reply", "initiative"]


@dataclass(frozen=True)
class Turn:
    agent: str
    room: str
    kind: TurnKind
    trigger: Message | None  # the message answered; None for initiative
    attempt: int = 1
    ticket: int | None = None  # a ticket turn: the ticket it answers


MENTION_ATTEMPTS = 3
"""A mention whose answer was unusable is tried again, up to this many times in all."""


TICKET_ATTEMPTS = 3
"""A ticket gets this many turns at most; still unanswered, it waits for a human."""


@dataclass
class _Ticket:
    id: int
    trigger: Message  # its announcement (rebuilt from the hub's list when not seen)
    attempts: int = 0  # turns started for it
    taken_by: str | None = None  # the agent whose turn is answering it now
    answered: bool = False


@dataclass
class _Room:
    name: str
    arena: str | None
    agents: set[str] = field(default_factory=set)
    recent: deque[Message] = field(default_factory=lambda: deque(maxlen=30))
    paused: bool = False
    last_activity: float = 0.0
    answered_id: int = 0  # newest message id that has been answered (or started)
    last_served: float = float("-inf")  # when a turn was last given here


class TurnScheduler:
    """Turn decisions for the agents of one worker."""

    def __init__(
        self,
        personas: Iterable[Persona],
        arena_budgets: dict[str, float],
        *,
        quiet_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.clock = clock
        self.quiet_seconds = quiet_seconds
        self.personas = {p.id: p for p in personas}
        self.rooms: dict[str, _Room] = {}
        self.muted_until: dict[str, float] = {}
        self.busy: set[str] = set()
        self.last_turn: dict[str, float] = {p: float("-inf") for p in self.personas}
        self._arena_limit = {
            arena: RateLimiter(rate / 60.0, max(1, int(rate // 6) or 1), clock)
            for arena, rate in arena_budgets.items()
        }
        self._agent_limit = {
            p.id: RateLimiter(p.limits.turns_per_minute / 60.0, 1, clock)
            for p in self.personas.values()
        }
        self._mentions: deque[tuple[str, Message, int]] = deque()
        self.tickets: dict[int, _Ticket] = {}
        self._patterns = {
            p.id: re.compile(
                rf"(?<![\w@])@?({re.escape(p.id)}|{re.escape(p.display_name)})\b", re.IGNORECASE
            )
            for p in self.personas.values()
        }
        self._names = {n for p in self.personas.values() for n in (p.id, p.display_name)}

    # what the worker tells the scheduler ------------------------------------------

    def enter(
        self, agent: str, room: str, *, paused: bool = False, answered_through: int = 0
    ) -> None:
        """``agent`` is in ``room``; messages up to ``answered_through`` need no answer
        (history from before the agent arrived)."""
        state = self.rooms.get(room)
        if state is None:
            arena = room if room_kind(room) is RoomKind.ARENA else None
            state = self.rooms[room] = _Room(room, arena, last_activity=self.clock())
        state.agents.add(agent)
        state.paused = paused
        state.answered_id = max(state.answered_id, answered_through)

    def leave(self, agent: str, room: str) -> None:
        if room in self.rooms:
            self.rooms[room].agents.discard(agent)

    def mentioned(self, message: Message) -> set[str]:
        """The agents in the message's room that it names (``@id`` or display name),
        its author never; none when the message echoes a prompt."""
        room = self.rooms.get(message.room)
        if room is None or is_echo(message.text, self._names | {message.author}):
            return set()
        return {
            agent
            for agent in room.agents
            if agent != message.author and self._patterns[agent].search(message.text)
        }

    def observe(self, message: Message) -> None:
        """A message arrived in a room one of the agents is in."""
        room = self.rooms.get(message.room)
        if room is None or any(m.id == message.id for m in room.recent):
            return
        room.recent.append(message)
        room.last_activity = self.clock()
        ticket = self._ticket_id(message)
        if ticket is not None:
            self.tickets.setdefault(ticket, _Ticket(ticket, message))
            return  # a ticket is queued work, answered in its turn: never a mention
        for agent in sorted(self.mentioned(message)):
            self._mentions.append((agent, message, 1))

    def withhold(self, room_name: str, message_id: int) -> None:
        """A moderator took a message back out of its room: no turn answers or sees it."""
        room = self.rooms.get(room_name)
        if room is None:
            return
        room.recent = deque((m for m in room.recent if m.id != message_id), room.recent.maxlen)
        self._mentions = deque(m for m in self._mentions if m[1].id != message_id)

    def restore(self, message: Message) -> None:
        """A moderator released a withheld message: seen again in its place (its
        mentions are not asked again: their moment has passed)."""
        room = self.rooms.get(message.room)
        if room is None or any(m.id == message.id for m in room.recent):
            return
        ordered = sorted([*room.recent, message], key=lambda m: m.id)
        room.recent = deque(ordered[-(room.recent.maxlen or len(ordered)) :], room.recent.maxlen)

    @staticmethod
    def _ticket_id(message: Message) -> int | None:
        """The ticket a human's message in the external arena announces, if any."""
        if message.room != EXTERNAL or message.author_role == "agent":
            return None
        match = TICKET_ANNOUNCEMENT.match(message.text)
        return int(match[1]) if match else None

    def sync_tickets(self, tickets: Iterable[TicketInfo], answered: Iterable[int] = ()) -> None:
        """What the hub lists: an open ticket without an answer is queued (its
        announcement rebuilt when it was not seen); one with an answer, closed, or in
        ``answered`` (an answer waits for review) is done."""
        pending = set(answered)
        for info in tickets:
            known = self.tickets.get(info.id)
            if (
                info.answer_proposal_id is not None
                or info.status != TicketStatus.OPEN
                or info.id in pending
            ):
                if known is not None:
                    known.answered = True
                continue
            if known is None:
                announcement = Message(
                    id=0,
                    room=EXTERNAL,
                    author=info.filed_by,
                    author_role="moderator",
                    text=ticket_announcement(info.id, info.title, info.body),
                    created_at=info.created_at,
                )
                self.tickets[info.id] = _Ticket(info.id, announcement)

    def ticket_done(self, ticket: int) -> None:
        """``ticket`` has a ``ticket_answer`` proposal, or was escalated to a human: it
        needs no more turns."""
        known = self.tickets.get(ticket)
        if known is not None:
            known.answered = True

    def open_tickets(self) -> list[int]:
        """The tickets still waiting for an answer, oldest first (those out of
        attempts included: they wait for a human)."""
        return sorted(t.id for t in self.tickets.values() if not t.answered)

    def set_paused(self, room: str, paused: bool) -> None:
        if room in self.rooms:
            self.rooms[room].paused = paused
            self.rooms[room].last_activity = self.clock()

    def mute(self, agent: str, seconds: float) -> None:
        self.muted_until[agent] = self.clock() + seconds

    def unmute(self, agent: str) -> None:
        self.muted_until.pop(agent, None)

    def is_muted(self, agent: str) -> bool:
        return self.muted_until.get(agent, float("-inf")) > self.clock()

    def history(self, room: str) -> list[Message]:
        return list(self.rooms[room].recent) if room in self.rooms else []

    # turns ----------------------------------------------------------------------

    def next_turn(self) -> Turn | None:
        """The next turn to run, or None when nobody should speak now."""
        return (
            self._next_ticket()
            or self._next_mention()
            or self._next_reply()
            or self._next_initiative()
        )

    def finish(self, turn: Turn, *, spoke: bool) -> None:
        """The turn ended; a turn that did not speak still counted against the budgets,
        and a mention left unanswered is tried again (up to :data:`MENTION_ATTEMPTS`);
        a ticket without an answer yet goes back to the queue."""
        self.busy.discard(turn.agent)
        ticket = self.tickets.get(turn.ticket) if turn.ticket is not None else None
        if ticket is not None and ticket.taken_by == turn.agent:
            ticket.taken_by = None
        if spoke and turn.room in self.rooms:
            self.rooms[turn.room].last_activity = self.clock()
        if not spoke and turn.kind == "mention" and turn.attempt < MENTION_ATTEMPTS:
            assert turn.trigger is not None
            self._mentions.appendleft((turn.agent, turn.trigger, turn.attempt + 1))

    def _available(self, agent: str, room: _Room) -> bool:
        persona = self.personas[agent]
        return (
            agent not in self.busy
            and not self.is_muted(agent)
            and not room.paused
            and self.clock() - self.last_turn[agent] >= persona.limits.cooldown_seconds
        )

    def _take(
        self,
        agent: str,
        room: _Room,
        kind: TurnKind,
        trigger: Message | None,
        attempt: int = 1,
        ticket: int | None = None,
    ) -> Turn | None:
        """Spend the budgets for a turn; None (and nothing spent) when one is empty.
        A ticket turn spends only the agent's own: the arena's is for chat."""
        arena_limit = None if ticket is not None else self._arena_limit.get(room.arena or "")
        agent_limit = self._agent_limit[agent]
        if arena_limit is not None and arena_limit.peek(room.arena or "") > 0:
            return None
        if agent_limit.peek(0) > 0:
            return None
        if arena_limit is not None:
            arena_limit.take(room.arena or "")
        agent_limit.take(0)
        self.busy.add(agent)
        self.last_turn[agent] = self.clock()
        if trigger is not None and ticket is None:
            room.answered_id = max(room.answered_id, trigger.id)
        room.last_activity = room.last_served = self.clock()
        return Turn(agent, room.name, kind, trigger, attempt, ticket)

    def _next_ticket(self) -> Turn | None:
        """The oldest open ticket nobody is answering, for a free agent in external."""
        room = self.rooms.get(EXTERNAL)
        if room is None:
            return None
        for ticket in sorted(self.tickets.values(), key=lambda t: t.id):
            if ticket.answered or ticket.taken_by is not None:
                continue
            if ticket.attempts >= TICKET_ATTEMPTS:
                continue  # out of turns: it waits for a human
            for agent in self._least_recent(room, exclude=None):
                turn = self._take(
                    agent, room, "ticket", ticket.trigger, ticket.attempts + 1, ticket.id
                )
                if turn is not None:
                    ticket.attempts += 1
                    ticket.taken_by = agent
                    return turn
            return None  # no agent free for the oldest: the younger ones wait too
        return None

    def _next_mention(self) -> Turn | None:
        for _ in range(len(self._mentions)):
            agent, message, attempt = self._mentions.popleft()
            room = self.rooms.get(message.room)
            if room is None or agent not in room.agents or self.is_muted(agent):
                continue  # dropped: the agent cannot answer there
            if self._available(agent, room):
                turn = self._take(agent, room, "mention", message, attempt)
                if turn is not None:
                    return turn
            self._mentions.append((agent, message, attempt))  # wait for budget or cooldown
        return None

    def _least_recent(self, room: _Room, exclude: str | None) -> list[str]:
        candidates = [a for a in room.agents if a != exclude and self._available(a, room)]
        return sorted(candidates, key=lambda a: self.last_turn[a])

    def _by_turn_given(self) -> list[_Room]:
        """The rooms, the one given a turn longest ago first: when the LLM is the
        bottleneck, each arena gets its turn instead of the first one listed."""
        return sorted(self.rooms.values(), key=lambda room: room.last_served)

    def _next_reply(self) -> Turn | None:
        for room in self._by_turn_given():
            if not room.recent or room.recent[-1].id <= room.answered_id:
                continue
            last = room.recent[-1]
            if self._ticket_id(last) is not None:
                continue  # queued work: answered by a ticket turn, not a reply
            for agent in self._least_recent(room, exclude=last.author):
                turn = self._take(agent, room, "reply", last)
                if turn is not None:
                    return turn
        return None

    def _next_initiative(self) -> Turn | None:
        now = self.clock()
        for room in self._by_turn_given():
            if room.arena is None or now - room.last_activity < self.quiet_seconds:
                continue
            last_author = room.recent[-1].author if room.recent else None
            # someone else first; the last speaker only when it is alone in the room
            candidates = self._least_recent(room, exclude=last_author) or self._least_recent(
                room, exclude=None
            )
            for agent in candidates:
                turn = self._take(agent, room, "initiative", None)
                if turn is not None:
                    return turn
        return None
