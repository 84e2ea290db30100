"""Proposals and the canon: agents propose, humans decide, approved work becomes canon.

A proposal (the working copy) names an arena, a kind the arena's charter allows, a
document path, the canon version it was based on (0 for a new document) and its
content: the whole text, or for ``patch`` a unified diff against that version. Review
is for humans only (the hub checks roles): reject with a reason, approve, or edit then
approve. Approving appends a new canon version (the canon is never updated in place:
the database refuses it) unless the canon moved on since the proposal's base version,
in which case the proposal is marked ``conflict`` and nothing is merged. Every step is
appended to the audit chain in the same transaction.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from botarena.arenas.charter import charters
from botarena.server import audit
from botarena.server.auth import Principal
from botarena.server.patching import PatchError, apply_unified_diff
from botarena.server.store import StoreError

MAX_CONTENT_CHARS = 200_000


@dataclass(frozen=True)
class Proposal:
    id: int
    arena: str
    author: str
    kind: str
    path: str
    base_version: int
    title: str
    content: str
    status: str
    reason: str
    edited: bool
    reviewed_by: str | None
    merged_version: int | None
    created_at: datetime

    def public(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["created_at"] = self.created_at.isoformat()
        return data


_SELECT = """SELECT p.id, p.arena, a.name AS author, p.kind, p.path, p.base_version, p.title,
                    p.content, p.status, p.reason, p.edited, r.name AS reviewed_by,
                    p.merged_version, p.created_at
             FROM proposals p JOIN principals a ON a.id = p.author_id
             LEFT JOIN principals r ON r.id = p.reviewed_by"""


def _proposal(row: asyncpg.Record) -> Proposal:
    return Proposal(**dict(row))


class ProposalStore:
    """Proposals and canon versions, in the hub's database."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def canon(self, path: str, version: int | None = None) -> tuple[int, str] | None:
        """A canon document's (version, content): the newest, or the one asked for."""
        row = await self.pool.fetchrow(
            """SELECT version, content FROM canon_versions WHERE path = $1
               AND ($2::int IS NULL OR version = $2) ORDER BY version DESC LIMIT 1""",
            path,
            version,
        )
        return (row["version"], row["content"]) if row else None

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
    ) -> Proposal:
        charter = charters().get(arena)
        if charter is None:
            raise StoreError("unknown_room", f"{arena!r} is not an arena")
        if kind not in charter.proposals:
            raise StoreError(
                "forbidden", f"{arena} may propose {', '.join(charter.proposals)}, not {kind}"
            )
        if len(content) > MAX_CONTENT_CHARS:
            raise StoreError(
                "too_large",
                f"content is {len(content)} characters; the limit is {MAX_CONTENT_CHARS}",
            )
        async with self.pool.acquire() as conn, conn.transaction():
            if not author.supervises and not await conn.fetchval(
                "SELECT 1 FROM room_members WHERE room = $1 AND principal_id = $2",
                arena,
                author.id,
            ):
                raise StoreError("forbidden", f"{author.name} is not admitted to {arena}")
            head = await self._head(conn, path)
            if base_version > head:
                raise StoreError(
                    "invalid_payload",
                    f"{path} has no version {base_version} (the canon is at {head})",
                )
            if kind == "ticket_answer":
                await self._open_ticket(conn, path)
            if kind == "patch":
                base = await self._content(conn, path, base_version)
                if base is None:
                    raise StoreError("invalid_payload", "a patch needs an existing version")
                try:
                    apply_unified_diff(base, content)
                except PatchError as exc:
                    raise StoreError(
                        "invalid_payload",
                        f"the diff does not apply to {path} v{base_version}: {exc}",
                    ) from None
            proposal_id = await conn.fetchval(
                """INSERT INTO proposals (arena, author_id, kind, path, base_version, title,
                                          content) VALUES ($1, $2, $3, $4, $5, $6, $7)
                   RETURNING id""",
                arena,
                author.id,
                kind,
                path,
                base_version,
                title,
                content,
            )
            await audit.append(
                conn,
                "proposal.created",
                actor=author.name,
                subject=f"proposal:{proposal_id}",
                detail={
                    "arena": arena,
                    "kind": kind,
                    "path": path,
                    "base_version": base_version,
                    "sha256": hashlib.sha256(content.encode()).hexdigest(),
                },
            )
            return _proposal(await conn.fetchrow(f"{_SELECT} WHERE p.id = $1", proposal_id))

    @staticmethod
    async def _open_ticket(conn: asyncpg.Connection, path: str) -> int:
        match = re.fullmatch(r"tickets/(\d{1,18})", path)
        if match is None:
            raise StoreError("invalid_payload", "a ticket answer's path is tickets/<id>")
        status = await conn.fetchval("SELECT status FROM tickets WHERE id = $1", int(match[1]))
        if status != "open":
            raise StoreError(
                "not_found" if status is None else "conflict",
                f"ticket {match[1]} is {status or 'unknown'}",
            )
        return int(match[1])

    async def file_ticket(self, filer: Principal, title: str, body: str) -> int:
        async with self.pool.acquire() as conn, conn.transaction():
            ticket_id = await conn.fetchval(
                "INSERT INTO tickets (title, body, filed_by) VALUES ($1, $2, $3) RETURNING id",
                title,
                body,
                filer.id,
            )
            await audit.append(
                conn,
                "ticket.filed",
                actor=filer.name,
                subject=f"ticket:{ticket_id}",
                detail={"title": title},
            )
        return ticket_id

    async def tickets(self, status: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        rows = await self.pool.fetch(
            """SELECT t.id, t.title, t.body, p.name AS filed_by, t.status,
                      t.answer_proposal_id, t.human_intervention, t.created_at, t.closed_at
               FROM tickets t JOIN principals p ON p.id = t.filed_by
               WHERE $1::text IS NULL OR t.status = $1 ORDER BY t.id DESC LIMIT $2""",
            status,
            limit,
        )
        return [
            {
                **dict(r),
                "created_at": r["created_at"].isoformat(),
                "closed_at": r["closed_at"].isoformat() if r["closed_at"] else None,
            }
            for r in rows
        ]

    async def stats(self) -> dict[str, Any]:
        """Proposal counts per arena and status, and tickets with their human
        intervention, for /metrics."""
        by_arena = await self.pool.fetch(
            "SELECT arena, status, count(*) AS n FROM proposals GROUP BY arena, status"
        )
        tickets = await self.pool.fetchrow(
            """SELECT count(*) FILTER (WHERE status = 'open') AS open,
                      count(*) FILTER (WHERE status = 'closed') AS closed,
                      count(*) FILTER (WHERE status = 'closed' AND human_intervention)
                          AS human FROM tickets"""
        )
        return {
            "proposals": [(r["arena"], r["status"], r["n"]) for r in by_arena],
            "tickets": dict(tickets),
        }

    async def sync(self, actor: str = "operator") -> list[Proposal]:
        """Bring the working copy in line with the canon: every pending proposal based on
        an older version than the canon's current one is flagged as a conflict (its
        author must propose again from the new version). Returns those flagged."""
        async with self.pool.acquire() as conn, conn.transaction():
            stale = await conn.fetch(
                """UPDATE proposals p SET status = 'conflict',
                       reason = 'based on version ' || p.base_version || ' of ' || p.path
                                || ', but the canon is at version ' || c.head
                   FROM (SELECT path, max(version) AS head FROM canon_versions GROUP BY path) c
                   WHERE p.status = 'pending' AND p.kind <> 'ticket_answer'
                     AND c.path = p.path AND p.base_version < c.head
                   RETURNING p.id"""
            )
            await audit.append(
                conn,
                "canon.sync",
                actor=actor,
                subject="working copy",
                detail={"flagged": [r["id"] for r in stale]},
            )
        flagged = [await self.get(r["id"]) for r in stale]
        return [p for p in flagged if p is not None]

    async def get(self, proposal_id: int) -> Proposal | None:
        row = await self.pool.fetchrow(f"{_SELECT} WHERE p.id = $1", proposal_id)
        return _proposal(row) if row else None

    async def list(
        self, *, arena: str | None = None, status: str | None = None, limit: int = 100
    ) -> list[Proposal]:
        rows = await self.pool.fetch(
            f"""{_SELECT} WHERE ($1::text IS NULL OR p.arena = $1)
                AND ($2::text IS NULL OR p.status = $2) ORDER BY p.id DESC LIMIT $3""",
            arena,
            status,
            limit,
        )
        return [_proposal(r) for r in rows]

    @staticmethod
    async def _head(conn: asyncpg.Connection, path: str) -> int:
        """The canon's newest version of ``path`` (0: none yet)."""
        return await conn.fetchval(
            "SELECT coalesce(max(version), 0) FROM canon_versions WHERE path = $1", path
        )

    @staticmethod
    async def _content(conn: asyncpg.Connection, path: str, version: int) -> str | None:
        return await conn.fetchval(
            "SELECT content FROM canon_versions WHERE path = $1 AND version = $2", path, version
        )

    @staticmethod
    async def _close(
        conn: asyncpg.Connection, proposal_id: int, status: str, reason: str, reviewer: Principal
    ) -> None:
        """End a review without a merge (rejected, conflict), audited."""
        await conn.execute(
            """UPDATE proposals SET status = $2, reason = $3, reviewed_by = $4,
               reviewed_at = now() WHERE id = $1""",
            proposal_id,
            status,
            reason,
            reviewer.id,
        )
        await audit.append(
            conn,
            f"proposal.{status}",
            actor=reviewer.name,
            subject=f"proposal:{proposal_id}",
            detail={"reason": reason},
        )

    async def _pending(self, conn: asyncpg.Connection, proposal_id: int) -> asyncpg.Record:
        row = await conn.fetchrow("SELECT * FROM proposals WHERE id = $1 FOR UPDATE", proposal_id)
        if row is None:
            raise StoreError("not_found", f"no proposal {proposal_id}")
        if row["status"] != "pending":
            raise StoreError("conflict", f"proposal {proposal_id} is already {row['status']}")
        return row

    async def reject(self, proposal_id: int, reviewer: Principal, reason: str) -> Proposal:
        if not reason.strip():
            raise StoreError("invalid_payload", "a rejection needs a reason")
        async with self.pool.acquire() as conn, conn.transaction():
            await self._pending(conn, proposal_id)
            await self._close(conn, proposal_id, "rejected", reason, reviewer)
        proposal = await self.get(proposal_id)
        assert proposal is not None
        return proposal

    async def approve(
        self, proposal_id: int, reviewer: Principal, edited_content: str | None = None
    ) -> Proposal:
        """Merge into the canon as a new version, or mark a conflict when the canon moved."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await self._pending(conn, proposal_id)
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtext('botarena.canon:' || $1))", row["path"]
            )
            head = await self._head(conn, row["path"])
            if row["base_version"] != head:
                reason = (
                    f"based on version {row['base_version']} of {row['path']}, but the "
                    f"canon is at version {head}"
                )
                await self._close(conn, proposal_id, "conflict", reason, reviewer)
            else:
                if edited_content is not None:
                    content = edited_content
                elif row["kind"] == "patch":
                    try:
                        base = await self._content(conn, row["path"], head) or ""
                        content = apply_unified_diff(base, row["content"])
                    except PatchError as exc:
                        raise StoreError(
                            "invalid_payload", f"the diff no longer applies: {exc}"
                        ) from None
                else:
                    content = row["content"]
                digest = hashlib.sha256(content.encode()).hexdigest()
                await conn.execute(
                    """INSERT INTO canon_versions (path, version, arena, content, sha256,
                                                   proposal_id, approved_by)
                       VALUES ($1, $2, $3, $4, $5, $6, $7)""",
                    row["path"],
                    head + 1,
                    row["arena"],
                    content,
                    digest,
                    proposal_id,
                    reviewer.id,
                )
                await conn.execute(
                    """UPDATE proposals SET status = 'approved', edited = $2, reviewed_by = $3,
                       reviewed_at = now(), merged_version = $4 WHERE id = $1""",
                    proposal_id,
                    edited_content is not None,
                    reviewer.id,
                    head + 1,
                )
                if row["kind"] == "ticket_answer":
                    ticket_id = await self._open_ticket(conn, row["path"])
                    author_supervises = await conn.fetchval(
                        "SELECT role <> 'agent' FROM principals WHERE id = $1", row["author_id"]
                    )
                    await conn.execute(
                        """UPDATE tickets SET status = 'closed', closed_at = now(),
                           answer_proposal_id = $2, human_intervention = $3 WHERE id = $1""",
                        ticket_id,
                        proposal_id,
                        edited_content is not None or author_supervises,
                    )
                    await audit.append(
                        conn,
                        "ticket.closed",
                        actor=reviewer.name,
                        subject=f"ticket:{ticket_id}",
                        detail={"proposal": proposal_id},
                    )
                await audit.append(
                    conn,
                    "proposal.approved",
                    actor=reviewer.name,
                    subject=f"proposal:{proposal_id}",
                    detail={
                        "path": row["path"],
                        "version": head + 1,
                        "sha256": digest,
                        "edited": edited_content is not None,
                    },
                )
        proposal = await self.get(proposal_id)
        assert proposal is not None
        return proposal
