"""Principals and their tokens: who exists, with which role, and how each one connects.

A token is issued with its principal (created on first use and admitted to the arenas
named) and stored only as a hash; issuing is audited. Revoking tokens is a control
action: every hub process drops the sessions those tokens opened.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from botarena.arenas.names import ARENAS
from botarena.server.auth import Principal, hash_token, new_token
from botarena.server.errors import Conflict, InvalidPayload, Unauthorized, UnknownRoom
from botarena.server.protocol import Role
from botarena.server.store.audit import AuditLog
from botarena.server.store.database import Database
from botarena.server.store.moderation import ModerationRepository


@dataclass(frozen=True)
class TokenInfo:
    id: int
    principal: str
    role: Role
    created_at: datetime
    revoked_at: datetime | None


_COLUMNS = "id, name, role, may_create_groups, ai_moderator"


def _principal(row: asyncpg.Record) -> Principal:
    return Principal(
        row["id"], row["name"], Role(row["role"]), row["may_create_groups"], row["ai_moderator"]
    )


class PrincipalRepository:
    """Principals and their tokens."""

    def __init__(self, db: Database, audit: AuditLog, moderation: ModerationRepository) -> None:
        self.db = db
        self.audit = audit
        self.moderation = moderation

    async def issue_token(
        self,
        name: str,
        role: Role,
        *,
        arenas: Sequence[str] = (),
        may_create_groups: bool = False,
        ai_moderator: bool = False,
        issued_by: str = "operator",
    ) -> tuple[Principal, str]:
        """Create the principal if new, admit it to ``arenas``, and return a fresh token.

        An existing principal keeps its role: asking for another role is refused rather
        than silently promoting or demoting it. ``may_create_groups`` and ``ai_moderator``
        (an agent that may flag and briefly mute other agents) are granted, never taken
        away, here.
        """
        if ai_moderator and role is not Role.AGENT:
            raise InvalidPayload("only an agent is made an AI moderator")
        unknown = sorted(set(arenas) - set(ARENAS))
        if unknown:
            raise UnknownRoom(f"not an arena: {', '.join(unknown)}")
        token = new_token()
        async with self.db.transaction() as conn:
            row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM principals WHERE name = $1", name)
            if row is None:
                row = await conn.fetchrow(
                    f"""INSERT INTO principals (name, role, may_create_groups, ai_moderator)
                        VALUES ($1, $2, $3, $4) RETURNING {_COLUMNS}""",
                    name,
                    role.value,
                    may_create_groups,
                    ai_moderator,
                )
            elif row["role"] != role.value:
                raise Conflict(f"{name} exists with role {row['role']}, not {role.value}")
            elif (may_create_groups and not row["may_create_groups"]) or (
                ai_moderator and not row["ai_moderator"]
            ):
                row = await conn.fetchrow(
                    f"""UPDATE principals SET may_create_groups = may_create_groups OR $2,
                                              ai_moderator = ai_moderator OR $3
                        WHERE id = $1 RETURNING {_COLUMNS}""",
                    row["id"],
                    may_create_groups,
                    ai_moderator,
                )
            principal = _principal(row)
            await conn.executemany(
                """INSERT INTO room_members (room, principal_id) VALUES ($1, $2)
                   ON CONFLICT DO NOTHING""",
                [(arena, principal.id) for arena in arenas],
            )
            token_id = await conn.fetchval(
                "INSERT INTO tokens (principal_id, token_hash) VALUES ($1, $2) RETURNING id",
                principal.id,
                hash_token(token),
            )
            await self.audit.append(
                "token.issued",
                actor=issued_by,
                subject=name,
                detail={
                    "role": role.value,
                    "token_id": token_id,
                    "arenas": sorted(arenas),
                    **({"ai_moderator": True} if principal.ai_moderator else {}),
                },
                conn=conn,
            )
        return principal, token

    async def authenticate(self, token: str) -> tuple[Principal, int]:
        """The principal and token id a token belongs to; :class:`Unauthorized` says why it
        is refused."""
        row = await self.db.pool.fetchrow(
            """SELECT p.id, p.name, p.role, p.may_create_groups, p.ai_moderator,
                      t.id AS token_id, t.revoked_at
               FROM tokens t JOIN principals p ON p.id = t.principal_id
               WHERE t.token_hash = $1""",
            hash_token(token),
        )
        if row is None:
            raise Unauthorized("unknown token")
        if row["revoked_at"] is not None:
            raise Unauthorized("token revoked")
        return _principal(row), row["token_id"]

    async def get(self, name: str) -> Principal | None:
        """The principal named ``name``, or None."""
        row = await self.db.pool.fetchrow(
            f"SELECT {_COLUMNS} FROM principals WHERE name = $1", name
        )
        return _principal(row) if row else None

    async def tokens(self) -> list[TokenInfo]:
        """Every token ever issued, oldest first (never the secret)."""
        rows = await self.db.pool.fetch(
            """SELECT t.id, p.name, p.role, t.created_at, t.revoked_at
               FROM tokens t JOIN principals p ON p.id = t.principal_id ORDER BY t.id"""
        )
        return [
            TokenInfo(r["id"], r["name"], Role(r["role"]), r["created_at"], r["revoked_at"])
            for r in rows
        ]

    async def revoke_tokens(self, *, name: str | None = None, token_id: int | None = None) -> int:
        """Revoke a principal's tokens or one token; connected sessions are dropped."""
        async with self.db.transaction() as conn:
            rows = await conn.fetch(
                """UPDATE tokens SET revoked_at = now()
                   WHERE revoked_at IS NULL
                     AND ($1::text IS NULL OR principal_id = (SELECT id FROM principals
                                                               WHERE name = $1))
                     AND ($2::bigint IS NULL OR id = $2)
                   RETURNING id, principal_id""",
                name,
                token_id,
            )
            for row in rows:
                await self.moderation.record(
                    "revoke",
                    None,
                    row["principal_id"],
                    None,
                    "",
                    detail={"token_id": row["id"]},
                    notify=True,
                    conn=conn,
                )
        return len(rows)
