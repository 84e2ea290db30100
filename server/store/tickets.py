"""Tickets: questions humans file for the help desk, answered through proposals.

A ticket is answered by a ``ticket_answer`` proposal on the path ``tickets/<id>``; the
ticket closes when a human approves that answer, noting whether a human had to step in
(an edited answer, one a human wrote, or a ticket the agents escalated because they could
not answer it). Filing, escalating and closing are audited.
"""

from __future__ import annotations

import re
from typing import Any

import asyncpg

from botarena.arenas.names import TicketStatus
from botarena.server.auth import Principal
from botarena.server.errors import Conflict, InvalidPayload, NotFound
from botarena.server.store.audit import AuditLog
from botarena.server.store.database import Database


class TicketRepository:
    """Tickets and their answers."""

    def __init__(self, db: Database, audit: AuditLog) -> None:
        self.db = db
        self.audit = audit

    async def _audit(
        self,
        action: str,
        by: Principal,
        ticket_id: int,
        detail: dict[str, Any],
        conn: asyncpg.Connection,
    ) -> None:
        await self.audit.append(
            action, actor=by.name, subject=f"ticket:{ticket_id}", detail=detail, conn=conn
        )

    async def overdue(self, seconds: float) -> list[asyncpg.Record]:
        """The open, unanswered tickets filed more than ``seconds`` ago that moderators
        were not told of yet (``id``, ``title``, ``created_at``); each is marked told, so
        that of several hubs only one tells."""
        return await self.db.pool.fetch(
            """UPDATE tickets SET alerted_at = now()
               WHERE status = $2 AND answer_proposal_id IS NULL AND alerted_at IS NULL
                 AND created_at < now() - make_interval(secs => $1)
               RETURNING id, title, created_at""",
            seconds,
            TicketStatus.OPEN.value,
        )

    async def file(self, filer: Principal, title: str, body: str) -> int:
        """File a ticket; its id."""
        async with self.db.transaction() as conn:
            ticket_id = await conn.fetchval(
                "INSERT INTO tickets (title, body, filed_by) VALUES ($1, $2, $3) RETURNING id",
                title,
                body,
                filer.id,
            )
            await self._audit("ticket.filed", filer, ticket_id, {"title": title}, conn)
        return ticket_id

    async def escalate(self, ticket_id: int, by: Principal, reason: str) -> tuple[str, bool]:
        """Hand an open ticket to the humans; its title, and False when it already was
        escalated (nothing changes then). A closed ticket is a ``Conflict``."""
        async with self.db.transaction() as conn:
            row = await conn.fetchrow(
                "SELECT title, status FROM tickets WHERE id = $1 FOR UPDATE", ticket_id
            )
            if row is None:
                raise NotFound(f"ticket {ticket_id} is unknown")
            if row["status"] == TicketStatus.CLOSED:
                raise Conflict(f"ticket {ticket_id} is closed")
            if row["status"] == TicketStatus.ESCALATED:
                return row["title"], False
            await conn.execute(
                """UPDATE tickets SET status = $3, escalated_at = now(),
                   escalation = $2, human_intervention = true WHERE id = $1""",
                ticket_id,
                reason,
                TicketStatus.ESCALATED.value,
            )
            await self._audit("ticket.escalated", by, ticket_id, {"reason": reason}, conn)
        return row["title"], True

    async def find(
        self, status: str | None = None, limit: int = 100, *, ticket_id: int | None = None
    ) -> list[dict[str, Any]]:
        """Tickets newest first, of one status when given (or the one ``ticket_id``)."""
        rows = await self.db.pool.fetch(
            """SELECT t.id, t.title, t.body, p.name AS filed_by, t.status,
                      t.answer_proposal_id, t.human_intervention, t.created_at, t.closed_at
               FROM tickets t JOIN principals p ON p.id = t.filed_by
               WHERE ($1::text IS NULL OR t.status = $1) AND ($3::bigint IS NULL OR t.id = $3)
               ORDER BY t.id DESC LIMIT $2""",
            status,
            limit,
            ticket_id,
        )
        return [
            {
                **dict(r),
                "created_at": r["created_at"].isoformat(),
                "closed_at": r["closed_at"].isoformat() if r["closed_at"] else None,
            }
            for r in rows
        ]

    async def counts(self) -> dict[str, int]:
        """Open, escalated and closed tickets, and those closed with a human's
        intervention."""
        row = await self.db.pool.fetchrow(
            """SELECT count(*) FILTER (WHERE status = $1) AS open,
                      count(*) FILTER (WHERE status = $2) AS escalated,
                      count(*) FILTER (WHERE status = $3) AS closed,
                      count(*) FILTER (WHERE status = $3 AND human_intervention)
                          AS human FROM tickets""",
            TicketStatus.OPEN.value,
            TicketStatus.ESCALATED.value,
            TicketStatus.CLOSED.value,
        )
        return dict(row)

    async def open_at(self, path: str, *, conn: asyncpg.Connection) -> int:
        """The id of the ticket, open or escalated, that a ticket answer's ``path`` names."""
        match = re.fullmatch(r"tickets/(\d{1,18})", path)
        if match is None:
            raise InvalidPayload("a ticket answer's path is tickets/<id>")
        status = await conn.fetchval("SELECT status FROM tickets WHERE id = $1", int(match[1]))
        if status is None:
            raise NotFound(f"ticket {match[1]} is unknown")
        if status == TicketStatus.CLOSED:
            raise Conflict(f"ticket {match[1]} is {status}")
        return int(match[1])

    async def close(
        self,
        ticket_id: int,
        proposal_id: int,
        *,
        human: bool,
        by: Principal,
        conn: asyncpg.Connection,
    ) -> None:
        """Close a ticket with its approved answer, in the caller's transaction."""
        await conn.execute(
            """UPDATE tickets SET status = $4, closed_at = now(),
               answer_proposal_id = $2, human_intervention = human_intervention OR $3
               WHERE id = $1""",
            ticket_id,
            proposal_id,
            human,
            TicketStatus.CLOSED.value,
        )
        await self._audit("ticket.closed", by, ticket_id, {"proposal": proposal_id}, conn)
