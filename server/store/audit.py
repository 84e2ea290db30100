"""The audit log's table: entries appended in the transaction they record, and the walk
that verifies the chain.

An entry is appended under a transaction lock, so the chain stays linear when several
hub processes write at once; the database refuses to update, delete or truncate entries
(triggers in migration 0003). :meth:`AuditLog.verify` reads the whole chain in one
snapshot and stops at the first entry :func:`~botarena.server.audit.chain_problem`
refuses.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg

from botarena.server.audit import (
    GENESIS,
    AuditEntry,
    Verdict,
    canonical_detail,
    chain_problem,
    entry_hash,
)
from botarena.server.store.database import Database

_LOCK_KEY = 0x42_07_A0_D1


class AuditLog:
    """The hash-chained audit entries."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def append(
        self,
        action: str,
        *,
        actor: str | None = None,
        subject: str | None = None,
        detail: dict[str, Any] | None = None,
        conn: asyncpg.Connection | None = None,
    ) -> int:
        """Append an entry (inside the transaction on ``conn`` when given); its sequence."""
        async with self.db.transaction(conn) as conn:
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
            last = await conn.fetchrow("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
            seq = (last["seq"] if last else 0) + 1
            prev = last["hash"] if last else GENESIS
            at = datetime.now(UTC)
            text = canonical_detail(detail)
            await conn.execute(
                """INSERT INTO audit_log (seq, at, actor, action, subject, detail, prev_hash, hash)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8)""",
                seq,
                at,
                actor,
                action,
                subject,
                text,
                prev,
                entry_hash(seq, at, actor, action, subject, text, prev),
            )
        return seq

    async def keys(self, actions: list[str], field: str) -> set[str]:
        """The ``field`` of the detail of every entry of one of ``actions`` (to append
        what a command recorded elsewhere first exactly once)."""
        rows = await self.db.pool.fetch(
            "SELECT detail::jsonb ->> $2 AS key FROM audit_log WHERE action = ANY($1)",
            actions,
            field,
        )
        return {row["key"] for row in rows if row["key"] is not None}

    async def verify(self, batch: int = 5000) -> Verdict:
        """Recompute the chain from the first entry; stop at the first broken one."""
        seq, prev, count = 1, GENESIS, 0
        async with (
            self.db.pool.acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            async for row in conn.cursor("SELECT * FROM audit_log ORDER BY seq", prefetch=batch):
                entry = AuditEntry(**dict(row))
                problem = chain_problem(entry, seq, prev)
                if problem is not None:
                    return Verdict(False, count, prev, problem, seq)
                prev, seq, count = entry.hash, seq + 1, count + 1
        return Verdict(True, count, prev)

    async def entries(self, limit: int = 50) -> list[AuditEntry]:
        """The newest entries, newest first."""
        rows = await self.db.pool.fetch("SELECT * FROM audit_log ORDER BY seq DESC LIMIT $1", limit)
        return [AuditEntry(**dict(r)) for r in rows]

    async def count(self) -> int:
        """How many entries the chain holds (its newest ``seq``; entries are never removed)."""
        return await self.db.pool.fetchval("SELECT coalesce(max(seq), 0) FROM audit_log")

    async def hash_at(self, seq: int) -> str | None:
        """The hash of entry ``seq``, or None when there is no such entry."""
        return await self.db.pool.fetchval("SELECT hash FROM audit_log WHERE seq = $1", seq)
