"""The hub's sessions: who is on each Socket.IO connection, and what it has joined.

A :class:`Session` is made when a connection's token is accepted and dropped when it
closes. :class:`Sessions` finds them by Socket.IO id and by principal (a principal may
be connected several times, for example a console and the CLI), which is how control
actions and disconnections reach every connection of one principal.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from botarena.server.auth import Principal


def personal_room(principal_id: int) -> str:
    """The Socket.IO room holding every connection of one principal, on every hub."""
    return f"principal:{principal_id}"


@dataclass
class Session:
    """One authenticated connection."""

    sid: str
    principal: Principal
    token_id: int
    joined: dict[str, bool] = field(default_factory=dict)  # room -> may post
    worker: str | None = None  # the worker process of an agent holding its lease
    lease_until: float | None = None  # monotonic time its lease is trusted until


class Sessions(dict[str, Session]):
    """The open sessions of this hub process, by Socket.IO id (and by principal)."""

    def __init__(self) -> None:
        super().__init__()
        self._sids_of: dict[int, set[str]] = defaultdict(set)

    def add(self, session: Session) -> None:
        self[session.sid] = session
        self._sids_of[session.principal.id].add(session.sid)

    def remove(self, sid: str) -> tuple[Session | None, bool]:
        """Forget a closed connection: its session (None if unknown), and whether it was
        its principal's last connection to this hub."""
        session = self.pop(sid, None)
        if session is None:
            return None, False
        sids = self._sids_of.get(session.principal.id)
        if sids is None:
            return session, False
        sids.discard(sid)
        if sids:
            return session, False
        del self._sids_of[session.principal.id]
        return session, True

    def of_principal(self, principal_id: int) -> list[Session]:
        """Every open session of one principal on this hub."""
        found = (self.get(sid) for sid in self._sids_of.get(principal_id, ()))
        return [session for session in found if session is not None]
