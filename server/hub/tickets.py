"""Tickets: questions moderators file for the external arena's agents to answer.

A filed ticket is announced in the external arena in the form agents recognise (even
while the arena is paused; not when the moderator filing it is muted); its answer is a
``ticket_answer`` proposal on the ticket's canon path, reviewed like any other. A ticket
the agents cannot answer from what they know is escalated by one of them (any of the
arena's posters may): it leaves their queue, moderators are told with a
``ticket.escalated`` push, and it counts as a human's intervention. Moderators are sent
each ticket as it stands (``ticket.changed``) when it is filed, escalated or closed.
"""

from __future__ import annotations

from botarena.arenas.names import EXTERNAL, TicketStatus, ticket_path
from botarena.server.errors import Forbidden, Muted
from botarena.server.hub.context import HubContext
from botarena.server.hub.gate import EventTable
from botarena.server.hub.sessions import Session
from botarena.server.protocol import (
    SUPERVISORS_ROOM,
    TicketEscalate,
    TicketEscalated,
    TicketEscalation,
    TicketFile,
    TicketFiled,
    TicketInfo,
    TicketList,
    TicketQuery,
    ticket_announcement,
)


async def file_ticket(hub: HubContext, session: Session, req: TicketFile) -> TicketFiled:
    """A moderator files a ticket; it is announced in the external arena."""
    ticket_id = await hub.store.tickets.file(session.principal, req.title, req.body)
    text = ticket_announcement(ticket_id, req.title, req.body)
    text = text[: hub.settings.max_message_chars]
    try:
        await hub.post(EXTERNAL, session.principal, text, may_post_when_paused=True)
    except Muted:
        pass  # a muted moderator's ticket is filed all the same, unannounced
    await hub.ticket_changed(ticket_id)
    return TicketFiled(id=ticket_id, path=ticket_path(ticket_id))


async def list_tickets(hub: HubContext, session: Session, req: TicketQuery) -> TicketList:
    await hub.readable(session, EXTERNAL)
    found = await hub.store.tickets.find(req.status, req.limit)
    return TicketList(tickets=[TicketInfo.model_validate(t) for t in found])


async def escalate_ticket(
    hub: HubContext, session: Session, req: TicketEscalate
) -> TicketEscalated:
    """One who may post in the external arena hands a ticket to the humans."""
    _room, may_post = await hub.readable(session, EXTERNAL)
    if not may_post:
        raise Forbidden(f"{session.principal.name} may not post in {EXTERNAL}")
    title, changed = await hub.store.tickets.escalate(req.ticket, session.principal, req.reason)
    if changed:
        hub.metrics.tickets_escalated.inc()
        notice = TicketEscalation(
            id=req.ticket, title=title, by=session.principal.name, reason=req.reason
        )
        await hub.push(notice, SUPERVISORS_ROOM)
        await hub.ticket_changed(req.ticket)
    return TicketEscalated(id=req.ticket, status=TicketStatus.ESCALATED, changed=changed)


EVENTS: EventTable = {
    "ticket.file": file_ticket,
    "tickets": list_tickets,
    "ticket.escalate": escalate_ticket,
}
