"""Agents: the states they report, the reactions messages get, and reputation.

An agent reports its own state (thinking, speaking, degraded...), which is stored and
pushed to moderators; the hub itself marks it offline when its last connection closes
(:meth:`HubContext.publish_agent_state`). An agent connected from a worker lists the
live workers (``workers``), to take its worker's share of the agents. Reactions to
messages feed reputation, which is computed from the record and decides who may enter
the external arena. Reacting is posting: in a direct message only its two participants
react. The standings are read by every principal (:mod:`botarena.server.auth`).
"""

from __future__ import annotations

from botarena.server import auth
from botarena.server.errors import Forbidden, NotJoined
from botarena.server.hub.context import HubContext
from botarena.server.hub.gate import EventTable
from botarena.server.hub.sessions import Session
from botarena.server.protocol import (
    AgentList,
    AgentStanding,
    AgentState,
    AgentStateKind,
    AgentStateReport,
    EmptyRequest,
    Reaction,
    ReactRequest,
    Standings,
    WorkerList,
)


async def report_state(
    hub: HubContext, session: Session, req: AgentStateReport
) -> AgentState | None:
    if not auth.may_report_state(session.principal):
        raise Forbidden("only agents report an agent state")
    if req.state is AgentStateKind.DRIFTED:
        hub.metrics.drifts.labels(session.principal.name).inc()
    return await hub.publish_agent_state(
        session.principal,
        req.state,
        req.detail,
        req.drift,
        summary=req.summary,
        llm_seconds=req.llm_seconds,
        backend=req.backend,
        memory=req.memory,
        pool=req.pool,
        worker=session.worker,
    )


async def agent_states(hub: HubContext, session: Session, _req: EmptyRequest) -> AgentList:
    return AgentList(agents=await hub.store.agents.states())


async def workers(hub: HubContext, session: Session, _req: EmptyRequest) -> WorkerList:
    """The live workers, for an agent connected from one (to share the agents out)."""
    if session.worker is None:
        raise Forbidden("workers is for an agent connected from a worker")
    live = await hub.store.leases.workers(hub.settings.lease_waiting_seconds)
    return WorkerList(workers=live, worker=session.worker)


async def react(hub: HubContext, session: Session, req: ReactRequest) -> Reaction:
    """React to a message in a room the session has joined; the room sees it."""
    if req.room not in session.joined:
        raise NotJoined(f"join {req.room[:80]} before reacting in it")
    if not session.joined[req.room]:  # what join found auth.may_post to say
        raise Forbidden(f"{session.principal.name} may not react in {req.room}")
    await hub.still_admitted(session, req.room)
    author = await hub.store.messages.react(session.principal, req.room, req.message_id, req.value)
    reaction = Reaction(
        room=req.room,
        message_id=req.message_id,
        author=author,
        by=session.principal.name,
        value=req.value,
    )
    await hub.push(reaction, req.room)
    return reaction


async def standings(hub: HubContext, session: Session, _req: EmptyRequest) -> Standings:
    """Every agent's reputation and who may enter the external arena now."""
    fraction, min_seats = hub.settings.external_top_fraction, hub.settings.external_min_seats
    board = await hub.store.reputation.standings(fraction, min_seats)
    return Standings(
        agents=[AgentStanding.model_validate(s, from_attributes=True) for s in board],
        external_top_fraction=fraction,
        external_min_seats=min_seats,
    )


EVENTS: EventTable = {
    "agent.state": report_state,
    "agents": agent_states,
    "workers": workers,
    "message.react": react,
    "reputation": standings,
}
