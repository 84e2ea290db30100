"""What the console knows: the hub link feeds it, and each pane draws its part of it.

Rooms with their recent messages and unread counts, agents with their last reported
state and their reputation, proposals, tickets, the hub's health and the samples behind
the sparklines (messages per interval, LLM seconds per turn), and what the hub told of
tickets that need a human: those announced overdue (``ticket.waiting``; the hub keeps no
field for it, so only the console remembers) and who escalated which ticket and why
(``ticket.escalated``), with the :class:`Alert` each push raised until the app shows it.
Agents, standings, proposals and tickets are held as the protocol's models (a proposal
read with its diff stays a :class:`~botarena.server.protocol.ProposalDetail` when it is
listed or pushed again); a room is a :class:`RoomView` set from a ``RoomInfo``; the
health is ``/healthz``'s JSON. Nothing here talks to the hub or draws anything, so the
views can be tested on a state built by hand and the link on a state read back.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from botarena.arenas.names import TicketStatus
from botarena.server.protocol import (
    AgentStanding,
    AgentState,
    AgentStateKind,
    Message,
    MessageWithheld,
    ProposalDetail,
    ProposalInfo,
    QueueItem,
    QueueState,
    RoomInfo,
    Standings,
    TicketEscalation,
    TicketInfo,
    TicketWaiting,
)

MAX_MESSAGES = 1000
RATE_BUCKET_SECONDS = 10.0
RATE_BUCKETS = 30


@dataclass
class RoomView:
    name: str
    kind: str = "arena"
    title: str = ""
    paused: bool = False
    may_post: bool = False
    messages: deque[Message] = field(default_factory=lambda: deque(maxlen=MAX_MESSAGES))
    unread: int = 0
    rewrites: int = 0  # how often messages changed other than at the end (drawn anew)


@dataclass(frozen=True)
class Alert:
    """Something the moderator must be told of at once (a notification): plain text."""

    title: str
    text: str


@dataclass
class ConsoleState:
    """Everything the console shows."""

    url: str = ""
    me: str = ""
    role: str = ""
    connected: bool = False
    loaded: bool = False  # rooms joined and lists read since the first connect
    status: str = "connecting"
    rooms: dict[str, RoomView] = field(default_factory=dict)
    current_room: str | None = None
    agents: dict[str, AgentState] = field(default_factory=dict)
    standings: dict[str, AgentStanding] = field(default_factory=dict)
    proposals: dict[int, ProposalInfo] = field(default_factory=dict)
    tickets: dict[int, TicketInfo] = field(default_factory=dict)
    overdue: set[int] = field(default_factory=set)  # tickets the hub told were waiting
    escalations: dict[int, TicketEscalation] = field(default_factory=dict)
    queue: dict[int, QueueItem] = field(default_factory=dict)  # the moderation queue
    alerts: deque[Alert] = field(default_factory=lambda: deque(maxlen=100))  # not shown yet
    health: dict[str, Any] = field(default_factory=dict)  # /healthz's JSON
    health_at: datetime | None = None  # when /healthz was last read
    link_since: datetime | None = None  # when the link last went up or down
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    message_times: deque[float] = field(default_factory=lambda: deque(maxlen=10_000))
    llm_seconds: deque[float] = field(default_factory=lambda: deque(maxlen=60))

    # rooms -------------------------------------------------------------------------

    def room(self, name: str) -> RoomView:
        if name not in self.rooms:
            self.rooms[name] = RoomView(name)
        return self.rooms[name]

    def set_room(self, info: RoomInfo) -> RoomView:
        view = self.room(info.name)
        view.kind = str(info.kind)
        view.title = info.title or ""
        view.paused = info.paused
        view.may_post = info.may_post
        if self.current_room is None:
            self.current_room = view.name
        return view

    def add_message(self, message: Message, *, live: bool = True) -> None:
        view = self.room(message.room)
        if view.messages and view.messages[-1].id >= message.id:
            if any(m.id == message.id for m in view.messages):
                return
        view.messages.append(message)
        if live:
            self.message_times.append(time.monotonic())
            if message.room != self.current_room:
                view.unread += 1

    def withhold(self, push: MessageWithheld) -> None:
        """A moderator held a posted message (it leaves the room's view) or released it
        (it shows again, in its place)."""
        view = self.room(push.room)
        kept = [m for m in view.messages if m.id != push.message_id]
        if push.message is not None and not push.withheld:
            kept = sorted([*kept, push.message], key=lambda m: m.id)
        view.messages = deque(kept[-MAX_MESSAGES:], maxlen=MAX_MESSAGES)
        view.rewrites += 1

    def open_room(self, name: str) -> None:
        self.current_room = name
        self.room(name).unread = 0

    def message_rate(self, now: float | None = None) -> list[float]:
        """Messages per :data:`RATE_BUCKET_SECONDS`, oldest bucket first."""
        now = time.monotonic() if now is None else now
        buckets = [0.0] * RATE_BUCKETS
        for seen in self.message_times:
            age = int((now - seen) // RATE_BUCKET_SECONDS)
            if 0 <= age < RATE_BUCKETS:
                buckets[RATE_BUCKETS - 1 - age] += 1
        return buckets

    def age(self, then: datetime | None) -> str:
        """How long ago ``then`` was, as a moderator reads it ("12 s", "3 min")."""
        return "never" if then is None else duration((self.clock() - then).total_seconds())

    def newest_report(self, part: str) -> AgentState | None:
        """The newest agent report that says something of ``part`` (``backend`` or
        ``memory``)."""
        reports = [a for a in self.agents.values() if getattr(a, part)]
        return max(reports, key=lambda a: a.updated_at, default=None)

    # agents, proposals, tickets ----------------------------------------------------------

    def set_agent(self, state: AgentState) -> None:
        before = self.agents.get(state.agent)
        if state.state is AgentStateKind.DRIFTED:  # told at once
            self.alerts.append(Alert(f"{state.agent} drifted", f"{state.agent}: {state.detail}"))
        seconds = state.llm_seconds
        if seconds is not None and (before is None or seconds != before.llm_seconds):
            self.llm_seconds.append(float(seconds))  # a new turn's time
        self.agents[state.agent] = state

    def set_standings(self, standings: Standings) -> None:
        self.standings = {s.agent: s for s in standings.agents}

    def set_proposal(self, proposal: ProposalInfo) -> None:
        """A proposal as listed, pushed or reviewed; what only its detail carries (the
        diff, the canon's version, staleness, attachments) is kept from an earlier read
        while its review stands where it stood (a merge changes what its diff is)."""
        kept = self.proposals.get(proposal.id)
        if (
            isinstance(kept, ProposalDetail)
            and not isinstance(proposal, ProposalDetail)
            and (kept.status, kept.merged_version) == (proposal.status, proposal.merged_version)
        ):
            proposal = kept.model_copy(update=dict(proposal))
        self.proposals[proposal.id] = proposal

    def set_ticket(self, ticket: TicketInfo) -> None:
        self.tickets[ticket.id] = ticket

    # the moderation queue --------------------------------------------------------------

    def set_queue_item(self, item: QueueItem) -> None:
        """A queue item as listed or pushed (queued, or decided: then it leaves)."""
        if item.state is QueueState.OPEN:
            self.queue[item.id] = item
        else:
            self.queue.pop(item.id, None)

    def waiting(self) -> list[QueueItem]:
        """The open queue items, oldest first (held ones first: they keep a message out)."""
        return sorted(self.queue.values(), key=lambda i: (i.kind != "held", i.id))

    def ticket_waiting(self, push: TicketWaiting, now: datetime | None = None) -> None:
        """The hub told that a ticket waits for an answer: it is marked, and told."""
        self.overdue.add(push.id)
        waited = ((now or datetime.now(UTC)) - push.filed_at).total_seconds()
        self.alerts.append(
            Alert(
                f"Ticket #{push.id} waiting",
                f"Ticket #{push.id} “{push.title}” has waited {duration(waited)} without an answer",
            )
        )

    def ticket_escalated(self, push: TicketEscalation) -> None:
        """The agents handed a ticket to the humans: it is escalated, and told."""
        self.escalations[push.id] = push
        ticket = self.tickets.get(push.id)
        if ticket is not None and ticket.status == TicketStatus.OPEN:
            self.tickets[push.id] = ticket.model_copy(update={"status": TicketStatus.ESCALATED})
        self.alerts.append(
            Alert(
                f"Ticket #{push.id} escalated",
                f"Ticket #{push.id} “{push.title}” escalated by {push.by}: {push.reason}",
            )
        )

    def is_overdue(self, ticket: TicketInfo) -> bool:
        """Announced overdue and still open (neither answered nor escalated since)."""
        return ticket.status == TicketStatus.OPEN and ticket.id in self.overdue

    def needing_a_human(self) -> int:
        """Tickets escalated to the humans, and open ones announced overdue."""
        return sum(
            1
            for t in self.tickets.values()
            if t.status == TicketStatus.ESCALATED or self.is_overdue(t)
        )


def duration(seconds: float) -> str:
    """``seconds`` as a moderator reads a wait: 40 s, 5 min, 3 h, 2 days."""
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 2 * 3600:
        return f"{seconds // 60} min"
    if seconds < 2 * 86400:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} days"
