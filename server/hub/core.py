"""The hub's core: the Socket.IO server, connections and sessions, and the event table.

:class:`Hub` accepts a connection when its token names a principal (a refusal carries
the error code), keeps a :class:`~botarena.server.hub.sessions.Session` for it, puts it
in its principal's room (and moderators in the supervisors' room), and routes every
protocol event through the :class:`~botarena.server.hub.gate.Gate` to its handler in
the table of :mod:`~botarena.server.hub.events`; the packet layer
(:mod:`~botarena.server.hub.transport`) lets nothing else reach a handler. A connect
spends from its principal's rate bucket like an event, and an address whose connects
keep being refused is refused before its tokens are looked up. With
``BOTARENA_REDIS_URL`` several hub processes share rooms and rate buckets through Redis.
"""

from __future__ import annotations

import asyncio
from typing import Any

import socketio
import structlog

from botarena.server.errors import HubError, Internal, RateLimited, Unauthorized, Unavailable
from botarena.server.hub.context import UNAVAILABLE, HubContext
from botarena.server.hub.events import event_table
from botarena.server.hub.gate import Gate
from botarena.server.hub.jobs import Jobs
from botarena.server.hub.leases import Leases, named_worker
from botarena.server.hub.sessions import Session, Sessions, personal_room
from botarena.server.hub.transport import HubServer, too_many_refusals
from botarena.server.metrics import HubMetrics
from botarena.server.protocol import SUPERVISORS_ROOM, AgentStateKind, Role
from botarena.server.ratelimit import buckets
from botarena.server.settings import HubSettings
from botarena.server.store import Store

log = structlog.get_logger(__name__)

MAX_TOKEN_CHARS = 256


class Hub:
    """One hub process: Socket.IO event handlers over a :class:`Store`."""

    def __init__(self, settings: HubSettings, store: Store, metrics: HubMetrics) -> None:
        self.settings = settings
        self.store = store
        self.metrics = metrics
        manager = socketio.AsyncRedisManager(settings.redis_url) if settings.redis_url else None
        self.sessions = Sessions()
        self.limiter = buckets(
            settings.redis_url, "principal", settings.rate_per_second, settings.rate_burst
        )
        self.refusals = buckets(
            settings.redis_url,
            "refused",
            settings.refused_connects_per_second,
            settings.refused_connects_burst,
        )
        table = event_table()
        self.leases = Leases(settings, store, self.sessions, lambda sid: self.sio.disconnect(sid))
        gate = Gate(self.sessions, self.limiter, metrics, self.leases)
        self.sio = HubServer(
            table,
            gate.unknown,
            self._spend_refusal,
            async_mode="aiohttp",
            client_manager=manager,
            max_http_buffer_size=settings.max_payload_bytes,
            cors_allowed_origins=[],
            logger=False,
            engineio_logger=False,
        )
        self.context = HubContext(settings, store, metrics, self.sio)
        self.jobs = Jobs(self.context, self.sessions, self.leases)
        self.sio.on("connect", self._on_connect)
        self.sio.on("disconnect", self._on_disconnect)
        for name, handler in table.items():
            self.sio.on(name, gate.wrap(name, handler, self.context))

    @property
    def control_ready(self) -> asyncio.Event:
        """Set once this hub listens for control actions (kicks, revoked tokens)."""
        return self.jobs.control_ready

    # life cycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Start the background jobs; return once control actions are listened for."""
        await self.jobs.start()

    async def drop_connections(self) -> None:
        """Close every client's transport so that clients reconnect (to this hub when it
        returns, or to another behind the load balancer) and resume where they were.
        Each is aborted (:meth:`HubServer.abort`): aiohttp would otherwise wait its whole
        shutdown timeout for open websockets."""
        for eio_sid in list(self.sio.eio.sockets):
            await self.sio.abort(eio_sid, "hub shutting down")

    async def stop(self) -> None:
        await self.jobs.stop()
        await self.context.poster.stop()

    # connections ------------------------------------------------------------------

    async def _spend_refusal(self, environ: dict[str, Any]) -> float:
        """A frame refused before its connection authenticated (an event, or a CONNECT
        that does not decode) spends from its address's refusal bucket, as a refused
        token does: the seconds to wait once the address has none left."""
        return await self.refusals.take(_address(environ))

    async def _on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        address = _address(environ)
        try:
            session = await self._admit(sid, address, auth)
        except HubError as exc:
            self.metrics.connects_refused.labels(str(exc.code)).inc()
            raise socketio.exceptions.ConnectionRefusedError(
                exc.message, {"code": str(exc.code), **exc.detail}
            ) from None
        self.sessions.add(session)
        principal = session.principal
        await self.sio.enter_room(sid, personal_room(principal.id))
        if principal.supervises:
            await self.sio.enter_room(sid, SUPERVISORS_ROOM)
        self.metrics.connections.inc()
        log.info("hub.connect", principal=principal.name, role=principal.role.value)

    async def _admit(self, sid: str, address: str, auth: Any) -> Session:
        """The session of an accepted connect; refusals spend from the address's bucket,
        and an address without tokens left is refused before its token is looked up."""
        wait = await self.refusals.peek(address)
        if wait:
            raise too_many_refusals(wait)
        try:
            session = await self._authenticate(sid, auth)
        except HubError as exc:
            if not isinstance(exc, Unavailable):
                await self.refusals.take(address)
            raise
        except Exception:
            log.exception("hub.connect_failed")
            raise Internal("internal error; the hub logged it") from None
        wait = await self.limiter.take(session.principal.name)
        if wait:
            raise RateLimited(f"too many connects and events: wait {wait:.2f}s", retry_after=wait)
        worker = named_worker(auth)
        if worker is not None:
            await self.leases.take(session, worker)
        return session

    async def _authenticate(self, sid: str, auth: Any) -> Session:
        token = auth.get("token") if isinstance(auth, dict) else None
        if not isinstance(token, str) or not token:
            raise Unauthorized("no token: connect with auth={'token': TOKEN}")
        if len(token) > MAX_TOKEN_CHARS:
            raise Unauthorized("unknown token")
        try:
            principal, token_id = await self.store.principals.authenticate(token)
        except UNAVAILABLE:
            raise Unavailable("the hub's database is unavailable; retry") from None
        return Session(sid, principal, token_id)

    async def _on_disconnect(self, sid: str, *_reason: Any) -> None:
        session, last = self.sessions.remove(sid)
        if session is None:
            return
        await self.leases.release(session)
        if last:
            if session.principal.role is Role.AGENT:
                await self.context.publish_agent_state(session.principal, AgentStateKind.OFFLINE)
        self.metrics.connections.dec()


def _address(environ: dict[str, Any]) -> str:
    """The peer address of a connection, from its environ."""
    request = environ.get("aiohttp.request")
    return str(getattr(request, "remote", None) or environ.get("REMOTE_ADDR", "?"))
