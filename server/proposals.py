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
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from arenas.charter import charters
from server import audit
from server.auth import Principal
from server.patching import PatchError, apply_unified_diff
from server.store import StoreError

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
            head = (
                await conn.fetchval("SELECT max(version) FROM canon_versions WHERE path = $1", path)
                or 0
            )
            if base_version > head:
                raise StoreError(
                    "invalid_payload",
                    f"{path} has no version {base_version} (the canon is at {head})",
                )
            if kind == "patch":
                base = await conn.fetchval(
                    "SELECT content FROM canon_versions WHERE path = $1 AND version = $2",
                    path,
                    base_version,
                )
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
            await conn.execute(
                """UPDATE proposals SET status = 'rejected', reason = $2, reviewed_by = $3,
                   reviewed_at = now() WHERE id = $1""",
                proposal_id,
                reason,
                reviewer.id,
            )
            await audit.append(
                conn,
                "proposal.rejected",
                actor=reviewer.name,
                subject=f"proposal:{proposal_id}",
                detail={"reason": reason},
            )
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
            head = (
                await conn.fetchval(
                    "SELECT max(version) FROM canon_versions WHERE path = $1", row["path"]
                )
                or 0
            )
            subject = f"proposal:{proposal_id}"
            if row["base_version"] != head:
                reason = (
                    f"based on version {row['base_version']} of {row['path']}, but the "
                    f"canon is at version {head}"
                )
                await conn.execute(
                    """UPDATE proposals SET status = 'conflict', reason = $2, reviewed_by = $3,
                       reviewed_at = now() WHERE id = $1""",
                    proposal_id,
                    reason,
                    reviewer.id,
                )
                await audit.append(
                    conn,
                    "proposal.conflict",
                    actor=reviewer.name,
                    subject=subject,
                    detail={"reason": reason},
                )
            else:
                if edited_content is not None:
                    content = edited_content
                elif row["kind"] == "patch":
                    base = await conn.fetchval(
                        "SELECT content FROM canon_versions WHERE path = $1 AND version = $2",
                        row["path"],
                        head,
                    )
                    try:
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
                await audit.append(
                    conn,
                    "proposal.approved",
                    actor=reviewer.name,
                    subject=subject,
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
