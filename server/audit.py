"""The audit log: every state change appended as a hash-chained entry.

Each entry carries a sequence number (1, 2, 3... without gaps), a time, the actor, the
action (``token.issued``, ``moderation.mute``...), its subject, a canonical JSON detail,
the previous entry's hash and its own hash: SHA-256 over all of those. Entries are
appended in the same transaction as the change they record, under a transaction lock so
the chain stays linear with several hub processes; the database refuses to update,
delete or truncate them (triggers in migration 0003). :func:`verify` recomputes the
whole chain and names the first entry that was altered, removed or re-linked.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

GENESIS = "0" * 64
_LOCK_KEY = 0x42_07_A0_D1


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    at: datetime
    actor: str | None
    action: str
    subject: str | None
    detail: str
    prev_hash: str
    hash: str


def canonical_detail(detail: dict[str, Any] | None) -> str:
    return json.dumps(detail or {}, sort_keys=True, separators=(",", ":"), default=str)


def entry_hash(
    seq: int,
    at: datetime,
    actor: str | None,
    action: str,
    subject: str | None,
    detail: str,
    prev_hash: str,
) -> str:
    body = json.dumps(
        [
            seq,
            at.astimezone(UTC).isoformat(timespec="microseconds"),
            actor,
            action,
            subject,
            detail,
            prev_hash,
        ],
        separators=(",", ":"),
    )
    return hashlib.sha256(body.encode()).hexdigest()


async def append(
    conn: asyncpg.Connection,
    action: str,
    *,
    actor: str | None = None,
    subject: str | None = None,
    detail: dict[str, Any] | None = None,
) -> int:
    """Append an entry inside the caller's transaction; return its sequence number."""
    await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
    last = await conn.fetchrow("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
    seq = (last["seq"] if last else 0) + 1
    prev = last["hash"] if last else GENESIS
    at = datetime.now(UTC)
    text = canonical_detail(detail)
    digest = entry_hash(seq, at, actor, action, subject, text, prev)
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
        digest,
    )
    return seq


@dataclass(frozen=True)
class Verdict:
    ok: bool
    entries: int
    head: str
    problem: str = ""
    bad_seq: int | None = None


async def verify(conn: asyncpg.Connection, batch: int = 5000) -> Verdict:
    """Recompute the chain from the first entry; stop at the first broken one."""
    expected_seq, prev, count = 1, GENESIS, 0
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        async for row in conn.cursor("SELECT * FROM audit_log ORDER BY seq", prefetch=batch):
            entry = AuditEntry(**dict(row))
            who = entry.actor or "the system"
            where = f"entry {entry.seq} ({entry.action} by {who} at {entry.at:%Y-%m-%d %H:%M:%S})"
            if entry.seq != expected_seq:
                return Verdict(
                    False,
                    count,
                    prev,
                    f"entry {expected_seq} is missing (the next one is {entry.seq})",
                    expected_seq,
                )
            if entry.prev_hash != prev:
                return Verdict(
                    False,
                    count,
                    prev,
                    f"{where} does not follow the entry before it: the chain was cut or re-linked",
                    entry.seq,
                )
            recomputed = entry_hash(
                entry.seq,
                entry.at,
                entry.actor,
                entry.action,
                entry.subject,
                entry.detail,
                entry.prev_hash,
            )
            if recomputed != entry.hash:
                return Verdict(
                    False,
                    count,
                    prev,
                    f"{where} was altered: its content no longer matches its hash",
                    entry.seq,
                )
            prev, expected_seq, count = entry.hash, expected_seq + 1, count + 1
    return Verdict(True, count, prev)


async def entries(conn: asyncpg.Connection, limit: int = 50) -> list[AuditEntry]:
    rows = await conn.fetch("SELECT * FROM audit_log ORDER BY seq DESC LIMIT $1", limit)
    return [AuditEntry(**dict(r)) for r in rows]
