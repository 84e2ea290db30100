"""The console's link to the hub: one Socket.IO connection that keeps a
:class:`ConsoleState` current and carries out the moderator's actions.

It connects with the moderator's token (retrying while the hub is away), joins every
room the principal may read, loads agents, reputation, proposals and tickets, and then
follows the hub's pushes. A dropped connection is reported at once; python-socketio
reconnects, :class:`HubClient` re-joins each room from the last message seen (so missed
messages arrive) and the lists are loaded again. ``/healthz`` is polled for the
dependencies' state. Every change calls ``on_change`` with what changed (``rooms``,
``agents``, ``proposals``, ``tickets``, ``health``, ``connection``); actions raise
:class:`HubError` with the hub's message when refused.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import aiohttp

from botarena.arenas.names import ProposalKind, ProposalStatus
from botarena.server.client import HubClient
from botarena.server.errors import HubError
from botarena.server.patching import apply_unified_diff
from botarena.server.protocol import Message
from botarena.tui.state import ConsoleState

HEALTH_SECONDS = 5.0


class HubLink:
    def __init__(
        self, url: str, token: str, state: ConsoleState, on_change: Callable[[str], None]
    ) -> None:
        self.url = url.rstrip("/")
        self.state = state
        self.state.url = self.url
        self.on_change = on_change
        self.client = HubClient(
            self.url, token, on_message=self._on_message, on_connection=self._on_connection
        )
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        self._connects = 0
        for event, handler in {
            "agent.state": self._on_agent_state,
            "proposal.new": self._on_proposal,
            "proposal.reviewed": self._on_proposal,
            "room.state": self._on_room_state,
            "room.invited": self._on_room_invited,
        }.items():
            self.client.sio.on(event, handler)

    # life cycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Connect (retrying until the hub answers or the token is refused), then load."""
        delay = 0.5
        while not self._stopping.is_set():
            try:
                await self.client.connect()
                break
            except HubError as exc:
                self.state.status = f"cannot connect: {exc.message}"
                self.on_change("connection")
                if exc.code == "unauthorized":
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        self._spawn(self._poll_health())
        try:
            await self.load()
        except HubError:
            if self.client.connected:
                raise
            # the hub went away while loading: the reconnect loads again

    async def stop(self) -> None:
        self._stopping.set()
        for task in list(self._tasks):
            task.cancel()
        await self.client.close()

    async def load(self) -> None:
        """Who we are, every readable room (joined), and the lists."""
        me = await self.client.call("whoami")
        self.state.me, self.state.role = me["name"], me["role"]
        rooms = (await self.client.call("rooms"))["rooms"]
        for info in rooms:
            self.state.set_room(info)
            if info["name"] not in self.client.last_seen:
                joined = await self.client.join(info["name"])
                self.state.set_room(joined.room.model_dump(mode="json"))
        self.on_change("rooms")
        await self.refresh()
        self.state.loaded = True
        self.on_change("connection")

    async def refresh(self) -> None:
        """Agents, reputation, proposals and tickets, read again."""
        if self.state.role in ("moderator", "admin"):
            for agent in (await self.client.call("agents"))["agents"]:
                self.state.set_agent(agent)
            for proposal in (await self.client.call("proposals", {"limit": 500}))["proposals"]:
                self.state.set_proposal(proposal)
            for ticket in (await self.client.call("tickets", {"limit": 500}))["tickets"]:
                self.state.set_ticket(ticket)
        standings = (await self.client.call("reputation"))["agents"]
        self.state.standings = {s["agent"]: s for s in standings}
        for what in ("agents", "proposals", "tickets"):
            self.on_change(what)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

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
                self.on_change("health")
                await asyncio.sleep(HEALTH_SECONDS)

    # pushes -------------------------------------------------------------------------

    def _on_connection(self, connected: bool) -> None:
        self.state.connected = connected
        self.state.status = "connected" if connected else "disconnected, reconnecting…"
        self.on_change("connection")
        if connected:
            self._connects += 1
            if self._connects > 1:
                self._spawn(self._after_reconnect())

    async def _after_reconnect(self) -> None:
        await self.client.reconnected.wait()  # rooms re-joined, missed messages delivered
        with contextlib.suppress(HubError):
            await self.load()  # rooms not joined yet, and the lists

    def _on_message(self, message: Message) -> None:
        self.state.add_message(message)
        self.on_change("rooms")

    def _on_agent_state(self, state: dict) -> None:
        self.state.set_agent(state)
        self.on_change("agents")

    def _on_proposal(self, proposal: dict) -> None:
        self.state.set_proposal(proposal)
        self.on_change("proposals")
        if (
            proposal.get("kind") == ProposalKind.TICKET_ANSWER
            and proposal.get("status") != ProposalStatus.PENDING
        ):
            self._spawn(self._reload_tickets())

    async def _reload_tickets(self) -> None:
        with contextlib.suppress(HubError):
            for ticket in (await self.client.call("tickets", {"limit": 500}))["tickets"]:
                self.state.set_ticket(ticket)
            self.on_change("tickets")

    def _on_room_state(self, data: dict) -> None:
        self.state.room(data["room"]).paused = bool(data["paused"])
        self.on_change("rooms")

    async def _on_room_invited(self, info: dict) -> None:
        self.state.set_room(info)
        with contextlib.suppress(HubError):
            await self.client.join(info["name"])
        self.on_change("rooms")

    # actions ------------------------------------------------------------------------

    async def post(self, room: str, text: str) -> None:
        await self.client.send(room, text)

    async def review(
        self, proposal_id: int, decision: str, *, reason: str = "", content: str | None = None
    ) -> dict:
        payload: dict[str, Any] = {"id": proposal_id, "decision": decision, "reason": reason}
        if content is not None:
            payload["content"] = content
        reviewed = await self.client.call("proposal.review", payload)
        self._on_proposal(reviewed)
        return reviewed

    async def proposal(self, proposal_id: int) -> dict:
        """A proposal with its diff against the canon and whether it is stale."""
        detail = await self.client.call("proposal.get", {"id": proposal_id})
        self.state.set_proposal(detail)
        return detail

    async def editable(self, proposal_id: int) -> tuple[str, str]:
        """A proposal's path and the text a moderator edits: its content, or for a patch
        the canon with the patch applied (:class:`ValueError` when it does not apply)."""
        detail = await self.proposal(proposal_id)
        text = detail["content"]
        if detail["kind"] == ProposalKind.PATCH:  # edit the result, not the diff
            base = await self.client.call("canon.get", {"path": detail["path"]})
            text = apply_unified_diff(base["content"], detail["content"])
        return detail["path"], text

    async def mute(self, agent: str, seconds: int, reason: str) -> None:
        await self.client.call(
            "mod.mute", {"principal": agent, "seconds": seconds, "reason": reason}
        )

    async def unmute(self, agent: str) -> None:
        await self.client.call("mod.unmute", {"principal": agent})

    async def pause(self, room: str, reason: str) -> None:
        await self.client.call("mod.pause", {"room": room, "reason": reason})

    async def resume(self, room: str) -> None:
        await self.client.call("mod.resume", {"room": room})

    async def file_ticket(self, title: str, body: str) -> dict:
        filed = await self.client.call("ticket.file", {"title": title, "body": body})
        await self._reload_tickets()
        return filed
