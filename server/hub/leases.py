"""The hub's side of agent leases: an agent connecting from a worker holds its lease.

An agent's connect that names its worker (``auth={'token': ..., 'worker': ...}``) is
admitted only once :meth:`Leases.take` has given that worker the agent's lease
(:mod:`botarena.server.store.leases`); otherwise it is refused ``leased``, and the worker
is counted as waiting. Once admitted, the agent's older leased sessions on this hub
are closed. The hub renews the leases of its sessions every third of
``lease_seconds`` (:meth:`Leases.renew`); a session whose lease was not renewed in time
(the database away, or the lease taken by another worker after it expired) is closed,
and an event it sends meanwhile is refused (:meth:`Leases.check`): a session stops
acting before its lease can expire, which is what keeps an agent from speaking from two
workers at once, across hubs too. A session that closes releases its lease at once.
Agent connects that name no worker take no lease (a single worker, a test client).
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from botarena.server.errors import InvalidPayload, Leased, Unavailable
from botarena.server.hub.sessions import Session, Sessions
from botarena.server.protocol import WORKER_PATTERN, Role
from botarena.server.settings import HubSettings
from botarena.server.store import Store
from botarena.server.store.database import UNAVAILABLE

log = structlog.get_logger(__name__)

_WORKER = re.compile(WORKER_PATTERN)


def named_worker(auth: Any) -> str | None:
    """The worker a connect's ``auth`` names (None: none); refuses a malformed one."""
    worker = auth.get("worker") if isinstance(auth, dict) else None
    if worker is None:
        return None
    if not isinstance(worker, str) or not _WORKER.fullmatch(worker):
        raise InvalidPayload(f"worker must match {WORKER_PATTERN}")
    return worker


class Leases:
    """Takes, renews and releases the leases of this hub's agent sessions."""

    def __init__(
        self,
        settings: HubSettings,
        store: Store,
        sessions: Sessions,
        disconnect: Callable[[str], Awaitable[None]],
    ) -> None:
        """``disconnect``: closes a session by its Socket.IO id."""
        self.store = store
        self.sessions = sessions
        self.disconnect = disconnect
        self.seconds = settings.lease_seconds
        self.renew_every = self.seconds / 3

    async def take(self, session: Session, worker: str) -> None:
        """Lease the session's agent to ``worker``, or refuse the connect ``leased``."""
        if session.principal.role is not Role.AGENT:
            raise InvalidPayload("only agents connect from a worker")
        started = time.monotonic()
        try:
            taken = await self.store.leases.take(
                session.principal, worker, session.sid, self.seconds
            )
        except UNAVAILABLE:
            raise Unavailable("the hub's database is unavailable; retry") from None
        if not taken.held:
            until = taken.expires_at.isoformat() if taken.expires_at else None
            raise Leased(
                f"{session.principal.name} runs on worker {taken.holder}",
                holder=taken.holder,
                expires_at=until,
            )
        session.worker = worker
        session.lease_until = started + self.seconds - self.renew_every
        if taken.holder != worker:
            log.info("lease.taken", agent=session.principal.name, worker=worker, was=taken.holder)
        for other in self.sessions.of_principal(session.principal.id):
            if other.worker is not None and other.sid != session.sid:  # its lease is gone
                await self._close(other, f"its agent's lease went to a newer session of {worker}")

    async def release(self, session: Session) -> None:
        """Give up a closed session's lease (it expires by itself if the database is away)."""
        if session.worker is None:
            return
        try:
            await self.store.leases.release(session.principal, session.sid)
        except UNAVAILABLE as exc:
            log.warning("lease.not_released", agent=session.principal.name, error=str(exc))

    def check(self, session: Session) -> None:
        """Refuse an event from a session whose lease may have lapsed."""
        if session.lease_until is not None and time.monotonic() >= session.lease_until:
            raise Leased(f"the lease of {session.principal.name} lapsed; reconnect")

    async def renew(self) -> None:
        """Renew this hub's leases; close the sessions that lost theirs or that could not
        be renewed before they might expire."""
        leased = [s for s in self.sessions.values() if s.worker is not None]
        if not leased:
            return
        started = time.monotonic()
        try:
            renewed = await self.store.leases.renew([s.sid for s in leased], self.seconds)
        except UNAVAILABLE as exc:
            log.warning("lease.not_renewed", sessions=len(leased), error=str(exc))
            renewed = None
        for session in leased:
            if renewed is not None and session.sid in renewed:
                session.lease_until = started + self.seconds - self.renew_every
            elif renewed is not None:
                await self._close(session, "its lease was taken by another worker")
            elif session.lease_until is not None and self._due(session.lease_until):
                await self._close(session, "its lease could not be renewed")

    def _due(self, lease_until: float) -> bool:
        """Whether a lease not renewed now would lapse before the next round can renew
        it (half a round of leeway: the rounds are not exactly on time)."""
        return time.monotonic() + self.renew_every / 2 >= lease_until

    async def _close(self, session: Session, why: str) -> None:
        if session.sid in self.sessions:
            log.info("lease.session_closed", agent=session.principal.name, reason=why)
            session.lease_until = 0.0  # refuse its events from now on
            await self.disconnect(session.sid)
