"""The agent worker: one process running many agents, each its own hub client.

Each persona connects with its own agent token, joins the rooms of its arenas and
feeds what it sees to the shared :class:`TurnScheduler`. The worker loop takes turns
from the scheduler and runs them through CrewAI, at most ``slots`` at once (the LLM's
parallel capacity). Every turn's answer is an action held to a JSON schema
(:mod:`botarena.agents.actions`): a chat turn says something, agrees or disagrees (a
reaction) or passes; a drafting turn (:mod:`botarena.agents.drafting`) writes a title
and a body that the worker proposes and announces; a ticket turn answers from the
knowledge with its sources, or hands the ticket to a human when the knowledge has no
answer (:mod:`botarena.agents.tickets`). Nothing but an action's fields reaches a
room, and an echo of a prompt is never posted, proposed or remembered
(:mod:`botarena.agents.echoes`). The worker never dies from a failure: an LLM that is
down, slow or talks nonsense costs a skipped turn with a logged reason, a reported
``error`` state and an exponential backoff (bounded) before the next call; a hub that
restarts is reconnected to by each client, which resumes its rooms. Muted agents and
paused rooms get no turn, and a mute cancels the agent's turn in flight: nothing is
posted or proposed after it. With a :class:`MemoryService`, every message seen is
remembered by the agents in its room and each turn brings recalled memories and
arena-weighted knowledge; without ChromaDB the agents talk on and report ``degraded``
(tickets then wait). An arena that refuses an agent (the external arena admits only the
best by reputation) is retried later. Open tickets are the scheduler's queued work: the
worker tells it of each ticket answered or escalated, and of the hub's open tickets when
an agent joins the external arena and every ``ticket_refresh_seconds`` (tickets filed
while the worker was away are answered too). Given a worker id, the worker runs only
its share of the personas among the live workers, each agent under a lease the hub
keeps, and takes or hands over agents as workers come and go (:meth:`AgentWorker._share`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import random
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from botarena.agents import actions, drafting, sharing, tickets
from botarena.agents.actions import A
from botarena.agents.echoes import is_echo
from botarena.agents.moderator import Decision, Watch
from botarena.agents.persona import Persona, Traits
from botarena.agents.pool import LLMPool
from botarena.agents.scheduler import TICKET_ATTEMPTS, Turn, TurnScheduler
from botarena.agents.turn import CUT_REASON, CrewTurns, TurnOutcome, build_task, clean_reply
from botarena.arenas.charter import ArenaCharter, charters
from botarena.arenas.names import (
    EXTERNAL,
    ProposalKind,
    ProposalStatus,
    TicketStatus,
    ticket_path,
)
from botarena.arenas.policy import Category
from botarena.memory.service import MemoryService, TurnMemory
from botarena.server.client import HubClient
from botarena.server.errors import (
    Blocked,
    ConfigError,
    Forbidden,
    Held,
    HubError,
    Leased,
    Muted,
    NotFound,
    RoomPaused,
    Unauthorized,
)
from botarena.server.protocol import (
    AgentStateKind,
    BackendState,
    CanonMerged,
    Message,
    MessageWithheld,
    ModerationNotice,
    ProposalInfo,
    RoomState,
)

log = structlog.get_logger(__name__)

_IDS_KEPT = 10_000  # message ids remembered as handled, or as withheld
_TICKET_PATH = re.compile(r"tickets/(\d+)")  # a ticket_answer's path: its ticket


def load_tokens(path: Path) -> dict[str, str]:
    """The worker's agent tokens: a JSON object of persona id to token."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(
            f"no agent tokens at {path}: create one per persona "
            "(botarena token create --name ID --role agent) and list them there as JSON"
        ) from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the agent tokens at {path}: {exc}") from None
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in data.items()
    ):
        raise ConfigError(f"{path} must be a JSON object of persona id to token")
    return data


@dataclass
class TurnRecord:
    """What one turn cost, for the benchmark and the logs."""

    agent: str
    kind: str
    posted: bool
    reason: str
    llm_seconds: float
    turn_seconds: float  # the whole turn: state reports, CrewAI, the LLM, posting
    completion_tokens: int


@dataclass
class AgentSeat:
    persona: Persona
    client: HubClient
    traits: Traits
    initiative_index: int = field(default_factory=lambda: random.randrange(1000))
    quiet_turns: int = 0  # initiative turns taken (every charter.draft_every-th drafts)
    refused: set[str] = field(default_factory=set)  # arenas that refused it, to retry
    held: bool = False  # connected and seated by this worker
    token_refused: bool = False  # its token was refused: not tried again
    drifted: dict[str, float] = field(default_factory=dict)  # the drift told, until reported


class AgentWorker:
    """Runs a set of personas against one hub with one turn runner."""

    def __init__(
        self,
        hub_url: str,
        personas: list[Persona],
        tokens: dict[str, str],
        turns: CrewTurns | Any,
        *,
        slots: int = 1,
        quiet_seconds: float = 20.0,
        arena_budgets: dict[str, float] | None = None,
        turn_timeout: float = 90.0,
        max_backoff: float = 30.0,
        memory: MemoryService | None = None,
        rejoin_seconds: float = 30.0,
        ticket_refresh_seconds: float = 30.0,
        min_similarity: float = 0.83,
        sure_similarity: float = 0.88,
        min_coverage: float = 0.5,
        draft_tokens: int = 500,
        worker_id: str | None = None,
        share_seconds: float = 3.0,
    ) -> None:
        """``worker_id``: this worker's id among the workers sharing the agents (see
        :meth:`_share`; None: it runs every persona, alone); ``share_seconds``: how often
        it reads the live workers and takes or hands over agents; ``min_similarity`` and
        ``min_coverage``: what a ticket's knowledge must reach to be answered from
        (:func:`botarena.agents.tickets.relevant`), else the ticket goes to a human;
        ``sure_similarity``: from how close a passage the model's doubt no longer sends
        it to a human (:func:`botarena.agents.tickets.answered`); ``draft_tokens``: the
        longest draft a drafting turn writes."""
        missing = [p.id for p in personas if p.id not in tokens]
        if missing:
            raise ValueError(f"no token for: {', '.join(missing)}")
        self.charters: dict[str, ArenaCharter] = charters()
        budgets = arena_budgets or {n: c.turns_per_minute for n, c in self.charters.items()}
        self.scheduler = TurnScheduler(personas, budgets, quiet_seconds=quiet_seconds)
        self.turns = turns
        self.memory = memory
        self.min_similarity = min_similarity
        self.min_coverage = min_coverage
        self.sure_similarity = sure_similarity
        self.draft_tokens = draft_tokens
        self.rejoin_seconds = rejoin_seconds
        self.ticket_refresh_seconds = ticket_refresh_seconds
        self.turn_timeout = turn_timeout
        self.max_backoff = max_backoff
        self.slots = asyncio.Semaphore(slots)
        self.slots_total = slots
        self.records: list[TurnRecord] = []
        self.hub_url = hub_url
        self.tokens = tokens
        self.worker_id = worker_id
        self.share_seconds = share_seconds
        self.seats: dict[str, AgentSeat] = {
            p.id: AgentSeat(p, self._client(p), Traits(p.traits)) for p in personas
        }
        self._fatal: BaseException | None = None  # what ended the worker (a bad token)
        self._failures = 0
        self._retry_at = 0.0
        self._seen: OrderedDict[int, None] = OrderedDict()  # message ids already handled
        self._canon_seen: set[tuple[str, int]] = set()  # merges already indexed
        # messages a moderator holds, forgotten here (the newest _IDS_KEPT)
        self._withheld: OrderedDict[int, None] = OrderedDict()
        self._stopping = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._in_flight: dict[str, asyncio.Future[None]] = {}  # per agent: its turn running
        self._names = {n for p in personas for n in (p.id, p.display_name)}
        wardens = {p.id for p in personas if p.moderator is not None}
        self.watches: dict[str, Watch] = {
            p.id: Watch(p.moderator, p.id, wardens - {p.id})
            for p in personas
            if p.moderator is not None
        }

    # connecting -------------------------------------------------------------------

    def _client(self, persona: Persona) -> HubClient:
        """A new hub client for ``persona``, listened to (not yet connected)."""
        client = HubClient(
            self.hub_url, self.tokens[persona.id], on_message=self._observe, worker=self.worker_id
        )
        self._listen(persona.id, client)
        return client

    def _listen(self, agent: str, client: HubClient) -> None:
        def on_moderation(notice: ModerationNotice) -> None:
            if notice.action == "mute":
                seconds = 3600.0
                if notice.until is not None:
                    seconds = max(0.0, (notice.until - datetime.now(UTC)).total_seconds())
                self.scheduler.mute(agent, seconds)
                turn = self._in_flight.get(agent)
                if seconds > 0 and turn is not None and not turn.done():
                    log.info("turn.cancelled", agent=agent, reason="muted by a moderator")
                    turn.cancel()
                self.seats[agent].traits.nudge("assertiveness", -0.2)
                self._report_soon(agent, AgentStateKind.MUTED, "muted by a moderator")
            elif notice.action == "unmute":
                self.scheduler.unmute(agent)
                self._report_soon(agent, AgentStateKind.IDLE, "unmuted")
            elif notice.action == "kick" and notice.room:  # tried again later, as refused
                self.scheduler.leave(agent, notice.room)
                self.seats[agent].refused.add(notice.room)

        def on_room_state(state: RoomState) -> None:
            self.scheduler.set_paused(state.room, state.paused)

        def on_canon_merged(merged: CanonMerged) -> None:
            key = (merged.path, merged.version)
            if self.memory is not None and key not in self._canon_seen:
                self._canon_seen.add(key)
                self._spawn(self._index_canon(client, merged.path, merged.version))

        client.on(ModerationNotice, on_moderation)
        client.on(RoomState, on_room_state)
        client.on(CanonMerged, on_canon_merged)
        client.on(MessageWithheld, self._on_withheld)

    async def _connect(self, seat: AgentSeat) -> None:
        """Connect and join the persona's arenas, retrying while the hub is away (a
        refused token is raised: it does not get better)."""

        def unreachable(_exc: HubError, retry_in: float | None) -> None:
            if retry_in is not None:
                log.warning("worker.hub_unreachable", agent=seat.persona.id, retry_in=retry_in)

        connected = await seat.client.connect_with_backoff(
            first_delay=0.5, max_delay=10.0, stop=self._stopping, on_failure=unreachable
        )
        if connected:
            await self._seat(seat)

    async def _seat(self, seat: AgentSeat) -> None:
        """Join a connected agent's arenas and say it is here."""
        seat.held = True
        for arena in seat.persona.arenas:
            await self._join(seat, arena)
        await self._report(seat.persona.id, AgentStateKind.IDLE, "connected")

    async def _join(self, seat: AgentSeat, arena: str) -> None:
        """Join an arena; one that refuses the agent (the external arena's reputation
        gate) is tried again every ``rejoin_seconds``."""
        try:
            joined = await seat.client.join(arena)
        except Forbidden as exc:
            log.info("worker.join_refused", agent=seat.persona.id, room=arena, error=exc.message)
            seat.refused.add(arena)
            return
        except HubError as exc:
            log.info("worker.join_refused", agent=seat.persona.id, room=arena, error=exc.message)
            return
        seat.refused.discard(arena)
        self.scheduler.enter(
            seat.persona.id, arena, paused=joined.room.paused, answered_through=joined.room.last_id
        )
        if arena == EXTERNAL:
            await self._refresh_tickets(seat)

    async def _refresh_tickets(self, seat: AgentSeat) -> None:
        """Queue the hub's open tickets (those filed while the worker was away too),
        but not those whose answer waits for review (an approved one closes its ticket)."""
        try:
            listed = await seat.client.tickets(status=TicketStatus.OPEN, limit=500)
            waiting = await seat.client.proposals(
                arena=EXTERNAL, status=ProposalStatus.PENDING, limit=500
            )
        except HubError as exc:
            log.info("worker.tickets_not_listed", agent=seat.persona.id, error=exc.message)
            return
        answered = [
            int(found[1])
            for p in waiting.proposals
            if p.kind == ProposalKind.TICKET_ANSWER
            and (found := _TICKET_PATH.fullmatch(p.path)) is not None
        ]
        self.scheduler.sync_tickets(listed.tickets, answered)

    async def _refresh_tickets_every(self) -> None:
        while not self._stopping.is_set():
            await self._pause(self.ticket_refresh_seconds)
            room = self.scheduler.rooms.get(EXTERNAL)
            seated = [
                seat
                for seat in self.seats.values()
                if room is not None and seat.persona.id in room.agents and seat.client.connected
            ]
            if seated:
                await self._refresh_tickets(seated[0])

    async def _left_out(self, seat: AgentSeat, room: str) -> None:
        """The hub no longer admits the agent to ``room``: leave it, try again later."""
        self.scheduler.leave(seat.persona.id, room)
        seat.refused.add(room)
        try:
            await seat.client.leave(room)
        except HubError as exc:
            log.info("worker.leave_failed", agent=seat.persona.id, room=room, error=exc.message)

    async def _rejoin_refused(self) -> None:
        while not self._stopping.is_set():
            await self._pause(self.rejoin_seconds)
            for seat in self.seats.values():
                if seat.client.connected:
                    for room in sorted(seat.refused):
                        await self._join(seat, room)

    async def _index_canon(self, client: HubClient, path: str, version: int) -> None:
        """Fetch a newly merged canon version and add it to the shared knowledge."""
        assert self.memory is not None
        try:
            canon = await client.canon(path, version)
        except HubError as exc:
            log.warning("worker.canon_not_fetched", path=path, error=exc.message)
            return
        await self.memory.index_canon(path, version, canon.content)

    def _on_withheld(self, push: MessageWithheld) -> None:
        """A moderator held a posted message (no turn answers it, no agent remembers it)
        or released one (seen again; remembered again if it had been forgotten here).
        Every agent client in the room is told: handled once."""
        if push.withheld and push.message_id not in self._withheld:
            self._withheld[push.message_id] = None
            if len(self._withheld) > _IDS_KEPT:
                self._withheld.popitem(last=False)
            self.scheduler.withhold(push.room, push.message_id)
            if self.memory is not None:
                self._spawn(self.memory.forget(push.message_id))
        elif not push.withheld and push.message is not None:
            message = push.message
            self.scheduler.restore(message)
            room = self.scheduler.rooms.get(push.room)
            if message.id in self._withheld and self.memory is not None and room is not None:
                if not self._echoes(message):
                    agents = set(room.agents)
                    self._spawn(self.memory.observe(message, agents, released=True))
            self._withheld.pop(message.id, None)

    def _observe(self, message: Message) -> None:
        if message.id in self._seen:
            return  # every agent client in the room receives it: handle it once
        self._seen[message.id] = None
        if len(self._seen) > _IDS_KEPT:
            self._seen.popitem(last=False)
        mentioned = self.scheduler.mentioned(message)
        for agent in mentioned:
            self.seats[agent].traits.nudge("sociability", 0.05)
        room = self.scheduler.rooms.get(message.room)
        if self.memory is not None and room is not None and not self._echoes(message):
            self._spawn(self.memory.observe(message, set(room.agents), mentioned))
        self.scheduler.observe(message)
        for agent, watch in self.watches.items():
            if room is not None and agent in room.agents and self.seats[agent].held:
                decisions = watch.observe(message, time.monotonic())
                if decisions:
                    self._spawn(self._moderate(self.seats[agent], decisions))

    async def _moderate(self, seat: AgentSeat, decisions: list[Decision]) -> None:
        """Carry an AI moderator's decisions to the hub (refusals logged: the hub
        decides what an AI moderator may do)."""
        for decision in decisions:
            try:
                if decision.action == "flag":
                    await seat.client.flag(decision.message_id, Category.NOISE, decision.reason)
                elif decision.action == "hold":
                    await seat.client.hold(decision.message_id, Category.NOISE, decision.reason)
                else:
                    await seat.client.mute(decision.agent, decision.seconds, decision.reason)
            except HubError as exc:
                log.info("moderator.refused", moderator=seat.persona.id, error=exc.message)
                continue
            log.info(
                "moderator.acted",
                moderator=seat.persona.id,
                action=decision.action,
                agent=decision.agent,
                message=decision.message_id,
                reason=decision.reason,
            )

    def _echoes(self, message: Message) -> bool:
        """Whether ``message`` repeats a prompt (never remembered, whoever wrote it)."""
        return is_echo(message.text, self._names | {message.author})

    # state reports ----------------------------------------------------------------

    async def _report(
        self,
        agent: str,
        state: AgentStateKind,
        detail: str = "",
        llm_seconds: float | None = None,
    ) -> None:
        seat = self.seats[agent]
        if not seat.client.connected:
            return
        drifted = self._watch_drift(seat)
        if drifted is not None:
            state, detail = AgentStateKind.DRIFTED, drifted
        elif state is AgentStateKind.IDLE and self.memory is not None and self.memory.degraded:
            state, detail = AgentStateKind.DEGRADED, f"{self.memory.degraded}; {detail}"
        backend, pool = self._pool_report()
        try:
            await seat.client.report_state(
                state,
                detail[:500],
                drift=seat.drifted or seat.traits.drift(),
                summary=seat.persona.summary()[:300],
                llm_seconds=llm_seconds,
                backend=backend,
                pool=pool,
                memory=self.memory.describe() if self.memory is not None else "none",
                timeout=5,
            )
        except HubError as exc:
            log.info("worker.state_not_reported", agent=agent, error=exc.message)
        seat.drifted = {}

    def _watch_drift(self, seat: AgentSeat) -> str | None:
        """Past its persona's drift threshold, pull the agent back to its anchors or
        pause it (as the persona says); what the moderators are told, or None. The
        drift reported with it is the drift that passed the threshold."""
        watch = seat.persona.drift_watch
        farthest = seat.traits.farthest()
        if farthest is None or abs(farthest[1]) < watch.threshold:
            return None
        trait, distance = farthest
        told = f"{trait} drifted {distance:+.2f} from its anchor (threshold {watch.threshold})"
        agent = seat.persona.id
        if watch.on_drift == "pause":
            self.scheduler.mute(agent, watch.pause_seconds)
            told += f": paused for {watch.pause_seconds:g} s, then back at its anchors"
        else:
            told += ": pulled back to its anchors"
        log.warning("agent.drifted", agent=agent, trait=trait, drift=distance, on=watch.on_drift)
        seat.drifted = seat.traits.drift()
        seat.traits.reanchor()
        return told

    def _pool_report(self) -> tuple[str | None, list[BackendState] | None]:
        """The LLM pool as the worker reports it: a line for moderators (its model, each
        backend up or out and its slots busy) and each backend's state; None and None
        for a worker without a pool."""
        pool = getattr(self.turns, "pool", None)
        if not isinstance(pool, LLMPool):
            return None, None
        states = pool.states()
        parts = [
            f"{s.name} ({s.kind}) {'up' if s.up else 'out'} {s.busy}/{s.capacity}" for s in states
        ]
        return f"{pool.default_model} on {', '.join(parts)}"[:200], states

    def _report_soon(self, agent: str, state: AgentStateKind, detail: str) -> None:
        self._spawn(self._report(agent, state, detail))

    def _spawn(self, coro: Awaitable[None]) -> asyncio.Future[None]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # the loop ---------------------------------------------------------------------

    async def run(self) -> None:
        """Connect every agent, then hand out turns until :meth:`stop`."""
        if self.memory is not None:
            await self.memory.start()
        if self.worker_id is None:
            await asyncio.gather(*(self._connect(seat) for seat in self.seats.values()))
            log.info("worker.running", agents=list(self.seats))
        else:
            log.info("worker.running", worker=self.worker_id, sharing=len(self.seats))
            self._spawn(self._share())
        self._spawn(self._rejoin_refused())
        self._spawn(self._refresh_tickets_every())
        while not self._stopping.is_set():
            if time.monotonic() < self._retry_at or self.slots.locked():
                await self._pause(0.1)
                continue
            turn = self.scheduler.next_turn()
            if turn is None:
                await self._pause(0.1)
                continue
            await self.slots.acquire()
            running = self._in_flight[turn.agent] = self._spawn(self._take_turn(turn))
            running.add_done_callback(functools.partial(self._landed, turn.agent))
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._fatal is not None:
            raise self._fatal

    # sharing the agents with other workers -------------------------------------------

    async def _share(self) -> None:
        """Every ``share_seconds``: read the live workers and run this worker's share of
        the agents (:func:`sharing.owner`), taking the ones it gains and handing over the
        ones another live worker ranks higher for. A worker that holds no agent yet
        cannot read the list: it tries every agent, and the hub counts it as waiting, so
        the others hand over its share. An agent whose session the hub closed (its lease
        went to another worker, a kick) or whose reconnect is refused is let go first."""
        while not self._stopping.is_set():
            try:
                await self._share_once()
            except Exception:  # one failed round must not stop the sharing
                log.exception("worker.share_failed")
            await self._pause(self.share_seconds)

    async def _share_once(self) -> None:
        for seat in self.seats.values():
            if seat.held and self._lost(seat.client):
                await self._hand_over(seat, "its connection was closed or refused")
        assert self.worker_id is not None  # sharing is for a worker with an id
        live = await self._live_workers()
        workers = {*(live or ()), self.worker_id}
        taking = []
        for agent, seat in self.seats.items():
            owner = sharing.owner(agent, workers)
            mine = owner == self.worker_id
            if seat.held and not mine and live is not None:
                await self._hand_over(seat, f"worker {owner} runs it")
            elif not seat.held and mine and not seat.token_refused:
                taking.append(self._take(seat))
        await asyncio.gather(*taking)
        if all(seat.token_refused for seat in self.seats.values()):
            self._fatal = Unauthorized("every agent token was refused")
            self._stopping.set()

    @staticmethod
    def _lost(client: HubClient) -> bool:
        return not client.connected and (
            client.closed_by_hub or isinstance(client.refusal, Leased | Unauthorized)
        )

    async def _live_workers(self) -> list[str] | None:
        """The live workers as the hub lists them; None without a connected agent."""
        for seat in self.seats.values():
            if seat.held and seat.client.connected:
                try:
                    return (await seat.client.workers()).workers
                except HubError as exc:
                    log.info("worker.workers_not_listed", agent=seat.persona.id, error=exc.message)
        return None

    async def _take(self, seat: AgentSeat) -> None:
        """Connect an agent under this worker's lease, and seat it; one another worker
        holds is left to it (tried again next round)."""
        try:
            await seat.client.connect()
        except Leased:
            return
        except Unauthorized as exc:
            log.error("worker.token_refused", agent=seat.persona.id, error=exc.message)
            seat.token_refused = True
            return
        except HubError as exc:
            log.info("worker.not_connected", agent=seat.persona.id, error=exc.message)
            return
        log.info("worker.agent_taken", agent=seat.persona.id, worker=self.worker_id)
        await self._seat(seat)

    async def _hand_over(self, seat: AgentSeat, why: str) -> None:
        """Stop running an agent: out of the scheduler, its turn cancelled, its connection
        closed (the hub releases its lease); a fresh client waits for the next take."""
        agent = seat.persona.id
        seat.held = False
        for room in list(self.scheduler.rooms):
            self.scheduler.leave(agent, room)
        turn = self._in_flight.get(agent)
        if turn is not None and not turn.done():
            turn.cancel()
        old, seat.client = seat.client, self._client(seat.persona)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(old.close(), 5)
        log.info("worker.agent_handed_over", agent=agent, reason=why)

    async def _pause(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
        except TimeoutError:
            pass

    async def stop(self) -> None:
        """Stop handing out turns, end the turns in flight (an LLM answer can take a
        minute; a stopping site does not wait for it) and disconnect every agent (each
        within 5 seconds)."""
        self._stopping.set()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(
            *(asyncio.wait_for(seat.client.close(), 5) for seat in self.seats.values()),
            return_exceptions=True,
        )

    def _landed(self, agent: str, turn: asyncio.Future[None]) -> None:
        if self._in_flight.get(agent) is turn:
            del self._in_flight[agent]

    async def _take_turn(self, turn: Turn) -> None:
        posted = False
        try:
            posted = await self._turn(turn)
        except asyncio.CancelledError:  # muted meanwhile: nothing more of this turn
            log.info("turn.skipped", agent=turn.agent, room=turn.room, reason="cancelled")
            raise
        except Exception:  # a bug in one turn must not stop the worker: log it loudly
            log.exception("turn.failed", agent=turn.agent, room=turn.room)
            await self._report(turn.agent, AgentStateKind.ERROR, "internal error in a turn")
        finally:
            self.scheduler.finish(turn, spoke=posted)
            self.slots.release()

    async def _turn(self, turn: Turn) -> bool:
        """Think and act; True when a message was posted."""
        seat = self.seats[turn.agent]
        started = time.perf_counter()
        await self._report(turn.agent, AgentStateKind.THINKING, f"{turn.kind} in {turn.room}")
        charter = self.charters.get(turn.room)
        if turn.ticket is not None:
            return await self._answer_ticket(seat, turn, charter, started)
        if turn.kind == "initiative":
            seat.quiet_turns += 1
        initiative = ""
        if charter is not None:
            seat.initiative_index += 1
            initiative = charter.initiative[seat.initiative_index % len(charter.initiative)]
        draft = drafting.plan(turn, charter, seat.quiet_turns)
        if draft is not None and charter is not None:
            return await self._draft(seat, turn, charter, draft, initiative, started)
        return await self._chat(seat, turn, charter, initiative, started)

    async def _chat(
        self,
        seat: AgentSeat,
        turn: Turn,
        charter: ArenaCharter | None,
        initiative: str,
        started: float,
    ) -> bool:
        """A chat turn: say something, agree or disagree with the message answered, or pass."""
        recalled = await self._recall(seat, turn, charter, initiative)
        history = self.scheduler.history(turn.room)
        task = build_task(seat.persona, seat.traits, turn, history, charter, initiative, recalled)
        model = actions.chat(replying=turn.trigger is not None)
        outcome = await self._think(seat, turn, task, model)
        if outcome is None:
            return False
        chosen = self._parsed(model, outcome)
        if isinstance(chosen, str):
            return await self._skip(turn, outcome, started, chosen)
        if chosen.action == actions.Act.PASS:
            return await self._skip(turn, outcome, started, "passed: nothing to add")
        text, reason = clean_reply(chosen.text, seat.persona, history, cut=outcome.cut)
        if text is None:
            return await self._skip(turn, outcome, started, reason)
        if chosen.action in (actions.Act.AGREE, actions.Act.DISAGREE) and turn.trigger:
            await self._react(seat, turn, 1 if chosen.action == actions.Act.AGREE else -1)
        return await self._say(seat, turn, outcome, started, text)

    async def _draft(
        self,
        seat: AgentSeat,
        turn: Turn,
        charter: ArenaCharter,
        draft: drafting.DraftPlan,
        initiative: str,
        started: float,
    ) -> bool:
        """A drafting turn: a new text for the canon, proposed, and said in the room."""
        about = " ".join(turn.trigger.text.split())[:300] if turn.trigger else initiative
        recalled = await self._recall(seat, turn, charter, about)
        history = self.scheduler.history(turn.room)
        ask = drafting.ask(draft, about)
        task = build_task(
            seat.persona, seat.traits, turn, history, charter, initiative, recalled, ask
        )
        model = actions.draft(draft.kinds)
        outcome = await self._think(seat, turn, task, model, self.draft_tokens)
        if outcome is None:
            return False
        written = self._parsed(model, outcome)
        if isinstance(written, str):
            return await self._skip(turn, outcome, started, written)
        made = drafting.from_action(written, draft, seat.persona.id, self._names)
        if isinstance(made, str):
            return await self._skip(turn, outcome, started, made)
        if self.scheduler.is_muted(turn.agent):
            return await self._skip(turn, outcome, started, "muted")
        try:
            proposal = await self._submit(seat, turn.room, made)
        except HubError as exc:
            log.warning("turn.not_proposed", agent=turn.agent, room=turn.room, error=str(exc))
            return await self._skip(turn, outcome, started, f"proposal refused: {exc.message}")
        said = f'I proposed the {made.kind} "{made.title}" (#{proposal.id}).'
        return await self._say(seat, turn, outcome, started, said)

    async def _answer_ticket(
        self, seat: AgentSeat, turn: Turn, charter: ArenaCharter | None, started: float
    ) -> bool:
        """A ticket turn: an answer from the knowledge, proposed for review, or the
        ticket handed to a human when the knowledge does not answer it."""
        assert turn.ticket is not None and turn.trigger is not None
        nothing = TurnOutcome("", 0.0, 0.0)
        if self.memory is None:
            return await self._skip(turn, nothing, started, "no knowledge to answer from")
        asked = tickets.question(turn.trigger.text)
        evidence = await self.memory.evidence(asked, charter.knowledge if charter else {})
        if self.memory.degraded:
            return await self._skip(turn, nothing, started, self.memory.degraded)
        passages = tickets.relevant(evidence, self.min_similarity, self.min_coverage)
        if not passages:
            why = "nothing in the knowledge base answers it"
            return await self._escalate(seat, turn, nothing, started, why)
        model = actions.ticket(tickets.labels(passages))
        task = tickets.task(turn.ticket, turn.trigger.author, asked, passages)
        outcome = await self._think(seat, turn, task, model)
        if outcome is None:
            return False
        answer = self._parsed(model, outcome)
        if isinstance(answer, str):
            return await self._unanswered(seat, turn, outcome, started, answer)
        if not tickets.answered(answer, passages, self.sure_similarity):
            why = "the passages found do not answer it"
            return await self._escalate(seat, turn, outcome, started, why)
        content = tickets.compose(answer, passages, asked, self._names)
        if self.scheduler.is_muted(turn.agent):
            return await self._skip(turn, outcome, started, "muted")
        title = f"Answer to ticket #{turn.ticket}"
        made = drafting.Draft(ProposalKind.TICKET_ANSWER, ticket_path(turn.ticket), title, content)
        try:
            proposal = await self._submit(seat, EXTERNAL, made)
        except HubError as exc:
            log.warning("turn.not_proposed", agent=turn.agent, room=turn.room, error=str(exc))
            why = f"proposal refused: {exc.message}"
            return await self._unanswered(seat, turn, outcome, started, why)
        said = f"I answered ticket #{turn.ticket}: proposal #{proposal.id} waits for review."
        return await self._say(seat, turn, outcome, started, said)

    async def _unanswered(
        self, seat: AgentSeat, turn: Turn, outcome: TurnOutcome, started: float, reason: str
    ) -> bool:
        """A ticket turn without a usable answer: the ticket gets another turn, or after
        its last one goes to a human."""
        if turn.attempt < TICKET_ATTEMPTS:
            return await self._skip(turn, outcome, started, reason)
        why = f"no usable answer in {turn.attempt} turns (the last: {reason})"
        return await self._escalate(seat, turn, outcome, started, why)

    async def _escalate(
        self, seat: AgentSeat, turn: Turn, outcome: TurnOutcome, started: float, reason: str
    ) -> bool:
        """Hand the turn's ticket to a human and say so in the room."""
        assert turn.ticket is not None
        if self.scheduler.is_muted(turn.agent):
            return await self._skip(turn, outcome, started, "muted")
        try:
            await seat.client.escalate(turn.ticket, reason)
        except HubError as exc:
            log.warning("turn.not_escalated", agent=turn.agent, ticket=turn.ticket, error=str(exc))
            return await self._skip(turn, outcome, started, f"escalation refused: {exc.message}")
        self.scheduler.ticket_done(turn.ticket)
        log.info("turn.escalated", agent=turn.agent, ticket=turn.ticket, reason=reason)
        return await self._say(seat, turn, outcome, started, tickets.unknown(turn.ticket, reason))

    async def _react(self, seat: AgentSeat, turn: Turn, value: int) -> None:
        assert turn.trigger is not None
        if not turn.trigger.id or turn.trigger.author == turn.agent:
            return  # a rebuilt announcement has no id; one's own message takes none
        try:
            await seat.client.react(turn.room, turn.trigger.id, value)
        except HubError as exc:
            log.info("worker.not_reacted", agent=turn.agent, room=turn.room, error=exc.message)

    def _parsed(self, model: type[A], outcome: TurnOutcome) -> A | str:
        """The turn's action, or why the answer is none (one the token limit cut off
        before its JSON ended, mostly)."""
        parsed = actions.parse(model, outcome.raw)
        if isinstance(parsed, str) and outcome.cut:
            return CUT_REASON
        return parsed

    async def _skip(self, turn: Turn, outcome: TurnOutcome, started: float, reason: str) -> bool:
        """End the turn without a message, saying why."""
        log.info("turn.skipped", agent=turn.agent, room=turn.room, reason=reason)
        self._record(turn, outcome, started, posted=False, reason=reason)
        detail = f"skipped: {reason}"
        await self._report(turn.agent, AgentStateKind.IDLE, detail, outcome.llm_seconds or None)
        return False

    async def _say(
        self, seat: AgentSeat, turn: Turn, outcome: TurnOutcome, started: float, text: str
    ) -> bool:
        """Post the turn's message; True when it was posted."""
        posted = await self._post(seat, turn, text)
        self._record(turn, outcome, started, posted=posted, reason="ok" if posted else "not posted")
        if posted:
            log.info(
                "turn.posted",
                agent=turn.agent,
                room=turn.room,
                kind=turn.kind,
                llm_seconds=round(outcome.llm_seconds, 3),
                turn_seconds=round(time.perf_counter() - started, 3),
            )
            seat.traits.relax()
            await self._report(
                turn.agent, AgentStateKind.IDLE, f"spoke in {turn.room}", outcome.llm_seconds
            )
        return posted

    async def _think(
        self,
        seat: AgentSeat,
        turn: Turn,
        task: str,
        action: type[actions.Action],
        max_tokens: int | None = None,
    ) -> TurnOutcome | None:
        """The LLM's answer to ``task`` held to ``action``; None when the LLM failed (the
        turn is skipped and the worker backs off)."""
        try:
            outcome = await asyncio.wait_for(
                self.turns.run(seat.persona, task, action, max_tokens, arena=turn.room),
                self.turn_timeout,
            )
        except Exception as exc:  # any LLM failure: skip, report, back off; never die
            self._failures += 1
            backoff = min(self.max_backoff, 0.5 * 2 ** min(self._failures, 10))
            self._retry_at = time.monotonic() + backoff
            why = str(exc)[:200] or (
                f"no answer in {self.turn_timeout:g}s" if isinstance(exc, TimeoutError) else ""
            )
            reason = f"LLM failed ({type(exc).__name__}: {why}); retry in {backoff:.1f}s"
            log.warning("turn.skipped", agent=turn.agent, room=turn.room, reason=reason)
            await self._report(turn.agent, AgentStateKind.ERROR, reason)
            return None
        self._failures = 0
        return outcome

    async def _recall(
        self, seat: AgentSeat, turn: Turn, charter: ArenaCharter | None, initiative: str
    ) -> TurnMemory | None:
        """Memories and knowledge for the turn; None (and a degraded report) without."""
        if self.memory is None:
            return None
        query = turn.trigger.text if turn.trigger is not None else initiative
        recalled = await self.memory.for_turn(
            seat.persona.id, query or turn.room, charter.knowledge if charter else {}
        )
        return None if self.memory.degraded else recalled

    # proposals ----------------------------------------------------------------------

    async def _submit(self, seat: AgentSeat, arena: str, draft: drafting.Draft) -> ProposalInfo:
        """Propose ``draft`` in ``arena``, based on the canon's current version of its path."""
        base = 0
        if draft.kind != ProposalKind.TICKET_ANSWER:
            try:
                base = (await seat.client.canon(draft.path)).version
            except NotFound:
                pass  # a new document: base version 0
        proposal = await seat.client.propose(
            arena, draft.kind, draft.path, draft.title, draft.content, base_version=base
        )
        answered = _TICKET_PATH.fullmatch(proposal.path)
        if proposal.kind == ProposalKind.TICKET_ANSWER and answered:
            self.scheduler.ticket_done(int(answered[1]))
        log.info(
            "turn.proposed",
            agent=seat.persona.id,
            arena=arena,
            proposal=proposal.id,
            kind=proposal.kind,
            path=proposal.path,
        )
        return proposal

    async def _post(self, seat: AgentSeat, turn: Turn, text: str) -> bool:
        if self.scheduler.is_muted(turn.agent):
            return False  # muted while thinking
        # a ticket's announcement rebuilt from the hub's list has no message id (0)
        reply_to = turn.trigger.id if turn.trigger is not None and turn.trigger.id else None
        await self._report(turn.agent, AgentStateKind.SPEAKING, f"in {turn.room}")
        try:
            await seat.client.send(turn.room, text, reply_to=reply_to)
            return True
        except Muted as exc:
            self.scheduler.mute(turn.agent, 60.0)
            await self._report(turn.agent, AgentStateKind.MUTED, exc.message)
        except RoomPaused as exc:
            self.scheduler.set_paused(turn.room, True)
            await self._report(turn.agent, AgentStateKind.IDLE, exc.message)
        except Forbidden as exc:
            log.info("worker.left_out", agent=turn.agent, room=turn.room, error=exc.message)
            await self._left_out(seat, turn.room)
        except (Blocked, Held) as exc:  # the content filter: told, not retried
            log.info("turn.screened", agent=turn.agent, room=turn.room, error=exc.message)
            await self._report(turn.agent, AgentStateKind.IDLE, exc.message)
        except HubError as exc:
            log.warning("turn.not_posted", agent=turn.agent, room=turn.room, error=str(exc))
        return False

    def _record(
        self, turn: Turn, outcome: TurnOutcome, started: float, *, posted: bool, reason: str
    ) -> None:
        self.records.append(
            TurnRecord(
                turn.agent,
                turn.kind,
                posted,
                reason,
                outcome.llm_seconds,
                time.perf_counter() - started,
                outcome.completion_tokens,
            )
        )
        del self.records[:-10_000]
