"""The moderation queue: messages the content filter or an AI moderator put before
moderators, and what the moderators decided.

A *flagged* item is a posted message, marked (``messages.flags``), queued in the
transaction that stores it (:meth:`ModerationQueue.add_flagged`, called by the message
repository) or later by an AI moderator (:meth:`ModerationQueue.flag`). A *held* item is
a message kept out of its room: one the filter held has its text, reply and client id
here alone until a moderator releases it (the hub then posts it, with the next id of its
room, under its own client id, so that a release retried after a failure posts it once)
or drops it; one an AI moderator took back after it was posted
(:meth:`ModerationQueue.withhold`) stays stored, withheld from its room's history, and
a release shows it again in its place. A held message resent with the same client id
finds its item again instead of a second one. Every step is appended to the audit chain
in its own transaction; clearing an AI moderator's flag, releasing its hold, or lifting
its mute is audited as an overrule too.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from botarena.arenas.policy import Category
from botarena.server.auth import Principal
from botarena.server.errors import Conflict
from botarena.server.protocol import Message, QueueItem, QueueState, Role
from botarena.server.store.audit import AuditLog
from botarena.server.store.database import Database

FILTER = "filter"
"""The source of the items the content filter queues (an AI moderator's are its name)."""

_SELECT = """SELECT q.id, q.kind, q.room, a.name AS author, a.role AS author_role,
                    coalesce(q.text, m.text, '') AS text, q.message_id, q.categories,
                    q.rules, q.source, q.state, d.name AS decided_by, q.reason,
                    q.created_at, q.decided_at
             FROM moderation_queue q
             JOIN principals a ON a.id = q.author_id
             LEFT JOIN principals d ON d.id = q.decided_by
             LEFT JOIN messages m ON m.id = q.message_id"""


def _item(row: asyncpg.Record) -> QueueItem:
    return QueueItem(**{**dict(row), "author_role": Role(row["author_role"])})


class ModerationQueue:
    """Flagged and held messages, and the moderators' decisions on them."""

    def __init__(self, db: Database, audit: AuditLog) -> None:
        self.db = db
        self.audit = audit

    async def _append(
        self, conn: asyncpg.Connection, action: str, actor: str, item: QueueItem, **extra: Any
    ) -> None:
        detail = {
            "item": item.id,
            "room": item.room,
            "kind": item.kind,
            "categories": [str(c) for c in item.categories],
            "rules": item.rules,
            "message_id": item.message_id,
            **extra,
        }
        await self.audit.append(
            f"moderation.{action}", actor=actor, subject=item.author, detail=detail, conn=conn
        )

    async def _get(self, conn: asyncpg.Connection, item_id: int) -> QueueItem:
        return _item(await conn.fetchrow(f"{_SELECT} WHERE q.id = $1", item_id))

    async def add_flagged(
        self,
        conn: asyncpg.Connection,
        message_id: int,
        categories: list[str],
        rules: list[str],
    ) -> QueueItem:
        """Queue a message the filter flagged, in the caller's transaction that stores it."""
        item_id = await conn.fetchval(
            """INSERT INTO moderation_queue (kind, room, author_id, message_id, categories, rules)
               SELECT 'flagged', m.room, m.author_id, m.id, $2, $3 FROM messages m
               WHERE m.id = $1 RETURNING id""",
            message_id,
            categories,
            rules,
        )
        item = await self._get(conn, item_id)
        await self._append(conn, "flag", FILTER, item)
        return item

    async def hold(
        self,
        room: str,
        author: Principal,
        text: str,
        *,
        reply_to: int | None,
        client_id: str,
        categories: list[str],
        rules: list[str],
    ) -> tuple[QueueItem, bool]:
        """Keep a message out of ``room`` for a moderator; the item, and False when a
        resend found the one its client id made before."""
        async with self.db.transaction() as conn:
            item_id = await conn.fetchval(
                """INSERT INTO moderation_queue
                       (kind, room, author_id, text, reply_to, client_id, categories, rules)
                   VALUES ('held', $1, $2, $3, $4, $5, $6, $7)
                   ON CONFLICT (author_id, client_id) WHERE kind = 'held' DO NOTHING
                   RETURNING id""",
                room,
                author.id,
                text,
                reply_to,
                client_id,
                categories,
                rules,
            )
            if item_id is None:
                found = await conn.fetchval(
                    """SELECT id FROM moderation_queue
                       WHERE kind = 'held' AND author_id = $1 AND client_id = $2""",
                    author.id,
                    client_id,
                )
                return await self._get(conn, found), False
            item = await self._get(conn, item_id)
            await self._append(conn, "hold", FILTER, item)
            return item, True

    async def flag(
        self, message: Message, by: Principal, category: Category, reason: str
    ) -> tuple[QueueItem, bool]:
        """An AI moderator's flag on a posted message: marked and queued (once per
        moderator and message); the item, and False when it had flagged it already."""
        async with self.db.transaction() as conn:
            found = await conn.fetchval(
                """SELECT id FROM moderation_queue
                   WHERE kind = 'flagged' AND message_id = $1 AND source = $2""",
                message.id,
                by.name,
            )
            if found is not None:
                return await self._get(conn, found), False
            return await self._mark(conn, "flagged", message, by, category, reason), True

    async def withhold(
        self, message: Message, by: Principal, category: Category, reason: str
    ) -> tuple[QueueItem, bool]:
        """Take a posted message back out of its room (``messages.withheld``: history no
        longer gives it) and hold it for a moderator, marked like a flag; the item, and
        False when it was held already (by anyone). :class:`Conflict` when a moderator
        dropped it already."""
        async with self.db.transaction() as conn:
            withheld = await conn.fetchval(  # the row locked: one hold at a time
                "SELECT withheld FROM messages WHERE id = $1 FOR UPDATE", message.id
            )
            found = await conn.fetchval(
                """SELECT id FROM moderation_queue WHERE kind = 'held' AND message_id = $1
                   AND text IS NULL AND state = 'open'""",
                message.id,
            )
            if found is not None:
                return await self._get(conn, found), False
            if withheld:
                raise Conflict(f"message {message.id} was dropped by a moderator already")
            return await self._mark(conn, "held", message, by, category, reason), True

    async def _mark(
        self,
        conn: asyncpg.Connection,
        kind: str,
        message: Message,
        by: Principal,
        category: Category,
        reason: str,
    ) -> QueueItem:
        """A moderator's flag or hold of a posted message: marked with ``category`` (a
        hold withheld too) and queued, audited."""
        await conn.execute(
            """UPDATE messages SET withheld = withheld OR $3,
                   flags = CASE WHEN $2 = ANY(flags) THEN flags
                                ELSE array_append(flags, $2) END
               WHERE id = $1""",
            message.id,
            category.value,
            kind == "held",
        )
        item_id = await conn.fetchval(
            """INSERT INTO moderation_queue
                   (kind, room, author_id, message_id, categories, source, reason)
               SELECT $5, m.room, m.author_id, m.id, ARRAY[$2], $3, $4
               FROM messages m WHERE m.id = $1 RETURNING id""",
            message.id,
            category.value,
            by.name,
            reason,
            kind,
        )
        item = await self._get(conn, item_id)
        action = "withhold" if kind == "held" else "flag"
        await self._append(conn, action, by.name, item, reason=reason)
        return item

    async def get(self, item_id: int) -> QueueItem | None:
        row = await self.db.pool.fetchrow(f"{_SELECT} WHERE q.id = $1", item_id)
        return _item(row) if row else None

    async def for_message(self, message_id: int) -> QueueItem | None:
        """The filter's item for a posted message it flagged."""
        row = await self.db.pool.fetchrow(
            f"{_SELECT} WHERE q.message_id = $1 AND q.source = $2 ORDER BY q.id LIMIT 1",
            message_id,
            FILTER,
        )
        return _item(row) if row else None

    async def held_text(self, item_id: int) -> tuple[str, int | None, str] | None:
        """A held item's text, reply and client id (to post it when released)."""
        row = await self.db.pool.fetchrow(
            """SELECT text, reply_to, client_id FROM moderation_queue
               WHERE id = $1 AND kind = 'held'""",
            item_id,
        )
        return (row["text"], row["reply_to"], row["client_id"]) if row else None

    async def items(
        self, state: QueueState = QueueState.OPEN, room: str | None = None, limit: int = 50
    ) -> list[QueueItem]:
        """Items in ``state`` (of ``room``), oldest first for the open ones (the order they
        wait in), newest first for decided ones."""
        order = "q.id" if state is QueueState.OPEN else "q.decided_at DESC, q.id DESC"
        rows = await self.db.pool.fetch(
            f"""{_SELECT} WHERE q.state = $1 AND ($2::text IS NULL OR q.room = $2)
                ORDER BY {order} LIMIT $3""",
            state.value,
            room,
            limit,
        )
        return [_item(r) for r in rows]

    async def decide(
        self,
        item_id: int,
        state: QueueState,
        by: Principal,
        reason: str,
        message_id: int | None = None,
    ) -> tuple[QueueItem, bool] | None:
        """Record a moderator's decision on an open item (``message_id``: the message a
        release posted): the item, and whether it overrules an AI moderator (clears its
        flag or releases its hold); None when the item is not open (decided already, or
        unknown)."""
        async with self.db.transaction() as conn:
            decided = await conn.fetchval(
                """UPDATE moderation_queue
                   SET state = $2, decided_by = $3, decided_at = now(), reason = $4,
                       message_id = coalesce($5, message_id)
                   WHERE id = $1 AND state = 'open' RETURNING id""",
                item_id,
                state.value,
                by.id,
                reason,
                message_id,
            )
            if decided is None:
                return None
            if state is QueueState.RELEASED:  # a withheld message shows again
                await conn.execute(
                    """UPDATE messages SET withheld = false WHERE id = (
                           SELECT message_id FROM moderation_queue
                           WHERE id = $1 AND text IS NULL)""",
                    item_id,
                )
            item = await self._get(conn, item_id)
            action = {
                QueueState.RELEASED: "release",
                QueueState.DROPPED: "drop",
                QueueState.CLEARED: "clear",
            }[state]
            await self._append(conn, action, by.name, item, reason=reason)
            overrules = state is not QueueState.DROPPED and await conn.fetchval(
                "SELECT ai_moderator FROM principals WHERE name = $1", item.source
            )
            if overrules:
                await self._append(conn, "overrule", by.name, item, overruled=item.source)
            return item, bool(overrules)

    async def waiting(self) -> list[tuple[str, str, int, datetime | None]]:
        """For each room and kind with open items: how many, and since when the oldest
        waits (for ``/metrics``)."""
        rows = await self.db.pool.fetch(
            """SELECT room, kind, count(*) AS n, min(created_at) AS oldest
               FROM moderation_queue WHERE state = 'open' GROUP BY room, kind"""
        )
        return [(r["room"], r["kind"], r["n"], r["oldest"]) for r in rows]
