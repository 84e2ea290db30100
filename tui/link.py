"""The console's link to the hub: one Socket.IO connection that keeps a
:class:`ConsoleState` current and carries out the moderator's actions.

It connects with the moderator's token (:meth:`HubClient.connect_with_backoff` while the
hub is away), joins every room the principal may read, loads
agents, reputation, proposals and tickets, and then follows the hub's pushes, each
subscribed to as its protocol model (:meth:`HubClient.on`). A dropped connection is
reported at once; python-socketio reconnects, :class:`HubClient` re-joins each room from
the last message seen (so missed messages arrive) and the lists are loaded again. A token
the hub refuses, at the start or on a reconnect (revoked, or a hub restarted with other
tokens), ends the link and calls ``on_refused`` with the hub's reason: no endless
reconnecting.
``/healthz`` is polled for the dependencies' state. Every change calls ``on_change`` with
what changed (``rooms``, ``agents``, ``proposals``, ``tickets``, ``queue``, ``health``,
``connection``, and ``alerts`` when a push is to be told at once: a ticket waiting too
long or escalated to the humans). Tickets follow ``ticket.changed``; reputation and the
external seats are read again after each review and reaction. Actions raise
the refusal's :class:`HubError` subclass (``Forbidden``, ``Conflict``...) with the hub's
message.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any, Literal

import aiohttp

from botarena.arenas.names import ProposalKind, ProposalStatus
from botarena.server.client import HubClient
from botarena.server.errors import HubError, Unauthorized
from botarena.server.patching import apply_unified_diff
from botarena.server.protocol import (
    AgentState,
    AgentStateKind,
    CanonReverted,
    Message,
    MessageWithheld,
    ProposalDetail,
    ProposalInfo,
    ProposalNew,
    ProposalReviewed,
    QueueItem,
    Reaction,
    ReviewDecision,
    Role,
    RoomInvited,
    RoomState,
    TicketChanged,
    TicketEscalation,
    TicketFiled,
    TicketWaiting,
)
from botarena.tui.state import ConsoleState

HEALTH_SECONDS = 5.0
FIRST_RETRY_SECONDS = 0.5
MAX_RETRY_SECONDS = 5.0
"""Waits between connects while the hub is away: doubling from the first to the last."""
STANDINGS_DELAY = 0.2
"""Seconds a review or reaction waits before the standings are read again (a burst of
them is one read)."""
REFUSAL_CHECK_SECONDS = 0.5
"""How often a dropped link looks whether the hub refuses its token now."""


QueueDecisionKind = Literal["release", "drop", "clear"]
"""What a moderator does with a queue item: release or drop a held message, clear a
flagged one."""


class HubLink:
    def __init__(
        self,
        url: str,
        token: str,
        state: ConsoleState,
        on_change: Callable[[str], None],
        on_refused: Callable[[str], None] | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.state = state
        self.state.url = self.url
        self.on_change = on_change
        self.on_refused = on_refused
        self.client = HubClient(self.url, token, on_connection=self._on_connection)
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        self._connects = 0
        self.client.on(Message, self._on_message)
        self.client.on(AgentState, self._on_agent_state)
        self.client.on(ProposalNew, self._on_proposal)
        self.client.on(ProposalReviewed, self._on_proposal)
        self.client.on(RoomState, self._on_room_state)
        self.client.on(RoomInvited, self._on_room_invited)
        self.client.on(TicketWaiting, self._on_ticket_waiting)
        self.client.on(TicketEscalation, self._on_ticket_escalated)
        self.client.on(TicketChanged, self._on_ticket_changed)
        self.client.on(Reaction, self._on_reaction)
        self.client.on(QueueItem, self._on_queue_item)
        self.client.on(MessageWithheld, self._on_withheld)
        self._standings_due: asyncio.Task[None] | None = None
        self._refusals: asyncio.Task[None] | None = None  # while the link is down

    # life cycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Connect (retrying until the hub answers; :class:`Unauthorized` is raised for a
        refused token ends the link), then load."""
        try:
            connected = await self._connect()
        except Unauthorized as exc:
            await self._refused(exc)
            return
        if not connected:
            return  # stopped before the hub answered
        self._spawn(self._poll_health())
        try:
            await self.load()
        except HubError:
            if self.client.connected:
                raise
            # the hub went away while loading: the reconnect loads again

    async def _connect(self) -> bool:
        return await self.client.connect_with_backoff(
            first_delay=FIRST_RETRY_SECONDS,
            max_delay=MAX_RETRY_SECONDS,
            stop=self._stopping,
            on_failure=self._connect_failed,
        )

    def _connect_failed(self, exc: HubError, _retry_in: float | None) -> None:
        self.state.status = f"cannot connect: {exc.message}"
        self.on_change("connection")

    async def _follow_refusals(self) -> None:
        """While the link is down (started by the drop, ended by the reconnect), see
        whether the hub refuses the token now: python-socketio would retry a refused token
        forever, and does not reconnect at all after the hub dropped the session (a revoked
        token), so this connects again itself then."""
        while not self._stopping.is_set() and not self.client.connected:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), REFUSAL_CHECK_SECONDS)
            if self.client.connected or self._stopping.is_set():
                return
            try:
                if isinstance(self.client.refusal, Unauthorized):
                    raise self.client.refusal
                if self.client.closed_by_hub:
                    await self._connect()
            except Unauthorized as exc:
                await self._refused(exc)
                return

    async def _refused(self, exc: HubError) -> None:
        await self.client.close()  # python-socketio's reconnecting ends here
        self.state.connected = False
        self.state.status = f"token refused: {exc.message}"
        self.on_change("connection")
        if self.on_refused is not None:
            self.on_refused(exc.message)

    async def stop(self) -> None:
        self._stopping.set()
        for task in list(self._tasks):
            task.cancel()
        await self.client.close()

    async def load(self) -> None:
        """Who we are, every readable room (joined), and the lists."""
        me = await self.client.whoami()
        self.state.me, self.state.role = me.name, me.role
        for info in (await self.client.rooms()).rooms:
            self.state.set_room(info)
            if info.name not in self.client.last_seen:
                joined = await self.client.join(info.name)
                self.state.set_room(joined.room)
        self.on_change("rooms")
        await self.refresh()
        self.state.loaded = True
        self.on_change("connection")

    async def refresh(self) -> None:
        """Agents, reputation, proposals and tickets, read again."""
        if self.state.role in (Role.MODERATOR, Role.ADMIN):
            for agent in (await self.client.agent_states()).agents:
                self.state.set_agent(agent)
            for proposal in (await self.client.proposals(limit=500)).proposals:
                self.state.set_proposal(proposal)
            for ticket in (await self.client.tickets(limit=500)).tickets:
                self.state.set_ticket(ticket)
            self.state.queue.clear()  # what was decided while the link was down is gone
            for item in await self.client.queue(limit=500):
                self.state.set_queue_item(item)
        self.state.set_standings(await self.client.reputation())
        for what in ("agents", "proposals", "tickets", "queue"):
            self.on_change(what)

    def _spawn(self, coro: Any) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _poll_health(self) -> None:
        async with aiohttp.ClientSession() as http:
            while not self._stopping.is_set():
                try:
                    async with http.get(
                        f"{self.url}/healthz", timeout=aiohttp.ClientTimeout(total=3)
                    ) as answer:
                        self.state.health = await answer.json()
                except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                    self.state.health = {"status": "unreachable", "error": str(exc)[:200]}
                self.state.health_at = self.state.clock()
                self.on_change("health")
                await asyncio.sleep(HEALTH_SECONDS)

    # pushes -------------------------------------------------------------------------

    def _on_connection(self, connected: bool) -> None:
        if connected != self.state.connected or self.state.link_since is None:
            self.state.link_since = self.state.clock()
        self.state.connected = connected
        self.state.status = "connected" if connected else "disconnected, reconnecting…"
        self.on_change("connection")
        if connected:
            self._connects += 1
            if self._connects > 1:
                self._spawn(self._after_reconnect())
        elif self._refusals is None or self._refusals.done():
            self._refusals = self._spawn(self._follow_refusals())

    async def _after_reconnect(self) -> None:
        await self.client.reconnected.wait()  # rooms re-joined, missed messages delivered
        with contextlib.suppress(HubError):
            await self.load()  # rooms not joined yet, and the lists

    def _on_message(self, message: Message) -> None:
        self.state.add_message(message)
        self.on_change("rooms")

    def _on_withheld(self, push: MessageWithheld) -> None:
        self.state.withhold(push)
        self.on_change("rooms")

    def _on_agent_state(self, state: AgentState) -> None:
        self.state.set_agent(state)
        self.on_change("agents")
        if state.state is AgentStateKind.DRIFTED:
            self.on_change("alerts")

    def _on_proposal(self, proposal: ProposalInfo) -> None:
        self.state.set_proposal(proposal)
        self.on_change("proposals")
        if proposal.status != ProposalStatus.PENDING:
            self._standings_changed()  # a review moves reputation, and the seats with it

    def _on_reaction(self, _reaction: Reaction) -> None:
        self._standings_changed()

    def _standings_changed(self) -> None:
        """Read the standings again: once for a burst of reviews and reactions."""
        if self._standings_due is None or self._standings_due.done():
            self._standings_due = self._spawn(self._reload_standings())

    async def _reload_standings(self) -> None:
        await asyncio.sleep(STANDINGS_DELAY)
        with contextlib.suppress(HubError):
            self.state.set_standings(await self.client.reputation())
            self.on_change("agents")

    def _on_ticket_changed(self, ticket: TicketChanged) -> None:
        self.state.set_ticket(ticket)
        self.on_change("tickets")

    def _on_queue_item(self, item: QueueItem) -> None:
        self.state.set_queue_item(item)
        self.on_change("queue")

    def _on_ticket_waiting(self, push: TicketWaiting) -> None:
        self.state.ticket_waiting(push)
        self.on_change("alerts")
        self.on_change("tickets")

    def _on_ticket_escalated(self, push: TicketEscalation) -> None:
        self.state.ticket_escalated(push)
        self.on_change("alerts")
        self.on_change("tickets")

    def _on_room_state(self, push: RoomState) -> None:
        self.state.room(push.room).paused = push.paused
        self.on_change("rooms")

    async def _on_room_invited(self, info: RoomInvited) -> None:
        self.state.set_room(info)
        with contextlib.suppress(HubError):
            await self.client.join(info.name)
        self.on_change("rooms")

    # actions ------------------------------------------------------------------------

    async def post(self, room: str, text: str) -> None:
        await self.client.send(room, text)

    async def review(
        self,
        proposal_id: int,
        decision: ReviewDecision,
        *,
        reason: str = "",
        content: str | None = None,
    ) -> ProposalInfo:
        reviewed = await self.client.review(proposal_id, decision, reason=reason, content=content)
        self._on_proposal(reviewed)
        return reviewed

    async def revert(self, proposal_id: int, reason: str) -> CanonReverted:
        """Undo an approved proposal; its detail is read again (it shows the revert)."""
        reverted = await self.client.revert(proposal_id, reason)
        await self.proposal(proposal_id)
        self.on_change("proposals")
        return reverted

    async def proposal(self, proposal_id: int) -> ProposalDetail:
        """A proposal with its diff against the canon and whether it is stale."""
        detail = await self.client.proposal(proposal_id)
        self.state.set_proposal(detail)
        return detail

    async def editable(self, proposal_id: int) -> tuple[str, str]:
        """A proposal's path and the text a moderator edits: its content, or for a patch
        the canon with the patch applied (:class:`~botarena.server.errors.PatchError` when it
        does not apply)."""
        detail = await self.proposal(proposal_id)
        text = detail.content
        if detail.kind == ProposalKind.PATCH:  # edit the result, not the diff
            base = await self.client.canon(detail.path)
            text = apply_unified_diff(base.content, detail.content)
        return detail.path, text

    async def mute(self, agent: str, seconds: int, reason: str) -> None:
        await self.client.mute(agent, seconds, reason)

    async def unmute(self, agent: str) -> None:
        await self.client.unmute(agent)

    async def pause(self, room: str, reason: str) -> None:
        await self.client.pause(room, reason)

    async def resume(self, room: str) -> None:
        await self.client.resume(room)

    async def decide(self, item: int, decision: QueueDecisionKind, reason: str) -> QueueItem:
        """Release or drop a held message, or clear a flagged one."""
        act = {"release": self.client.release, "drop": self.client.drop, "clear": self.client.clear}
        decided = await act[decision](item, reason)
        self._on_queue_item(decided)
        return decided

    async def file_ticket(self, title: str, body: str) -> TicketFiled:
        return await self.client.file_ticket(title, body)  # listed by its ticket.changed
