"""What every handler group reaches: settings, store, transport, and the shared checks.

:class:`HubContext` is handed to each event handler. It pushes models to Socket.IO
rooms, enters and leaves rooms for a session, and holds the checks several events make
(the room exists, the principal exists, the session may read the room, an agent still
ranks high enough for the external arena). The reading checks apply the rules of
:mod:`botarena.server.auth` for every resource an event touches: a room
(:meth:`HubContext.readable`), a proposal with its attachments
(:meth:`HubContext.readable_proposal`), a canon document
(:meth:`HubContext.readable_canon`). Checks raise the error tree's classes; the gate
turns them into acknowledgements.
"""

from __future__ import annotations

import asyncio
from typing import Any

import socketio
import structlog

from botarena.arenas.names import EXTERNAL, RoomKind, room_kind
from botarena.server import auth
from botarena.server.auth import Principal
from botarena.server.errors import Forbidden, NotFound, UnknownRoom
from botarena.server.hub.batching import RoomPoster
from botarena.server.hub.sessions import Session, personal_room
from botarena.server.metrics import HubMetrics
from botarena.server.objects import ObjectStore, open_objects
from botarena.server.protocol import (
    SUPERVISORS_ROOM,
    AgentState,
    AgentStateKind,
    ModerationNotice,
    ProposalInfo,
    Push,
    Role,
    TicketChanged,
)
from botarena.server.reputation import refusal
from botarena.server.screening import Screen, screen
from botarena.server.settings import HubSettings
from botarena.server.store import Room, Store
from botarena.server.store.canon import CanonEntry
from botarena.server.store.database import UNAVAILABLE  # the store's rule; the gate's too
from botarena.server.store.messages import Draft, Posted

log = structlog.get_logger(__name__)

PRIVATE_ROOMS = (RoomKind.DM, RoomKind.GROUP)
"""Rooms whose existence is told to their members and supervisors only."""


class HubContext:
    """The parts of one hub process that its event handlers use."""

    def __init__(
        self, settings: HubSettings, store: Store, metrics: HubMetrics, sio: socketio.AsyncServer
    ) -> None:
        self.settings = settings
        self.store = store
        self.metrics = metrics
        self.sio = sio
        self.poster = RoomPoster(store, self._announce)
        self.screen: Screen | None = (
            screen(settings.screening_cache) if settings.screening else None
        )
        self._objects: ObjectStore | None = None

    # the transport ------------------------------------------------------------------

    async def push(self, push: Push, to: str | list[str]) -> None:
        """Send ``push`` to a Socket.IO room (or to several, each connection once)."""
        await self.sio.emit(push.event, push.model_dump(mode="json"), to=to)

    async def ticket_changed(self, ticket_id: int) -> None:
        """Tell moderators how a ticket stands now (``ticket.changed``)."""
        for found in await self.store.tickets.find(limit=1, ticket_id=ticket_id):
            await self.push(TicketChanged.model_validate(found), SUPERVISORS_ROOM)

    async def notify(self, principal: Principal, push: Push) -> None:
        """Send ``push`` to every connection of ``principal``, on every hub."""
        await self.push(push, personal_room(principal.id))

    async def post(self, room: str, author: Principal, text: str, **options: Any) -> Posted:
        """Store a message and broadcast it once committed, in a batch with the other
        sends waiting on the room (:class:`~botarena.server.hub.batching.RoomPoster`),
        so that this hub broadcasts a room in id order; one the store reports announced
        already (a resend, a recovered write that later messages lead to) is not pushed
        again. ``options``: :class:`~botarena.server.store.messages.Draft`'s."""
        return await self.poster.post(room, Draft(author, text, **options))

    async def _announce(self, room: str, posted: Posted) -> None:
        if posted.recovered or not posted.duplicate:  # stored by this post or a lost one
            self.metrics.messages_stored.inc()
        if posted.announce:
            await self.push(posted.message, room)

    async def enter(self, session: Session, room: str, may_post: bool) -> None:
        await self.sio.enter_room(session.sid, room)
        session.joined[room] = may_post

    async def leave(self, session: Session, room: str) -> bool:
        """Take the session out of ``room``; False when it was not in it."""
        if session.joined.pop(room, None) is None:
            return False
        await self.sio.leave_room(session.sid, room)
        return True

    # shared checks ------------------------------------------------------------------

    async def room(self, name: str, who: Principal | None = None) -> Room:
        """The room ``name``. To ``who``, unless a supervisor, a direct message or group
        that does not exist is one it is not admitted to: whether others talk must not
        show in the answer."""
        kind = room_kind(name)
        room = await self.store.rooms.get(name) if kind else None
        if room is None:
            if who is not None and kind in PRIVATE_ROOMS and not who.supervises:
                raise Forbidden(f"{who.name} is not admitted to {name[:80]}")
            raise UnknownRoom(f"no room named {name[:80]!r}")
        return room

    async def principal(self, name: str) -> Principal:
        principal = await self.store.principals.get(name)
        if principal is None:
            raise NotFound(f"no principal named {name!r}")
        return principal

    async def proposal(self, proposal_id: int) -> ProposalInfo:
        proposal = await self.store.proposals.get(proposal_id)
        if proposal is None:
            raise NotFound(f"no proposal {proposal_id}")
        return proposal

    async def readable(self, session: Session, name: str) -> tuple[Room, bool]:
        """The room, and whether the session may post in it; refuses unreadable rooms
        (:func:`auth.may_read`, and for external :func:`auth.may_enter_external`)."""
        who = session.principal
        room = await self.room(name, who)
        member = await self.store.rooms.is_member(room.name, who.id)
        if not auth.may_read(who, member):
            raise Forbidden(f"{who.name} is not admitted to {name[:80]}")
        await self.reputation_gate(who, room.name)
        return room, auth.may_post(who, room.kind, member)

    async def arena_readable(self, session: Session, arena: str) -> bool:
        """Whether the session may read ``arena``'s messages, and so its work."""
        try:
            await self.readable(session, arena)
        except (Forbidden, UnknownRoom):
            return False
        return True

    async def readable_proposal(self, session: Session, proposal_id: int) -> ProposalInfo:
        """A proposal the session may read (:func:`auth.may_read_arena_work`); the
        refusal does not tell which arena it is in."""
        proposal = await self.proposal(proposal_id)
        who = session.principal
        if not auth.may_read_arena_work(who, await self.arena_readable(session, proposal.arena)):
            raise Forbidden(f"proposal {proposal_id} is in an arena {who.name} may not read")
        return proposal

    async def readable_canon(
        self, session: Session, path: str, version: int | None = None
    ) -> CanonEntry:
        """A canon document's newest version (or ``version``) that the session may read:
        one of an arena it may read (:func:`auth.may_read_arena_work`)."""
        entry = await self.store.canon.entry(path, version)
        if entry is None:
            shown = f" version {version}" if version else ""
            raise NotFound(f"no canon document {path}{shown}")
        who = session.principal
        if not auth.may_read_arena_work(who, await self.arena_readable(session, entry.arena)):
            raise Forbidden(f"{path} is in an arena {who.name} may not read")
        return entry

    async def reputation_gate(self, who: Principal, room: str) -> None:
        """Agents enter the external arena only while their reputation ranks high enough
        (:func:`auth.may_enter_external`)."""
        if room != EXTERNAL or who.role is not Role.AGENT:
            return  # only agents are ranked
        refusal = await self.store.reputation.external_refusal(
            who.name, self.settings.external_top_fraction, self.settings.external_min_seats
        )
        if not auth.may_enter_external(who, ranked=refusal is None):
            raise Forbidden(str(refusal))

    async def still_admitted(self, session: Session, room: str) -> None:
        """The gate for a session acting in a room: one that has fallen out of external
        is taken out of the room too, so it stops receiving it."""
        try:
            await self.reputation_gate(session.principal, room)
        except Forbidden:
            await self.leave(session, room)
            raise

    async def unseat(self, sessions: list[Session]) -> int:
        """Take the agent sessions in external whose agent lost its seat out of the room,
        telling each with a ``moderation`` kick; how many were taken out."""
        seated = [s for s in sessions if EXTERNAL in s.joined and s.principal.role is Role.AGENT]
        if not seated:
            return 0
        fraction, min_seats = self.settings.external_top_fraction, self.settings.external_min_seats
        board = await self.store.reputation.standings(fraction, min_seats)
        unseated = 0
        for session in seated:
            why = refusal(board, session.principal.name, fraction, min_seats)
            if why is not None and await self.leave(session, EXTERNAL):
                notice = ModerationNotice(action="kick", by="hub", room=EXTERNAL, reason=why)
                await self.sio.emit(notice.event, notice.model_dump(mode="json"), to=session.sid)
                unseated += 1
        return unseated

    # shared services ----------------------------------------------------------------

    async def objects(self) -> ObjectStore:
        """The object store that holds artifacts' bytes, opened on first use."""
        if self._objects is None:
            self._objects = await asyncio.to_thread(open_objects, self.settings)
        return self._objects

    async def publish_agent_state(
        self,
        agent: Principal,
        state: AgentStateKind,
        detail: str = "",
        drift: dict[str, float] | None = None,
        **extra: Any,
    ) -> AgentState | None:
        """Store and push an agent's state; ``extra``: summary, llm_seconds, backend,
        memory. None when the database is away (the state is not worth failing for)."""
        try:
            stored = await self.store.agents.report(
                agent, state.value, detail, drift or {}, **extra
            )
        except UNAVAILABLE as exc:
            log.warning("hub.agent_state_not_stored", agent=agent.name, error=str(exc))
            return None
        await self.push(stored, SUPERVISORS_ROOM)
        return stored
