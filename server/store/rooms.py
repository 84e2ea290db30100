"""Rooms and membership: the arenas, direct messages and groups, and who is admitted.

The five arenas exist from the first migration; direct messages and groups are created
here, audited, with their members. Admitting someone to a room is a moderation action
and logged as one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from botarena.arenas.names import RoomKind
from botarena.server.auth import Principal, may_post
from botarena.server.errors import Conflict
from botarena.server.protocol import RoomInfo
from botarena.server.store.audit import AuditLog
from botarena.server.store.database import Database
from botarena.server.store.moderation import ModerationRepository


@dataclass(frozen=True)
class Room:
    name: str
    kind: RoomKind
    title: str | None
    created_by: int | None
    paused: bool


class RoomRepository:
    """Rooms and their members."""

    def __init__(self, db: Database, audit: AuditLog, moderation: ModerationRepository) -> None:
        self.db = db
        self.audit = audit
        self.moderation = moderation

    async def get(self, name: str) -> Room | None:
        """The room named ``name``, or None."""
        row = await self.db.pool.fetchrow(
            "SELECT name, kind, title, created_by, paused_at FROM rooms WHERE name = $1", name
        )
        if row is None:
            return None
        return Room(
            row["name"],
            RoomKind(row["kind"]),
            row["title"],
            row["created_by"],
            row["paused_at"] is not None,
        )

    async def is_member(self, room: str, principal_id: int) -> bool:
        return bool(
            await self.db.pool.fetchval(
                "SELECT 1 FROM room_members WHERE room = $1 AND principal_id = $2",
                room,
                principal_id,
            )
        )

    async def visible_to(self, who: Principal) -> list[RoomInfo]:
        """The rooms ``who`` may join, with their state and last message id."""
        rows = await self.db.pool.fetch(
            """SELECT r.name, r.kind, r.title, r.paused_at IS NOT NULL AS paused,
                      EXISTS (SELECT 1 FROM room_members rm
                              WHERE rm.room = r.name AND rm.principal_id = $1) AS member,
                      coalesce((SELECT max(id) FROM messages m WHERE m.room = r.name), 0)
                          AS last_id
               FROM rooms r
               WHERE $2 OR EXISTS (SELECT 1 FROM room_members rm
                                   WHERE rm.room = r.name AND rm.principal_id = $1)
               ORDER BY r.kind, r.name""",
            who.id,
            who.supervises,
        )
        return [
            RoomInfo(
                name=r["name"],
                kind=RoomKind(r["kind"]),
                title=r["title"],
                paused=r["paused"],
                may_post=may_post(who, RoomKind(r["kind"]), r["member"]),
                last_id=r["last_id"],
            )
            for r in rows
        ]

    async def open_dm(self, a: Principal, b: Principal, room: str) -> None:
        """The direct-message room of ``a`` and ``b``, created on first use."""
        async with self.db.transaction() as conn:
            created = await conn.fetchval(
                """INSERT INTO rooms (name, kind, created_by) VALUES ($1, 'dm', $2)
                   ON CONFLICT DO NOTHING RETURNING true""",
                room,
                a.id,
            )
            if created:
                await self.audit.append(
                    "room.created",
                    actor=a.name,
                    subject=room,
                    detail={"members": sorted((a.name, b.name))},
                    conn=conn,
                )
            await conn.executemany(
                """INSERT INTO room_members (room, principal_id, added_by) VALUES ($1, $2, $3)
                   ON CONFLICT DO NOTHING""",
                [(room, a.id, a.id), (room, b.id, a.id)],
            )

    async def create_group(
        self, room: str, title: str | None, creator: Principal, members: Sequence[Principal]
    ) -> None:
        """Create a group with its creator and ``members``; a taken name is a conflict."""
        async with self.db.transaction() as conn:
            created = await conn.fetchval(
                """INSERT INTO rooms (name, kind, title, created_by) VALUES ($1, 'group', $2, $3)
                   ON CONFLICT DO NOTHING RETURNING true""",
                room,
                title,
                creator.id,
            )
            if not created:
                raise Conflict(f"{room} already exists")
            await self.audit.append(
                "room.created",
                actor=creator.name,
                subject=room,
                detail={"members": sorted(m.name for m in members)},
                conn=conn,
            )
            await conn.executemany(
                """INSERT INTO room_members (room, principal_id, added_by) VALUES ($1, $2, $3)
                   ON CONFLICT DO NOTHING""",
                [(room, m.id, creator.id) for m in {creator, *members}],
            )

    async def add_member(self, room: str, who: Principal, by: Principal) -> bool:
        """Admit ``who`` to ``room``; False when it already was."""
        async with self.db.transaction() as conn:
            added = await conn.fetchval(
                """INSERT INTO room_members (room, principal_id, added_by) VALUES ($1, $2, $3)
                   ON CONFLICT DO NOTHING RETURNING true""",
                room,
                who.id,
                by.id,
            )
            if added:
                await self.moderation.record("invite", by.id, who.id, room, "", conn=conn)
        return bool(added)
