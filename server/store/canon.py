"""The canon: every approved version of every document, append-only.

A document's versions are numbered from 1 and never updated in place (the database
refuses it); a merge takes the document's lock, so two approvals of the same path
cannot both become the same next version. Each version records the arena it was merged
in, and a document belongs to one arena (the proposals refuse a path another arena's
canon holds), so who may read it is who may read that arena. The newest version of
each document, with the SHA-256 recorded at its merge, is what checkpoints sign and
exports archive.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import asyncpg

from botarena.arenas.names import ProposalKind, ProposalStatus
from botarena.server.patching import unified_diff
from botarena.server.protocol import ProposalInfo
from botarena.server.store.database import Database


@dataclass(frozen=True)
class CanonEntry:
    """One version of a canon document, and the arena it was merged in."""

    path: str
    version: int
    content: str
    arena: str


class CanonRepository:
    """Canon versions, by path."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def entry(
        self, path: str, version: int | None = None, *, conn: asyncpg.Connection | None = None
    ) -> CanonEntry | None:
        """A document's newest version (or the one asked for), with its arena."""
        row = await (conn or self.db.pool).fetchrow(
            """SELECT version, content, arena FROM canon_versions WHERE path = $1
               AND ($2::int IS NULL OR version = $2) ORDER BY version DESC LIMIT 1""",
            path,
            version,
        )
        return CanonEntry(path, row["version"], row["content"], row["arena"]) if row else None

    async def review_diff(self, proposal: ProposalInfo, head: CanonEntry | None) -> str:
        """What a reviewer reads of ``proposal``: for a merged one, the diff from the version
        before its merge to the version it made (the moderator's text when edited);
        otherwise the diff from ``head`` (the path's newest version) to the proposal, or a
        patch as it came."""
        merged = proposal.merged_version
        if proposal.status is ProposalStatus.APPROVED and merged is not None:
            before = await self.get(proposal.path, merged - 1) if merged > 1 else None
            after = await self.get(proposal.path, merged)
            return unified_diff(
                before[1] if before else "", after[1] if after else "", proposal.path
            )
        if proposal.kind is ProposalKind.PATCH:
            return proposal.content
        return unified_diff(head.content if head else "", proposal.content, proposal.path)

    async def arena_of(self, path: str, *, conn: asyncpg.Connection | None = None) -> str | None:
        """The arena whose canon holds ``path`` (that of its newest version), or None."""
        return await (conn or self.db.pool).fetchval(
            "SELECT arena FROM canon_versions WHERE path = $1 ORDER BY version DESC LIMIT 1",
            path,
        )

    async def get(
        self, path: str, version: int | None = None, *, conn: asyncpg.Connection | None = None
    ) -> tuple[int, str] | None:
        """A document's (version, content): the newest, or the one asked for."""
        row = await (conn or self.db.pool).fetchrow(
            """SELECT version, content FROM canon_versions WHERE path = $1
               AND ($2::int IS NULL OR version = $2) ORDER BY version DESC LIMIT 1""",
            path,
            version,
        )
        return (row["version"], row["content"]) if row else None

    async def heads(self) -> dict[str, dict[str, Any]]:
        """Each document's newest version and the SHA-256 recorded when it was merged."""
        rows = await self.db.pool.fetch(
            """SELECT DISTINCT ON (path) path, version, sha256 FROM canon_versions
               ORDER BY path, version DESC"""
        )
        return {r["path"]: {"version": r["version"], "sha256": r["sha256"]} for r in rows}

    async def newest(self) -> list[dict[str, Any]]:
        """Each document's newest version with its content, by path."""
        rows = await self.db.pool.fetch(
            """SELECT DISTINCT ON (path) path, version, sha256, content FROM canon_versions
               ORDER BY path, version DESC"""
        )
        return [dict(r) for r in rows]

    async def lock(self, path: str, *, conn: asyncpg.Connection) -> None:
        """Hold ``path``'s merge lock until the caller's transaction ends."""
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('botarena.canon:' || $1))", path)

    async def head(self, path: str, *, conn: asyncpg.Connection) -> int:
        """The newest version of ``path`` (0: none yet), in the caller's transaction."""
        return await conn.fetchval(
            "SELECT coalesce(max(version), 0) FROM canon_versions WHERE path = $1", path
        )

    async def add(
        self,
        path: str,
        version: int,
        arena: str,
        content: str,
        *,
        proposal_id: int,
        approved_by: int,
        reverts: int | None = None,
        conn: asyncpg.Connection,
    ) -> str:
        """Append version ``version`` of ``path`` in the caller's transaction (one that
        ``reverts`` another, restoring the text before it); its SHA-256."""
        digest = hashlib.sha256(content.encode()).hexdigest()
        await conn.execute(
            """INSERT INTO canon_versions (path, version, arena, content, sha256,
                                           proposal_id, approved_by, reverts)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8)""",
            path,
            version,
            arena,
            content,
            digest,
            proposal_id,
            approved_by,
            reverts,
        )
        return digest

    async def reverted(
        self, path: str, version: int, *, conn: asyncpg.Connection | None = None
    ) -> int | None:
        """The version of ``path`` that reverted ``version``, or None."""
        return await (conn or self.db.pool).fetchval(
            "SELECT version FROM canon_versions WHERE path = $1 AND reverts = $2", path, version
        )
