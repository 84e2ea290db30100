"""Messages: posting, history, reactions, and a room's transcript of a day.

A message is stored by the database function ``post_message``, which takes the room's
lock, so ids grow in the order messages are stored, and which finds the earlier copy of
a message resent with the same client id instead of storing it twice. A post that may
not be stored is refused with the error tree's class (muted, paused, unknown room, a
reply to a message elsewhere).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from botarena.server.auth import Principal
from botarena.server.errors import InvalidPayload, Muted, NotFound, RoomPaused, UnknownRoom
from botarena.server.protocol import Message, Role
from botarena.server.store.audit import AuditLog
from botarena.server.store.database import Database
from botarena.server.store.moderation import ModerationRepository

_COLUMNS = """m.id, m.room, p.name AS author, p.role AS author_role, m.text,
              m.reply_to, m.created_at"""


@dataclass(frozen=True)
class Posted:
    message: Message
    duplicate: bool  # the same client id was stored before: this is that message


def _message(row: asyncpg.Record) -> Message:
    return Message(
        id=row["id"],
        room=row["room"],
        author=row["author"],
        author_role=Role(row["author_role"]),
        text=row["text"],
        reply_to=row["reply_to"],
        created_at=row["created_at"],
    )


class MessageRepository:
    """The messages of every room, and the reactions to them."""

    def __init__(self, db: Database, audit: AuditLog, moderation: ModerationRepository) -> None:
        self.db = db
        self.audit = audit
        self.moderation = moderation

    async def post(
        self,
        room: str,
        author: Principal,
        text: str,
        *,
        reply_to: int | None = None,
        client_id: str | None = None,
        may_post_when_paused: bool = False,
    ) -> Posted:
        """Store a message (or find the earlier copy with the same client id)."""
        row = await self.db.pool.fetchrow(
            "SELECT * FROM post_message($1, $2, $3, $4, $5, $6)",
            room,
            author.id,
            text,
            reply_to,
            client_id,
            may_post_when_paused,
        )
        match row["status"]:
            case "muted":
                until = await self.moderation.active_mute(author.id)
                raise Muted(
                    f"{author.name} is muted until {until}",
                    until=until.isoformat() if until else None,
                )
            case "paused":
                raise RoomPaused(f"{room} is paused by a moderator")
            case "bad_reply":
                raise NotFound(f"message {reply_to} is not in {room}")
            case "unknown_room":
                raise UnknownRoom(f"no room named {room!r}")
            case "duplicate":
                stored = await self.db.pool.fetchrow(
                    f"""SELECT {_COLUMNS} FROM messages m
                        JOIN principals p ON p.id = m.author_id WHERE m.id = $1""",
                    row["message_id"],
                )
                return Posted(_message(stored), duplicate=True)
        message = Message(
            id=row["message_id"],
            room=room,
            author=author.name,
            author_role=author.role,
            text=text,
            reply_to=reply_to,
            created_at=row["message_created"],
        )
        return Posted(message, duplicate=False)

    async def history(
        self,
        room: str,
        *,
        since: int | None = None,
        before: int | None = None,
        limit: int = 100,
    ) -> tuple[list[Message], bool]:
        """Messages of ``room`` oldest first, and whether more lie beyond the page.

        ``since``: the ``limit`` messages after that id. Otherwise the ``limit`` newest
        (before ``before`` when given).
        """
        if since is not None:
            rows = await self.db.pool.fetch(
                f"""SELECT {_COLUMNS} FROM messages m
                    JOIN principals p ON p.id = m.author_id
                    WHERE m.room = $1 AND m.id > $2 ORDER BY m.id LIMIT $3""",
                room,
                since,
                limit + 1,
            )
            return [_message(r) for r in rows[:limit]], len(rows) > limit
        rows = await self.db.pool.fetch(
            f"""SELECT {_COLUMNS} FROM messages m
                JOIN principals p ON p.id = m.author_id
                WHERE m.room = $1 AND ($2::bigint IS NULL OR m.id < $2)
                ORDER BY m.id DESC LIMIT $3""",
            room,
            before,
            limit + 1,
        )
        return [_message(r) for r in reversed(rows[:limit])], len(rows) > limit

    async def react(self, who: Principal, room: str, message_id: int, value: int) -> str:
        """Set (+1, -1) or take back (0) ``who``'s reaction to a message in ``room``;
        returns the message's author. Reacting to one's own message is refused."""
        async with self.db.transaction() as conn:
            author = await conn.fetchrow(
                """SELECT p.id, p.name FROM messages m JOIN principals p ON p.id = m.author_id
                   WHERE m.id = $1 AND m.room = $2""",
                message_id,
                room,
            )
            if author is None:
                raise NotFound(f"message {message_id} is not in {room}")
            if author["id"] == who.id:
                raise InvalidPayload("a reaction is for someone else's message")
            if value:
                await conn.execute(
                    """INSERT INTO reactions (message_id, principal_id, value) VALUES ($1, $2, $3)
                       ON CONFLICT (message_id, principal_id)
                       DO UPDATE SET value = excluded.value, created_at = now()""",
                    message_id,
                    who.id,
                    value,
                )
            else:
                await conn.execute(
                    "DELETE FROM reactions WHERE message_id = $1 AND principal_id = $2",
                    message_id,
                    who.id,
                )
            await self.audit.append(
                "reaction.set",
                actor=who.name,
                subject=f"message:{message_id}",
                detail={"room": room, "author": author["name"], "value": value},
                conn=conn,
            )
        return author["name"]

    async def rooms_between(self, start: datetime, end: datetime) -> list[str]:
        """The rooms with a message stored in [start, end), by name."""
        rows = await self.db.pool.fetch(
            "SELECT DISTINCT room FROM messages WHERE created_at >= $1 AND created_at < $2",
            start,
            end,
        )
        return sorted(r["room"] for r in rows)

    async def transcript(self, room: str, start: datetime, end: datetime) -> list[dict[str, Any]]:
        """The messages of ``room`` stored in [start, end), oldest first: id, time,
        author, role, reply and text."""
        rows = await self.db.pool.fetch(
            """SELECT m.id, m.created_at, p.name AS author, p.role, m.reply_to, m.text
               FROM messages m JOIN principals p ON p.id = m.author_id
               WHERE m.room = $1 AND m.created_at >= $2 AND m.created_at < $3
               ORDER BY m.id""",
            room,
            start,
            end,
        )
        return [dict(r) for r in rows]
