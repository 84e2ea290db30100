"""The hub's store: every durable thing the hub knows, in PostgreSQL through asyncpg.

:class:`Store` owns a connection pool, applies migrations when it opens, and offers one
method per question or change the hub needs (principals and tokens, rooms and
membership, messages and history, mutes, pauses and the moderation log). State changes
that every hub process must act on at once (a kick, a revoked token) are logged in
``moderation_actions`` and announced with ``NOTIFY botarena_control`` in the same
transaction; a hub that lost its listening connection replays the log from the last
action it applied, so no such action is missed.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import asyncpg

from botarena.arenas.names import ARENAS, RoomKind
from botarena.server import audit, migrations
from botarena.server.auth import Principal, hash_token, may_post, new_token
from botarena.server.errors import CodedError
from botarena.server.protocol import AgentState, AgentStateKind, Message, Role, RoomInfo

CONTROL_CHANNEL = "botarena_control"


class StoreError(CodedError):
    """A change the store refused; ``code`` is a protocol error code."""

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class Room:
    name: str
    kind: RoomKind
    title: str | None
    created_by: int | None
    paused: bool


@dataclass(frozen=True)
class PostResult:
    status: str  # ok | duplicate | muted | paused | unknown_room | bad_reply
    message: Message | None


@dataclass(frozen=True)
class ControlAction:
    """A logged action every hub process applies to its own connections."""

    id: int
    action: str  # kick | revoke
    principal_id: int
    room: str | None
    detail: dict[str, Any]


@dataclass(frozen=True)
class TokenInfo:
    id: int
    principal: str
    role: Role
    created_at: datetime
    revoked_at: datetime | None


def _principal(row: asyncpg.Record) -> Principal:
    return Principal(row["id"], row["name"], Role(row["role"]), row["may_create_groups"])


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


_MESSAGE_COLUMNS = """m.id, m.room, p.name AS author, p.role AS author_role, m.text,
                      m.reply_to, m.created_at"""


class Store:
    """Durable state of the hub. Open with :meth:`open`, close with :meth:`close`."""

    def __init__(self, pool: asyncpg.Pool, url: str) -> None:
        self.pool = pool
        self.url = url
        self.schema_version = 0

    @classmethod
    async def open(cls, url: str, pool_size: int = 10) -> Store:
        pool = await asyncpg.create_pool(url, min_size=1, max_size=pool_size)
        store = cls(pool, url)
        async with pool.acquire() as conn:
            store.schema_version = await migrations.migrate(conn)
        return store

    async def close(self) -> None:
        await self.pool.close()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[asyncpg.Connection]:
        async with self.pool.acquire() as conn, conn.transaction():
            yield conn

    async def ping(self) -> None:
        await self.pool.fetchval("SELECT 1")

    # principals and tokens -------------------------------------------------------

    async def issue_token(
        self,
        name: str,
        role: Role,
        *,
        arenas: Sequence[str] = (),
        may_create_groups: bool = False,
        issued_by: str = "operator",
    ) -> tuple[Principal, str]:
        """Create the principal if new, admit it to ``arenas``, and return a fresh token.

        An existing principal keeps its role: asking for another role is refused rather
        than silently promoting or demoting it.
        """
        unknown = sorted(set(arenas) - set(ARENAS))
        if unknown:
            raise StoreError("unknown_room", f"not an arena: {', '.join(unknown)}")
        token = new_token()
        async with self.transaction() as conn:
            row = await conn.fetchrow(
                "SELECT id, name, role, may_create_groups FROM principals WHERE name = $1", name
            )
            if row is None:
                row = await conn.fetchrow(
                    """INSERT INTO principals (name, role, may_create_groups) VALUES ($1, $2, $3)
                       RETURNING id, name, role, may_create_groups""",
                    name,
                    role.value,
                    may_create_groups,
                )
            elif row["role"] != role.value:
                raise StoreError(
                    "conflict", f"{name} exists with role {row['role']}, not {role.value}"
                )
            elif may_create_groups and not row["may_create_groups"]:
                row = await conn.fetchrow(
                    """UPDATE principals SET may_create_groups = true WHERE id = $1
                       RETURNING id, name, role, may_create_groups""",
                    row["id"],
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
            await audit.append(
                conn,
                "token.issued",
                actor=issued_by,
                subject=name,
                detail={"role": role.value, "token_id": token_id, "arenas": sorted(arenas)},
            )
        return principal, token

    async def authenticate(self, token: str) -> tuple[Principal, int] | str:
        """The principal and token id a token belongs to, or why it is refused."""
        row = await self.pool.fetchrow(
            """SELECT p.id, p.name, p.role, p.may_create_groups, t.id AS token_id, t.revoked_at
               FROM tokens t JOIN principals p ON p.id = t.principal_id
               WHERE t.token_hash = $1""",
            hash_token(token),
        )
        if row is None:
            return "unknown token"
        if row["revoked_at"] is not None:
            return "token revoked"
        return _principal(row), row["token_id"]

    async def principal(self, name: str) -> Principal | None:
        row = await self.pool.fetchrow(
            "SELECT id, name, role, may_create_groups FROM principals WHERE name = $1", name
        )
        return _principal(row) if row else None

    async def tokens(self) -> list[TokenInfo]:
        rows = await self.pool.fetch(
            """SELECT t.id, p.name, p.role, t.created_at, t.revoked_at
               FROM tokens t JOIN principals p ON p.id = t.principal_id ORDER BY t.id"""
        )
        return [
            TokenInfo(r["id"], r["name"], Role(r["role"]), r["created_at"], r["revoked_at"])
            for r in rows
        ]

    async def revoke_tokens(self, *, name: str | None = None, token_id: int | None = None) -> int:
        """Revoke a principal's tokens or one token; connected sessions are dropped."""
        async with self.transaction() as conn:
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
                await self._log(
                    conn,
                    "revoke",
                    None,
                    row["principal_id"],
                    None,
                    "",
                    detail={"token_id": row["id"]},
                    notify=True,
                )
        return len(rows)

    # rooms and membership -------------------------------------------------------

    async def room(self, name: str) -> Room | None:
        row = await self.pool.fetchrow(
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
            await self.pool.fetchval(
                "SELECT 1 FROM room_members WHERE room = $1 AND principal_id = $2",
                room,
                principal_id,
            )
        )

    async def rooms_for(self, who: Principal) -> list[RoomInfo]:
        """The rooms ``who`` may join, with their state and last message id."""
        rows = await self.pool.fetch(
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
        async with self.transaction() as conn:
            created = await conn.fetchval(
                """INSERT INTO rooms (name, kind, created_by) VALUES ($1, 'dm', $2)
                   ON CONFLICT DO NOTHING RETURNING true""",
                room,
                a.id,
            )
            if created:
                await audit.append(
                    conn,
                    "room.created",
                    actor=a.name,
                    subject=room,
                    detail={"members": sorted((a.name, b.name))},
                )
            await conn.executemany(
                """INSERT INTO room_members (room, principal_id, added_by) VALUES ($1, $2, $3)
                   ON CONFLICT DO NOTHING""",
                [(room, a.id, a.id), (room, b.id, a.id)],
            )

    async def create_group(
        self, room: str, title: str | None, creator: Principal, members: Sequence[Principal]
    ) -> None:
        async with self.transaction() as conn:
            created = await conn.fetchval(
                """INSERT INTO rooms (name, kind, title, created_by) VALUES ($1, 'group', $2, $3)
                   ON CONFLICT DO NOTHING RETURNING true""",
                room,
                title,
                creator.id,
            )
            if not created:
                raise StoreError("conflict", f"{room} already exists")
            await audit.append(
                conn,
                "room.created",
                actor=creator.name,
                subject=room,
                detail={"members": sorted(m.name for m in members)},
            )
            await conn.executemany(
                """INSERT INTO room_members (room, principal_id, added_by) VALUES ($1, $2, $3)
                   ON CONFLICT DO NOTHING""",
                [(room, m.id, creator.id) for m in {creator, *members}],
            )

    async def add_member(self, room: str, who: Principal, by: Principal) -> bool:
        """Admit ``who`` to ``room``; False when it already was."""
        async with self.transaction() as conn:
            added = await conn.fetchval(
                """INSERT INTO room_members (room, principal_id, added_by) VALUES ($1, $2, $3)
                   ON CONFLICT DO NOTHING RETURNING true""",
                room,
                who.id,
                by.id,
            )
            if added:
                await self._log(conn, "invite", by.id, who.id, room, "")
        return bool(added)

    # messages ---------------------------------------------------------------------

    async def post(
        self,
        room: str,
        author: Principal,
        text: str,
        *,
        reply_to: int | None = None,
        client_id: str | None = None,
        may_post_when_paused: bool = False,
    ) -> PostResult:
        """Store a message (or find the earlier copy with the same client id)."""
        row = await self.pool.fetchrow(
            "SELECT * FROM post_message($1, $2, $3, $4, $5, $6)",
            room,
            author.id,
            text,
            reply_to,
            client_id,
            may_post_when_paused,
        )
        if row["status"] not in ("ok", "duplicate"):
            return PostResult(row["status"], None)
        if row["status"] == "duplicate":
            stored = await self.pool.fetchrow(
                f"""SELECT {_MESSAGE_COLUMNS} FROM messages m
                    JOIN principals p ON p.id = m.author_id WHERE m.id = $1""",
                row["message_id"],
            )
            return PostResult("duplicate", _message(stored))
        message = Message(
            id=row["message_id"],
            room=room,
            author=author.name,
            author_role=author.role,
            text=text,
            reply_to=reply_to,
            created_at=row["message_created"],
        )
        return PostResult("ok", message)

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
            rows = await self.pool.fetch(
                f"""SELECT {_MESSAGE_COLUMNS} FROM messages m
                    JOIN principals p ON p.id = m.author_id
                    WHERE m.room = $1 AND m.id > $2 ORDER BY m.id LIMIT $3""",
                room,
                since,
                limit + 1,
            )
            return [_message(r) for r in rows[:limit]], len(rows) > limit
        rows = await self.pool.fetch(
            f"""SELECT {_MESSAGE_COLUMNS} FROM messages m
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
        async with self.transaction() as conn:
            author = await conn.fetchrow(
                """SELECT p.id, p.name FROM messages m JOIN principals p ON p.id = m.author_id
                   WHERE m.id = $1 AND m.room = $2""",
                message_id,
                room,
            )
            if author is None:
                raise StoreError("not_found", f"message {message_id} is not in {room}")
            if author["id"] == who.id:
                raise StoreError("invalid_payload", "a reaction is for someone else's message")
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
            await audit.append(
                conn,
                "reaction.set",
                actor=who.name,
                subject=f"message:{message_id}",
                detail={"room": room, "author": author["name"], "value": value},
            )
        return author["name"]

    # agent states -------------------------------------------------------------------

    async def set_agent_state(
        self,
        agent: Principal,
        state: str,
        detail: str,
        drift: dict[str, float],
        *,
        summary: str | None = None,
        llm_seconds: float | None = None,
    ) -> AgentState:
        """Store what an agent reports; a summary or LLM time left out stays as it was."""
        row = await self.pool.fetchrow(
            """INSERT INTO agent_states AS s (principal_id, state, detail, drift, summary,
                                              llm_seconds, updated_at)
               VALUES ($1, $2, $3, $4, coalesce($5, ''), $6, now())
               ON CONFLICT (principal_id) DO UPDATE SET state = $2, detail = $3, drift = $4,
                   summary = coalesce($5, s.summary), llm_seconds = coalesce($6, s.llm_seconds),
                   updated_at = now()
               RETURNING summary, llm_seconds, updated_at""",
            agent.id,
            state,
            detail,
            json.dumps(drift),
            summary,
            llm_seconds,
        )
        return AgentState(
            agent=agent.name, state=AgentStateKind(state), detail=detail, drift=drift, **dict(row)
        )

    async def agent_states(self) -> list[AgentState]:
        rows = await self.pool.fetch(
            """SELECT p.name AS agent, s.state, s.detail, s.drift, s.summary, s.llm_seconds,
                      s.updated_at
               FROM agent_states s JOIN principals p ON p.id = s.principal_id ORDER BY p.name"""
        )
        return [AgentState(**{**dict(r), "drift": json.loads(r["drift"])}) for r in rows]

    # moderation -------------------------------------------------------------------

    async def mute(self, target: Principal, until: datetime, reason: str, by: Principal) -> None:
        async with self.transaction() as conn:
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
            await self._log(conn, "mute", by.id, target.id, None, reason)

    async def unmute(self, target: Principal, by: Principal) -> bool:
        async with self.transaction() as conn:
            lifted = await conn.fetch(
                """UPDATE mutes SET lifted_at = now(), lifted_by = $2
                   WHERE principal_id = $1 AND lifted_at IS NULL AND until > now()
                   RETURNING id""",
                target.id,
                by.id,
            )
            if lifted:
                await self._log(conn, "unmute", by.id, target.id, None, "")
        return bool(lifted)

    async def active_mute(self, principal_id: int) -> datetime | None:
        return await self.pool.fetchval(
            """SELECT max(until) FROM mutes
               WHERE principal_id = $1 AND lifted_at IS NULL AND until > now()""",
            principal_id,
        )

    async def kick(self, target: Principal, room: str | None, reason: str, by: Principal) -> None:
        """Disconnect ``target``, or revoke its admission to ``room``, on every hub."""
        async with self.transaction() as conn:
            if room is not None:
                await conn.execute(
                    "DELETE FROM room_members WHERE room = $1 AND principal_id = $2",
                    room,
                    target.id,
                )
            await self._log(conn, "kick", by.id, target.id, room, reason, notify=True)

    async def set_paused(self, room: str, paused: bool, reason: str, by: Principal) -> bool:
        """Pause or resume a room; False when it already was in that state."""
        async with self.transaction() as conn:
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
                await self._log(conn, "pause" if paused else "resume", by.id, None, room, reason)
        return bool(changed)

    async def moderation_log(self, limit: int = 100) -> list[dict[str, Any]]:
        rows = await self.pool.fetch(
            """SELECT a.id, a.action, actor.name AS actor, target.name AS target, a.room,
                      a.reason, a.created_at
               FROM moderation_actions a
               LEFT JOIN principals actor ON actor.id = a.actor_id
               LEFT JOIN principals target ON target.id = a.target_id
               ORDER BY a.id DESC LIMIT $1""",
            limit,
        )
        return [dict(r) for r in rows]

    async def last_action_id(self) -> int:
        return await self.pool.fetchval("SELECT coalesce(max(id), 0) FROM moderation_actions")

    async def control_actions_since(self, after_id: int) -> list[ControlAction]:
        """Kicks and revocations logged after ``after_id``, oldest first."""
        rows = await self.pool.fetch(
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

    @staticmethod
    async def _log(
        conn: asyncpg.Connection,
        action: str,
        actor_id: int | None,
        target_id: int | None,
        room: str | None,
        reason: str,
        *,
        detail: dict[str, Any] | None = None,
        notify: bool = False,
    ) -> None:
        """Log a moderation action in the moderation log and the audit chain; with
        ``notify``, tell every hub in the same commit."""
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
        await audit.append(
            conn,
            f"moderation.{action}",
            actor=names.get(actor_id),
            subject=names.get(target_id),
            detail={"room": room, "reason": reason, **(detail or {})},
        )
        if notify:
            control = ControlAction(action_id, action, target_id, room, detail or {})
            await conn.execute(
                "SELECT pg_notify($1, $2)", CONTROL_CHANNEL, json.dumps(asdict(control))
            )
