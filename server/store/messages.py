"""Messages: posting, history, reactions, and a room's transcript of a day.

A message is stored by the database function ``post_messages`` (a batch of one room's
messages as one set, or a single one), which takes the room's lock, so ids grow in the order
messages are stored, and which finds the earlier copy of a message resent with the same
client id instead of storing it twice. It also returns
the id of the room's message before the new one (``prev_id``), which the hub's push
carries so that clients notice a message they missed. A post that may not be stored is
refused with the error tree's class (muted, paused, unknown room, a reply to a message
elsewhere).

Every write carries a client id (the sender's, or one the store makes up), so that when
the database fails during the write -- it may have committed and lost only its answer --
the store looks the message up again by author and client id once the database answers,
and reports what happened: stored (the hub acknowledges and broadcasts it) or not stored
(:class:`Unavailable`, send it again). A database that stays away longer than
``settle_seconds`` leaves the outcome unknown: :class:`Unavailable` again, and the store
remembers the client id, so that the resend which finds the earlier copy announces it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import asyncpg
import structlog

from botarena.server.auth import Principal
from botarena.server.errors import (
    InvalidPayload,
    Muted,
    NotFound,
    RoomPaused,
    Unavailable,
    UnknownRoom,
)
from botarena.server.protocol import Message, Role
from botarena.server.store.audit import AuditLog
from botarena.server.store.database import UNAVAILABLE, Database
from botarena.server.store.moderation import ModerationRepository
from botarena.server.store.queue import ModerationQueue

log = structlog.get_logger(__name__)

_COLUMNS = """m.id, m.room, p.name AS author, p.role AS author_role, m.text,
              m.reply_to, m.created_at, m.flags"""

HUB_CLIENT_ID_PREFIX = "hub-"
"""Client ids the store makes up for posts that came without one."""

_UNSETTLED_KEPT = 10_000

_POST_MANY = "SELECT * FROM post_messages($1, $2, $3, $4, $5, $6, $7)"


@dataclass(frozen=True)
class Posted:
    message: Message
    duplicate: bool  # an earlier send with the same client id stored it: this is that one
    recovered: bool = False  # stored by a write whose answer was lost, and found again
    announce: bool = True  # push it to the room: not a duplicate already announced, nor a
    # recovered message that later ones (their prev_id) already lead clients to


@dataclass(frozen=True)
class Draft:
    """A message to store: who writes what, and how (:meth:`MessageRepository.post`'s
    arguments)."""

    author: Principal
    text: str
    reply_to: int | None = None
    client_id: str | None = None
    may_post_when_paused: bool = False
    flags: tuple[str, ...] = ()  # the content filter's categories: posted marked, and queued
    rules: tuple[str, ...] = ()  # what found them

    def keyed(self) -> Draft:
        """This draft with a client id: its own, or one the store makes up."""
        if self.client_id:
            return self
        return replace(self, client_id=HUB_CLIENT_ID_PREFIX + uuid.uuid4().hex)

    def arguments(self) -> tuple[int, str, int | None, str | None, bool, str]:
        """A draft's column of ``post_messages``' arguments after the room."""
        return (
            self.author.id,
            self.text,
            self.reply_to,
            self.client_id,
            self.may_post_when_paused,
            ",".join(self.flags),
        )


async def _answer(call: Awaitable[Posted]) -> Posted | BaseException:
    """The outcome of one post of a batch: what it stored, or what it raised."""
    try:
        return await call
    except Exception as exc:
        return exc


def _not_stored(key: str) -> Unavailable:
    return Unavailable(
        "the database failed while storing the message; it was not stored: send it again",
        outcome="not_stored",
        client_id=key,
    )


def _unknown_outcome(key: str) -> Unavailable:
    return Unavailable(
        "the database failed while storing the message and has not come back to say "
        "whether it was stored: send it again with this client_id",
        outcome="unknown",
        client_id=key,
    )


def _message(row: asyncpg.Record, prev_id: int | None = None) -> Message:
    return Message(
        id=row["id"],
        room=row["room"],
        author=row["author"],
        author_role=Role(row["author_role"]),
        text=row["text"],
        reply_to=row["reply_to"],
        created_at=row["created_at"],
        prev_id=prev_id,
        flags=row["flags"],
    )


class MessageRepository:
    """The messages of every room, and the reactions to them."""

    def __init__(
        self,
        db: Database,
        audit: AuditLog,
        moderation: ModerationRepository,
        queue: ModerationQueue,
        settle_seconds: float = 5.0,
    ) -> None:
        self.settle_seconds = settle_seconds
        """How long a post whose write failed waits for the database to answer whether
        the message was stored, before it answers that the outcome is unknown."""
        self.db = db
        self.audit = audit
        self.moderation = moderation
        self.queue = queue
        self._unsettled: OrderedDict[tuple[int, str], None] = OrderedDict()

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
        """Store a message (or find the earlier copy with the same client id).

        A database that fails during the write is asked again whether the message was
        stored (see the module); :class:`Unavailable` when it was not, or when that
        cannot be known (``detail``: ``outcome`` and the ``client_id`` to resend with).
        """
        return await self._post(
            room, Draft(author, text, reply_to, client_id, may_post_when_paused)
        )

    async def _post(self, room: str, draft: Draft) -> Posted:
        """:meth:`post` of one draft."""
        draft = draft.keyed()
        conn = await self.db.pool.acquire()  # failing here, nothing was sent: unavailable
        try:
            [row] = await self._write(conn, room, [draft])
        except UNAVAILABLE as exc:
            log.warning("store.post_failed", room=room, author=draft.author.name, error=repr(exc))
            [settled] = await self._settle(room, [draft])
            if isinstance(settled, BaseException):
                raise settled from exc
            return settled
        finally:
            with contextlib.suppress(*UNAVAILABLE):
                await self.db.pool.release(conn)
        return await self._outcome(room, draft, row)

    async def post_batch(self, room: str, drafts: list[Draft]) -> list[Posted | BaseException]:
        """Store several messages of ``room`` in one transaction, in the order given (so
        their ids grow in that order), and answer each as :meth:`post` would: its
        :class:`Posted`, or the error it is refused with.

        The batch commits or fails as a whole: when the database fails during the write,
        it is asked once for all of them whether they were stored (``settle_seconds``),
        and each is then stored, or :class:`Unavailable` (``not_stored`` or
        ``unknown``). A batch the database refuses for another reason (a statement error
        of one message) is stored one message at a time, so that only the faulty one
        fails (two drafts with one client id are such a batch). One draft is posted by
        :meth:`post`.
        """
        if len(drafts) == 1:
            return [await _answer(self._post(room, drafts[0]))]
        drafts = [d.keyed() for d in drafts]
        conn = await self.db.pool.acquire()  # failing here, nothing was sent: unavailable
        try:
            rows = await self._write(conn, room, drafts)
        except UNAVAILABLE as exc:
            log.warning("store.post_batch_failed", room=room, size=len(drafts), error=repr(exc))
            return await self._settle(room, drafts)
        except asyncpg.PostgresError as exc:  # one message's statement failed: apart
            log.warning("store.post_batch_split", room=room, size=len(drafts), error=repr(exc))
            return [await _answer(self._post(room, d)) for d in drafts]
        finally:
            with contextlib.suppress(*UNAVAILABLE):
                await self.db.pool.release(conn)
        return [
            await _answer(self._outcome(room, d, row)) for d, row in zip(drafts, rows, strict=True)
        ]

    async def _write(
        self, conn: asyncpg.Connection, room: str, drafts: list[Draft]
    ) -> list[asyncpg.Record]:
        """``post_messages``' answer for ``drafts``, in one transaction: with the flagged
        ones it stores queued for moderators in it too."""
        columns = [list(c) for c in zip(*(d.arguments() for d in drafts), strict=True)]
        if not any(d.flags for d in drafts):
            return await conn.fetch(_POST_MANY, room, *columns)
        async with conn.transaction():
            rows = await conn.fetch(_POST_MANY, room, *columns)
            for draft, row in zip(drafts, rows, strict=True):
                if draft.flags and row["status"] == "ok":
                    await self.queue.add_flagged(
                        conn, row["message_id"], list(draft.flags), list(draft.rules)
                    )
        return rows

    async def _outcome(self, room: str, draft: Draft, row: asyncpg.Record) -> Posted:
        """What ``post_messages`` answered for ``draft``: the stored message, the earlier
        copy of a resend, or the refusal (raised)."""
        author, key, reply_to = draft.author, draft.client_id, draft.reply_to
        assert key is not None
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
                if (author.id, key) in self._unsettled:  # the first write was never told
                    del self._unsettled[(author.id, key)]
                    found = await self._find(room, author, key, duplicate=True)
                    if found is not None:
                        return found
                stored = await self.get(row["message_id"])
                assert stored is not None, "messages are never deleted"
                return Posted(stored, duplicate=True, announce=False)
        message = Message(
            id=row["message_id"],
            room=room,
            author=author.name,
            author_role=author.role,
            text=draft.text,
            reply_to=reply_to,
            created_at=row["message_created"],
            prev_id=row["prev_id"],
            flags=list(draft.flags),
        )
        return Posted(message, duplicate=False)

    async def _find(
        self, room: str, author: Principal, key: str, *, duplicate: bool = False
    ) -> Posted | None:
        """The message ``author`` stored in ``room`` with client id ``key``, as a post
        that was stored and never answered (``duplicate``: found by a resend); None when
        there is none. Read under the room's lock, so that a write of it still running
        in the database finishes first."""
        async with self.db.transaction() as conn:
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtext('botarena.room:' || $1))", room
            )
            row = await conn.fetchrow(
                f"""SELECT {_COLUMNS},
                        (SELECT coalesce(max(e.id), 0) FROM messages e
                         WHERE e.room = m.room AND e.id < m.id) AS prev_id,
                        EXISTS (SELECT 1 FROM messages e
                                WHERE e.room = m.room AND e.id > m.id) AS superseded
                    FROM messages m JOIN principals p ON p.id = m.author_id
                    WHERE m.author_id = $1 AND m.client_id = $2 AND m.room = $3""",
                author.id,
                key,
                room,
            )
        if row is None:
            return None
        # a later message's prev_id already leads clients to this one: pushing it now
        # would only put it out of order
        return Posted(
            _message(row, row["prev_id"]),
            duplicate=duplicate,
            recovered=True,
            announce=not row["superseded"],
        )

    async def _settle(self, room: str, drafts: list[Draft]) -> list[Posted | BaseException]:
        """Whether the messages of a write that just failed (one transaction: one message,
        or a batch) were stored, asked once for all of them until the database answers
        or ``settle_seconds`` pass: each is stored (recovered), or :class:`Unavailable`
        (``not_stored``, or ``unknown`` when the database did not answer)."""
        deadline = time.monotonic() + self.settle_seconds
        pause = 0.05
        while True:
            try:
                async with asyncio.timeout(max(deadline - time.monotonic(), 0.01)):
                    found = await self._find_written(room, drafts)
            except UNAVAILABLE:
                if time.monotonic() + pause >= deadline:
                    log.warning("store.post_unsettled", room=room, size=len(drafts))
                    unknown: list[Posted | BaseException] = []
                    for draft in drafts:
                        assert draft.client_id is not None
                        self._remember_unsettled(draft.author.id, draft.client_id)
                        unknown.append(_unknown_outcome(draft.client_id))
                    return unknown
                await asyncio.sleep(pause)
                pause = min(pause * 2, 0.5)
                continue
            settled: list[Posted | BaseException] = []
            for draft, posted in zip(drafts, found, strict=True):
                assert draft.client_id is not None
                settled.append(_not_stored(draft.client_id) if posted is None else posted)
            log.info(
                "store.post_settled",
                room=room,
                size=len(drafts),
                stored=sum(p is not None for p in found),
            )
            return settled

    async def _find_written(self, room: str, drafts: list[Draft]) -> list[Posted | None]:
        """:meth:`_find` for every draft of one write in one query, read under the room's
        lock. A found message is announced unless a message outside the batch follows
        it (the batch's own messages follow one another)."""
        async with self.db.transaction() as conn:
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtext('botarena.room:' || $1))", room
            )
            rows = await conn.fetch(
                f"""SELECT {_COLUMNS}, m.author_id, m.client_id,
                        (SELECT coalesce(max(e.id), 0) FROM messages e
                         WHERE e.room = m.room AND e.id < m.id) AS prev_id,
                        (SELECT min(e.id) FROM messages e
                         WHERE e.room = m.room AND e.id > m.id) AS next_id
                    FROM unnest($1::bigint[], $2::text[]) AS k(author_id, client_id)
                    JOIN messages m
                      ON m.author_id = k.author_id AND m.client_id = k.client_id
                    JOIN principals p ON p.id = m.author_id
                    WHERE m.room = $3""",
                [d.author.id for d in drafts],
                [d.client_id for d in drafts],
                room,
            )
        by_key = {(r["author_id"], r["client_id"]): r for r in rows}
        ids = {r["id"] for r in rows}
        found: list[Posted | None] = []
        for draft in drafts:
            row = by_key.get((draft.author.id, draft.client_id))
            if row is None:
                found.append(None)
                continue
            superseded = row["next_id"] is not None and row["next_id"] not in ids
            found.append(
                Posted(
                    _message(row, row["prev_id"]),
                    duplicate=False,
                    recovered=True,
                    announce=not superseded,
                )
            )
        return found

    def _remember_unsettled(self, author_id: int, key: str) -> None:
        self._unsettled[(author_id, key)] = None
        while len(self._unsettled) > _UNSETTLED_KEPT:
            self._unsettled.popitem(last=False)

    async def history(
        self,
        room: str,
        *,
        since: int | None = None,
        before: int | None = None,
        limit: int = 100,
    ) -> tuple[list[Message], bool]:
        """Messages of ``room`` oldest first (none withheld by a moderator), and whether
        more lie beyond the page.

        ``since``: the ``limit`` messages after that id. Otherwise the ``limit`` newest
        (before ``before`` when given).
        """
        if since is not None:
            rows = await self.db.pool.fetch(
                f"""SELECT {_COLUMNS} FROM messages m
                    JOIN principals p ON p.id = m.author_id
                    WHERE m.room = $1 AND m.id > $2 AND NOT m.withheld
                    ORDER BY m.id LIMIT $3""",
                room,
                since,
                limit + 1,
            )
            return [_message(r) for r in rows[:limit]], len(rows) > limit
        rows = await self.db.pool.fetch(
            f"""SELECT {_COLUMNS} FROM messages m
                JOIN principals p ON p.id = m.author_id
                WHERE m.room = $1 AND ($2::bigint IS NULL OR m.id < $2) AND NOT m.withheld
                ORDER BY m.id DESC LIMIT $3""",
            room,
            before,
            limit + 1,
        )
        return [_message(r) for r in reversed(rows[:limit])], len(rows) > limit

    async def get(self, message_id: int) -> Message | None:
        """The message ``message_id``, or None."""
        row = await self.db.pool.fetchrow(
            f"""SELECT {_COLUMNS} FROM messages m
                JOIN principals p ON p.id = m.author_id WHERE m.id = $1""",
            message_id,
        )
        return _message(row) if row else None

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
        """The messages of ``room`` stored in [start, end), oldest first (none withheld
        by a moderator): id, time, author, role, reply and text."""
        rows = await self.db.pool.fetch(
            """SELECT m.id, m.created_at, p.name AS author, p.role, m.reply_to, m.text
               FROM messages m JOIN principals p ON p.id = m.author_id
               WHERE m.room = $1 AND m.created_at >= $2 AND m.created_at < $3
                     AND NOT m.withheld
               ORDER BY m.id""",
            room,
            start,
            end,
        )
        return [dict(r) for r in rows]
