"""Temporary: the store's names from before its repositories, kept until the hub, the
commands and the launcher call ``store.<area>.<method>``; delete this module then.

:class:`LegacyNames` answers the facade's old flat methods (``store.issue_token``,
``store.post``...) from the repositories, ``post`` with its old status instead of the
error tree's classes. :func:`on_connection` gives a store whose repositories run on one
caller's connection, for the old connection-taking functions of ``audit`` and
``checkpoint``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import asyncpg

from botarena.server.auth import Principal
from botarena.server.errors import Muted, NotFound, RoomPaused, UnknownRoom
from botarena.server.protocol import Message

if TYPE_CHECKING:
    from botarena.server.store.facade import Store
    from botarena.server.store.messages import MessageRepository

_MOVED: dict[str, tuple[str, str]] = {
    "issue_token": ("principals", "issue_token"),
    "authenticate": ("principals", "authenticate"),
    "principal": ("principals", "get"),
    "tokens": ("principals", "tokens"),
    "revoke_tokens": ("principals", "revoke_tokens"),
    "room": ("rooms", "get"),
    "is_member": ("rooms", "is_member"),
    "rooms_for": ("rooms", "visible_to"),
    "open_dm": ("rooms", "open_dm"),
    "create_group": ("rooms", "create_group"),
    "add_member": ("rooms", "add_member"),
    "history": ("messages", "history"),
    "react": ("messages", "react"),
    "set_agent_state": ("agents", "report"),
    "agent_states": ("agents", "states"),
    "mute": ("moderation", "mute"),
    "unmute": ("moderation", "unmute"),
    "active_mute": ("moderation", "active_mute"),
    "kick": ("moderation", "kick"),
    "set_paused": ("moderation", "set_paused"),
    "moderation_log": ("moderation", "log"),
    "last_action_id": ("moderation", "last_action_id"),
    "control_actions_since": ("moderation", "control_actions_since"),
}
"""Old flat name -> (repository, method)."""


@dataclass(frozen=True)
class PostResult:
    status: str  # ok | duplicate | muted | paused | unknown_room | bad_reply
    message: Message | None


class LegacyNames:
    """The facade's flat methods of before, answered by its repositories."""

    messages: MessageRepository

    def __getattr__(self, name: str) -> Any:
        if name not in _MOVED:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        area, method = _MOVED[name]
        return getattr(getattr(self, area), method)

    async def post(self, room: str, author: Principal, text: str, **options: Any) -> PostResult:
        try:
            posted = await self.messages.post(room, author, text, **options)
        except Muted:
            return PostResult("muted", None)
        except RoomPaused:
            return PostResult("paused", None)
        except UnknownRoom:
            return PostResult("unknown_room", None)
        except NotFound:
            return PostResult("bad_reply", None)
        return PostResult("duplicate" if posted.duplicate else "ok", posted.message)


class _Lent:
    """One caller's connection, lent where the store expects its pool."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[asyncpg.Connection]:
        yield self._conn

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


def on_connection(conn: asyncpg.Connection) -> Store:
    """A store whose repositories all run on ``conn``."""
    from botarena.server.store.facade import Store

    return Store(cast(asyncpg.Pool, _Lent(conn)), "")
