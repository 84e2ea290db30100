"""The audit chain's rules: what an entry holds and how each one is bound to the last.

Each entry carries a sequence number (1, 2, 3... without gaps), a time, the actor, the
action (``token.issued``, ``moderation.mute``...), its subject, a canonical JSON detail,
the previous entry's hash and its own hash: SHA-256 over all of those. These functions
touch no database: :class:`botarena.server.store.audit.AuditLog` appends entries in
the transaction of the change they record and walks the chain with
:func:`chain_problem`, which names the first entry that was altered, removed or
re-linked.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

GENESIS = "0" * 64
"""The previous hash of the first entry."""


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


@dataclass(frozen=True)
class Verdict:
    ok: bool
    entries: int
    head: str
    problem: str = ""
    bad_seq: int | None = None


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


def chain_problem(entry: AuditEntry, seq: int, prev_hash: str) -> str | None:
    """Why ``entry`` cannot stand as entry ``seq`` after the hash ``prev_hash``, or None."""
    who = entry.actor or "the system"
    where = f"entry {entry.seq} ({entry.action} by {who} at {entry.at:%Y-%m-%d %H:%M:%S})"
    if entry.seq != seq:
        return f"entry {seq} is missing (the next one is {entry.seq})"
    if entry.prev_hash != prev_hash:
        return f"{where} does not follow the entry before it: the chain was cut or re-linked"
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
        return f"{where} was altered: its content no longer matches its hash"
    return None
