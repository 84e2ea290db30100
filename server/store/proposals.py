"""Proposals, the working copy: agents propose, humans decide, approved work becomes canon.

A proposal names an arena, a kind the arena's charter allows, a document path, the canon
version it was based on (0 for a new document) and its content: the whole text, or for
``patch`` a unified diff against that version. Review is for humans only (the hub
checks roles): reject with a reason, approve, or edit then approve. Approving appends a
new canon version unless the canon moved on since the proposal's base version, in which
case the proposal is marked ``conflict`` and nothing is merged; approving a ticket's
answer closes the ticket. Every step is audited in the same transaction.

A canon document belongs to one arena: a proposal on a path that another arena's canon
holds is refused (before anything about that document is told), and ``tickets/`` is
kept for ticket answers. A stored proposal whose path is not a safe canon path (one
made before paths were checked as they are now) cannot be approved: it is refused with
``invalid_payload`` and can only be rejected.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import asyncpg

from botarena.arenas.charter import charters
from botarena.arenas.names import ProposalKind, ProposalStatus
from botarena.server.auth import Principal
from botarena.server.errors import (
    Conflict,
    Forbidden,
    InvalidPayload,
    NotFound,
    TooLarge,
    UnknownRoom,
)
from botarena.server.patching import PatchError, apply_unified_diff
from botarena.server.protocol import CANON_PATH_PATTERN, CanonReverted, ProposalInfo, Role
from botarena.server.store.audit import AuditLog
from botarena.server.store.canon import CanonRepository
from botarena.server.store.database import Database
from botarena.server.store.rooms import RoomRepository
from botarena.server.store.tickets import TicketRepository

MAX_CONTENT_CHARS = 200_000

_TICKETS = "tickets/"
"""The canon folder of ticket answers (:func:`~botarena.arenas.names.ticket_path`)."""


_SELECT = """SELECT p.id, p.arena, a.name AS author, p.kind, p.path, p.base_version, p.title,
                    p.content, p.status, p.reason, p.edited, r.name AS reviewed_by,
                    p.merged_version, p.created_at, p.flags
             FROM proposals p JOIN principals a ON a.id = p.author_id
             LEFT JOIN principals r ON r.id = p.reviewed_by"""


def _proposal(row: asyncpg.Record) -> ProposalInfo:
    return ProposalInfo.model_validate(dict(row))


class ProposalRepository:
    """Proposals and their reviews."""

    def __init__(
        self,
        db: Database,
        audit: AuditLog,
        rooms: RoomRepository,
        canon: CanonRepository,
        tickets: TicketRepository,
    ) -> None:
        self.db = db
        self.audit = audit
        self.rooms = rooms
        self.canon = canon
        self.tickets = tickets

    async def create(
        self,
        author: Principal,
        *,
        arena: str,
        kind: str,
        path: str,
        base_version: int,
        title: str,
        content: str,
        flags: Sequence[str] = (),
    ) -> ProposalInfo:
        charter = charters().get(arena)
        if charter is None:
            raise UnknownRoom(f"{arena!r} is not an arena")
        if kind not in charter.proposals:
            raise Forbidden(f"{arena} may propose {', '.join(charter.proposals)}, not {kind}")
        if len(content) > MAX_CONTENT_CHARS:
            raise TooLarge(
                f"content is {len(content)} characters; the limit is {MAX_CONTENT_CHARS}"
            )
        if not author.supervises and not await self.rooms.is_member(arena, author.id):
            raise Forbidden(f"{author.name} is not admitted to {arena}")
        if kind != ProposalKind.TICKET_ANSWER and path.startswith(_TICKETS):
            raise InvalidPayload(f"{_TICKETS} holds ticket answers only")
        async with self.db.transaction() as conn:
            owner = await self.canon.arena_of(path, conn=conn)
            if owner is not None and owner != arena:  # told before its version: no peeking
                raise Forbidden(f"{path} belongs to another arena's canon")
            head = await self.canon.head(path, conn=conn)
            if base_version > head:
                raise InvalidPayload(
                    f"{path} has no version {base_version} (the canon is at {head})"
                )
            if kind == ProposalKind.TICKET_ANSWER:
                await self.tickets.open_at(path, conn=conn)
            if kind == ProposalKind.PATCH:
                base = await self.canon.get(path, base_version, conn=conn)
                if base is None:
                    raise InvalidPayload("a patch needs an existing version")
                try:
                    apply_unified_diff(base[1], content)
                except PatchError as exc:
                    raise InvalidPayload(
                        f"the diff does not apply to {path} v{base_version}: {exc}"
                    ) from None
            proposal_id = await conn.fetchval(
                """INSERT INTO proposals (arena, author_id, kind, path, base_version, title,
                                          content, flags)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id""",
                arena,
                author.id,
                kind,
                path,
                base_version,
                title,
                content,
                list(flags),
            )
            await self.audit.append(
                "proposal.created",
                actor=author.name,
                subject=f"proposal:{proposal_id}",
                detail={
                    "arena": arena,
                    "kind": kind,
                    "path": path,
                    "base_version": base_version,
                    "sha256": hashlib.sha256(content.encode()).hexdigest(),
                    **({"flags": list(flags)} if flags else {}),
                },
                conn=conn,
            )
            return _proposal(await conn.fetchrow(f"{_SELECT} WHERE p.id = $1", proposal_id))

    async def get(self, proposal_id: int) -> ProposalInfo | None:
        row = await self.db.pool.fetchrow(f"{_SELECT} WHERE p.id = $1", proposal_id)
        return _proposal(row) if row else None

    async def find(
        self, *, arena: str | None = None, status: str | None = None, limit: int = 100
    ) -> list[ProposalInfo]:
        """Proposals newest first, of one arena and one status when given."""
        rows = await self.db.pool.fetch(
            f"""{_SELECT} WHERE ($1::text IS NULL OR p.arena = $1)
                AND ($2::text IS NULL OR p.status = $2) ORDER BY p.id DESC LIMIT $3""",
            arena,
            status,
            limit,
        )
        return [_proposal(r) for r in rows]

    async def counts(self) -> list[tuple[str, str, int]]:
        """(arena, status, proposals) for every arena and status with a proposal."""
        rows = await self.db.pool.fetch(
            "SELECT arena, status, count(*) AS n FROM proposals GROUP BY arena, status"
        )
        return [(r["arena"], r["status"], r["n"]) for r in rows]

    async def sync(self, actor: str = "operator") -> list[ProposalInfo]:
        """Bring the working copy in line with the canon: every pending proposal based on
        an older version than the canon's current one is flagged as a conflict (its
        author must propose again from the new version). Returns those flagged."""
        async with self.db.transaction() as conn:
            stale = await conn.fetch(
                """UPDATE proposals p SET status = $1,
                       reason = 'based on version ' || p.base_version || ' of ' || p.path
                                || ', but the canon is at version ' || c.head
                   FROM (SELECT path, max(version) AS head FROM canon_versions GROUP BY path) c
                   WHERE p.status = $2 AND p.kind <> $3
                     AND c.path = p.path AND p.base_version < c.head
                   RETURNING p.id""",
                ProposalStatus.CONFLICT.value,
                ProposalStatus.PENDING.value,
                ProposalKind.TICKET_ANSWER.value,
            )
            await self.audit.append(
                "canon.sync",
                actor=actor,
                subject="working copy",
                detail={"flagged": [r["id"] for r in stale]},
                conn=conn,
            )
        flagged = [await self.get(r["id"]) for r in stale]
        return [p for p in flagged if p is not None]

    async def reject(self, proposal_id: int, reviewer: Principal, reason: str) -> ProposalInfo:
        if not reason.strip():
            raise InvalidPayload("a rejection needs a reason")
        async with self.db.transaction() as conn:
            await self._pending(proposal_id, conn=conn)
            await self._close(proposal_id, ProposalStatus.REJECTED, reason, reviewer, conn=conn)
        return await self._reviewed(proposal_id)

    async def approve(
        self, proposal_id: int, reviewer: Principal, edited_content: str | None = None
    ) -> ProposalInfo:
        """Merge into the canon as a new version, or mark a conflict when the canon moved."""
        async with self.db.transaction() as conn:
            row = await self._pending(proposal_id, conn=conn)
            path = row["path"]
            if not re.fullmatch(CANON_PATH_PATTERN, path):
                raise InvalidPayload(
                    f"proposal {proposal_id}'s path {path[:200]!r} is not a safe canon path: "
                    "it cannot be merged; reject it"
                )
            await self.canon.lock(path, conn=conn)
            owner = await self.canon.arena_of(path, conn=conn)
            if owner is not None and owner != row["arena"]:
                raise Conflict(
                    f"{path} belongs to the {owner} arena's canon, not {row['arena']}'s: "
                    "reject the proposal"
                )
            head = await self.canon.head(path, conn=conn)
            if row["base_version"] != head:
                reason = (
                    f"based on version {row['base_version']} of {path}, but the "
                    f"canon is at version {head}"
                )
                await self._close(proposal_id, ProposalStatus.CONFLICT, reason, reviewer, conn=conn)
            else:
                content = await self._merged_content(row, head, edited_content, conn=conn)
                digest = await self.canon.add(
                    path,
                    head + 1,
                    row["arena"],
                    content,
                    proposal_id=proposal_id,
                    approved_by=reviewer.id,
                    conn=conn,
                )
                await conn.execute(
                    """UPDATE proposals SET status = $5, edited = $2, reviewed_by = $3,
                       reviewed_at = now(), merged_version = $4 WHERE id = $1""",
                    proposal_id,
                    edited_content is not None,
                    reviewer.id,
                    head + 1,
                    ProposalStatus.APPROVED.value,
                )
                if row["kind"] == ProposalKind.TICKET_ANSWER:
                    ticket_id = await self.tickets.open_at(path, conn=conn)
                    author_supervises = await conn.fetchval(
                        "SELECT role <> $2 FROM principals WHERE id = $1",
                        row["author_id"],
                        Role.AGENT.value,
                    )
                    human = edited_content is not None or author_supervises
                    await self.tickets.close(
                        ticket_id, proposal_id, human=human, by=reviewer, conn=conn
                    )
                await self.audit.append(
                    "proposal.approved",
                    actor=reviewer.name,
                    subject=f"proposal:{proposal_id}",
                    detail={
                        "path": path,
                        "version": head + 1,
                        "sha256": digest,
                        "edited": edited_content is not None,
                    },
                    conn=conn,
                )
        return await self._reviewed(proposal_id)

    async def revert(self, proposal_id: int, moderator: Principal, reason: str) -> CanonReverted:
        """Undo an approval the only way the canon allows: a new version of the document
        with the text it had before the proposal's merge (empty when the merge made it),
        audited. Only the document's newest version can be reverted; a ticket's answer is
        not (the ticket was closed by it: file the ticket again)."""
        async with self.db.transaction() as conn:
            row = await conn.fetchrow(
                "SELECT path, arena, kind, status, merged_version FROM proposals WHERE id = $1",
                proposal_id,
            )
            if row is None:
                raise NotFound(f"no proposal {proposal_id}")
            if row["status"] != ProposalStatus.APPROVED or row["merged_version"] is None:
                raise Conflict(f"proposal {proposal_id} is {row['status']}: nothing was merged")
            if row["kind"] == ProposalKind.TICKET_ANSWER:
                raise InvalidPayload("a ticket's answer is not reverted: file the ticket again")
            path, merged = row["path"], row["merged_version"]
            await self.canon.lock(path, conn=conn)
            if await self.canon.reverted(path, merged, conn=conn):
                raise Conflict(f"v{merged} of {path} is reverted already")
            head = await self.canon.head(path, conn=conn)
            if head != merged:
                raise Conflict(
                    f"{path} is at v{head}: only its newest version can be reverted "
                    f"(v{merged} came before v{head}; revert that first)"
                )
            before = await self.canon.get(path, merged - 1, conn=conn) if merged > 1 else None
            digest = await self.canon.add(
                path,
                head + 1,
                row["arena"],
                before[1] if before else "",
                proposal_id=proposal_id,
                approved_by=moderator.id,
                reverts=merged,
                conn=conn,
            )
            restored = before[0] if before else 0
            await self.audit.append(
                "canon.reverted",
                actor=moderator.name,
                subject=f"proposal:{proposal_id}",
                detail={
                    "path": path,
                    "version": head + 1,
                    "reverts": merged,
                    "restores": restored,
                    "sha256": digest,
                    "reason": reason,
                },
                conn=conn,
            )
        return CanonReverted(
            path=path,
            arena=row["arena"],
            version=head + 1,
            reverts=merged,
            restores=restored,
            proposal=proposal_id,
        )

    async def _merged_content(
        self,
        row: asyncpg.Record,
        head: int,
        edited_content: str | None,
        *,
        conn: asyncpg.Connection,
    ) -> str:
        """What approving ``row`` puts in the canon: the edit, the patched head, or the
        proposal's own content."""
        if edited_content is not None:
            return edited_content
        if row["kind"] != ProposalKind.PATCH:
            return row["content"]
        base = await self.canon.get(row["path"], head, conn=conn)
        try:
            return apply_unified_diff(base[1] if base else "", row["content"])
        except PatchError as exc:
            raise InvalidPayload(f"the diff no longer applies: {exc}") from None

    async def _pending(self, proposal_id: int, *, conn: asyncpg.Connection) -> asyncpg.Record:
        """The proposal's row, locked for its review; refused unless it is pending."""
        row = await conn.fetchrow("SELECT * FROM proposals WHERE id = $1 FOR UPDATE", proposal_id)
        if row is None:
            raise NotFound(f"no proposal {proposal_id}")
        if row["status"] != ProposalStatus.PENDING:
            raise Conflict(f"proposal {proposal_id} is already {row['status']}")
        return row

    async def _close(
        self,
        proposal_id: int,
        status: ProposalStatus,
        reason: str,
        reviewer: Principal,
        *,
        conn: asyncpg.Connection,
    ) -> None:
        """End a review without a merge (rejected, conflict), audited."""
        await conn.execute(
            """UPDATE proposals SET status = $2, reason = $3, reviewed_by = $4,
               reviewed_at = now() WHERE id = $1""",
            proposal_id,
            status.value,
            reason,
            reviewer.id,
        )
        await self.audit.append(
            f"proposal.{status.value}",
            actor=reviewer.name,
            subject=f"proposal:{proposal_id}",
            detail={"reason": reason},
            conn=conn,
        )

    async def _reviewed(self, proposal_id: int) -> ProposalInfo:
        proposal = await self.get(proposal_id)
        assert proposal is not None, "a reviewed proposal is never deleted"
        return proposal
