"""Moderation and control: mutes, kicks, paused rooms, and the log every hub replays.

Every moderation action is written to ``moderation_actions`` and to the audit chain in
the transaction that makes it. The actions every hub process must apply to its own
connections at once (a kick, a revoked token) are also announced with
``NOTIFY botarena_control`` in that same transaction, which every hub hears through
:meth:`ModerationRepository.listen_control`; a hub that lost its listening connection
replays the log from the last action it applied
(:meth:`ModerationRepository.control_actions_since`), so none is missed.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import asyncpg

from botarena.server.auth import Principal
from botarena.server.errors import Muted
from botarena.server.store.audit import AuditLog
from botarena.server.store.database import Database

CONTROL_CHANNEL = "botarena_control"
"""The NOTIFY channel of the actions every hub process applies."""


@dataclass(frozen=True)
class ControlAction:
    """A logged action every hub process applies to its own connections."""

    id: int
    action: str  # kick | revoke
    principal_id: int
    room: str | None
    detail: dict[str, Any]


class ModerationRepository:
    """Mutes, kicks, pauses and the moderation log."""

    def __init__(self, db: Database, audit: AuditLog) -> None:
        self.db = db
        self.audit = audit

    async def mute(self, target: Principal, until: datetime, reason: str, by: Principal) -> None:
        """Mute ``target`` until ``until``, replacing a mute it had."""
        async with self.db.transaction() as conn:
            await conn.execute(
                """UPDATE mutes SET lifted_at = now(), lifted_by = $2
                   WHERE principal_id = $1 AND lifted_at IS NULL""",
                target.id,
                by.id,
            )
            await conn.execute(
                """INSERT INTO mutes (principal_id, until, reason, created_by)
                   VALUES ($1, $2, $3, $4)""",
                target.id,
                until,
                reason,
                by.id,
            )
            await self.record("mute", by.id, target.id, None, reason, conn=conn)

    async def unmute(self, target: Principal, by: Principal) -> tuple[bool, list[str]]:
        """Lift ``target``'s mute: whether it was muted, and the AI moderators whose mute
        a human lifted (an overrule, audited as one)."""
        async with self.db.transaction() as conn:
            lifted = await conn.fetch(
                """UPDATE mutes u SET lifted_at = now(), lifted_by = $2
                   FROM principals p
                   WHERE u.principal_id = $1 AND u.lifted_at IS NULL AND u.until > now()
                     AND p.id = u.created_by
                   RETURNING u.id, p.name AS muted_by, p.ai_moderator""",
                target.id,
                by.id,
            )
            if lifted:
                await self.record("unmute", by.id, target.id, None, "", conn=conn)
            overruled = sorted({r["muted_by"] for r in lifted if r["ai_moderator"]})
            if overruled and not by.ai_moderator:
                detail = {"overruled": overruled}
                await self.record("overrule", by.id, target.id, None, "", detail=detail, conn=conn)
        return bool(lifted), overruled if not by.ai_moderator else []

    async def active_mute(self, principal_id: int) -> datetime | None:
        """When the principal's mute ends, or None when it is not muted."""
        return await self.db.pool.fetchval(
            """SELECT max(until) FROM mutes
               WHERE principal_id = $1 AND lifted_at IS NULL AND until > now()""",
            principal_id,
        )

    async def refuse_if_muted(self, who: Principal) -> None:
        """Raise :class:`Muted` (with its end) when ``who`` is muted now."""
        until = await self.active_mute(who.id)
        if until is not None:
            raise Muted(f"{who.name} is muted until {until}", until=until.isoformat())

    async def kick(self, target: Principal, room: str | None, reason: str, by: Principal) -> None:
        """Disconnect ``target``, or revoke its admission to ``room``, on every hub."""
        async with self.db.transaction() as conn:
            if room is not None:
                await conn.execute(
                    "DELETE FROM room_members WHERE room = $1 AND principal_id = $2",
                    room,
                    target.id,
                )
            await self.record("kick", by.id, target.id, room, reason, notify=True, conn=conn)

    async def set_paused(self, room: str, paused: bool, reason: str, by: Principal) -> bool:
        """Pause or resume a room; False when it already was in that state."""
        async with self.db.transaction() as conn:
            changed = await conn.fetchval(
                """UPDATE rooms SET paused_at = CASE WHEN $2 THEN now() END,
                                    paused_by = CASE WHEN $2 THEN $3::bigint END,
                                    pause_reason = CASE WHEN $2 THEN $4 END
                   WHERE name = $1 AND (paused_at IS NOT NULL) <> $2 RETURNING true""",
                room,
                paused,
                by.id,
                reason,
            )
            if changed:
                action = "pause" if paused else "resume"
                await self.record(action, by.id, None, room, reason, conn=conn)
        return bool(changed)

    async def log(self, limit: int = 100) -> list[dict[str, Any]]:
        """The newest moderation actions, newest first."""
        rows = await self.db.pool.fetch(
            """SELECT a.id, a.action, actor.name AS actor, target.name AS target, a.room,
                      a.reason, a.created_at
               FROM moderation_actions a
               LEFT JOIN principals actor ON actor.id = a.actor_id
               LEFT JOIN principals target ON target.id = a.target_id
               ORDER BY a.id DESC LIMIT $1""",
            limit,
        )
        return [dict(r) for r in rows]

    @asynccontextmanager
    async def listen_control(
        self, on_action: Callable[[ControlAction], None]
    ) -> AsyncIterator[asyncio.Future[None]]:
        """Hear every control action announced on :data:`CONTROL_CHANNEL` (``on_action``
        is called with each) on a connection of its own, while the block runs; what the
        block receives resolves when that connection is lost (what was logged meanwhile
        is :meth:`control_actions_since`). Opening it raises one of
        :data:`~botarena.server.store.database.LISTEN_FAILED` when the database is away."""

        def on_payload(payload: str) -> None:
            on_action(ControlAction(**json.loads(payload)))

        async with self.db.listen(CONTROL_CHANNEL, on_payload) as lost:
            yield lost

    async def last_action_id(self) -> int:
        return await self.db.pool.fetchval("SELECT coalesce(max(id), 0) FROM moderation_actions")

    async def control_actions_since(self, after_id: int) -> list[ControlAction]:
        """Kicks and revocations logged after ``after_id``, oldest first."""
        rows = await self.db.pool.fetch(
            """SELECT id, action, target_id, room, detail FROM moderation_actions
               WHERE id > $1 AND action IN ('kick', 'revoke') ORDER BY id""",
            after_id,
        )
        return [
            ControlAction(
                r["id"],
                r["action"],
                r["target_id"],
                r["room"],
                json.loads(r["detail"]) if r["detail"] else {},
            )
            for r in rows
        ]

    async def record(
        self,
        action: str,
        actor_id: int | None,
        target_id: int | None,
        room: str | None,
        reason: str,
        *,
        detail: dict[str, Any] | None = None,
        notify: bool = False,
        conn: asyncpg.Connection,
    ) -> None:
        """Log a moderation action in the moderation log and the audit chain, inside the
        caller's transaction; with ``notify``, tell every hub in the same commit."""
        action_id = await conn.fetchval(
            """INSERT INTO moderation_actions (action, actor_id, target_id, room, reason, detail)
               VALUES ($1, $2, $3, $4, $5, $6) RETURNING id""",
            action,
            actor_id,
            target_id,
            room,
            reason,
            json.dumps(detail) if detail is not None else None,
        )
        names = dict(
            await conn.fetch(
                "SELECT id, name FROM principals WHERE id = ANY($1::bigint[])",
                [i for i in (actor_id, target_id) if i is not None],
            )
        )
        await self.audit.append(
            f"moderation.{action}",
            actor=names.get(actor_id),
            subject=names.get(target_id),
            detail={"room": room, "reason": reason, **(detail or {})},
            conn=conn,
        )
        if notify:
            assert target_id is not None, "only an action on a principal is announced"
            control = ControlAction(action_id, action, target_id, room, detail or {})
            await conn.execute(
                "SELECT pg_notify($1, $2)", CONTROL_CHANNEL, json.dumps(asdict(control))
            )
