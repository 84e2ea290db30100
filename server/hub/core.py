"""The hub's core: the Socket.IO server, connections and sessions, and the event table.

:class:`Hub` accepts a connection when its token names a principal (a refusal carries
the error code), keeps a :class:`~botarena.server.hub.sessions.Session` for it, puts it
in its principal's room (and moderators in the supervisors' room), and routes every
protocol event through the :class:`~botarena.server.hub.gate.Gate` to its handler in
the table of :mod:`~botarena.server.hub.events`. With ``BOTARENA_REDIS_URL`` several
hub processes share rooms through Redis.
"""

from __future__ import annotations

import asyncio
from typing import Any

import socketio
import structlog

from botarena.server.errors import HubError, Unauthorized, Unavailable
from botarena.server.hub.context import UNAVAILABLE, HubContext
from botarena.server.hub.events import event_table
from botarena.server.hub.gate import Gate
from botarena.server.hub.jobs import Jobs
from botarena.server.hub.sessions import Session, Sessions, personal_room
from botarena.server.metrics import HubMetrics
from botarena.server.protocol import SUPERVISORS_ROOM, AgentStateKind, Role
from botarena.server.ratelimit import RateLimiter
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
        self.sio = socketio.AsyncServer(
            async_mode="aiohttp",
            client_manager=manager,
            max_http_buffer_size=settings.max_payload_bytes,
            cors_allowed_origins=[],
            logger=False,
            engineio_logger=False,
        )
        self.context = HubContext(settings, store, metrics, self.sio)
        self.sessions = Sessions()
        self.limiter = RateLimiter(settings.rate_per_second, settings.rate_burst)
        self.jobs = Jobs(self.context, self.sessions)
        gate = Gate(self.context, self.sessions, self.limiter)
        self.sio.on("connect", self._on_connect)
        self.sio.on("disconnect", self._on_disconnect)
        self.sio.on("*", gate.unknown)
        for name, handler in event_table().items():
            self.sio.on(name, gate.wrap(name, handler))

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

        A Socket.IO server disconnect would tell clients not to come back, and aiohttp
        would otherwise wait its whole shutdown timeout for open websockets. Aborting
        the Engine.IO socket and waking its writer closes the websocket at once.
        """
        for sock in list(self.sio.eio.sockets.values()):
            await sock.close(wait=False, abort=True, reason="hub shutting down")
            await sock.queue.put(None)

    async def stop(self) -> None:
        await self.jobs.stop()

    # connections ------------------------------------------------------------------

    async def _on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        try:
            session = await self._authenticate(sid, auth)
        except HubError as exc:
            self.metrics.connects_refused.labels(str(exc.code)).inc()
            raise socketio.exceptions.ConnectionRefusedError(
                exc.message, {"code": str(exc.code)}
            ) from None
        self.sessions.add(session)
        principal = session.principal
        await self.sio.enter_room(sid, personal_room(principal.id))
        if principal.supervises:
            await self.sio.enter_room(sid, SUPERVISORS_ROOM)
        self.metrics.connections.inc()
        log.info("hub.connect", principal=principal.name, role=principal.role.value)

    async def _authenticate(self, sid: str, auth: Any) -> Session:
        token = auth.get("token") if isinstance(auth, dict) else None
        if not isinstance(token, str) or not token:
            raise Unauthorized("no token: connect with auth={'token': TOKEN}")
        if len(token) > MAX_TOKEN_CHARS:
            raise Unauthorized("unknown token")
        try:
            found = await self.store.principals.authenticate(token)
        except UNAVAILABLE:
            raise Unavailable("the hub's database is unavailable; retry") from None
        if isinstance(found, str):  # why the token is refused
            raise Unauthorized(found)
        principal, token_id = found
        return Session(sid, principal, token_id)

    async def _on_disconnect(self, sid: str, *_reason: Any) -> None:
        session, last = self.sessions.remove(sid)
        if session is None:
            return
        if last:
            self.limiter.forget(session.principal.id)
            if session.principal.role is Role.AGENT:
                await self.context.publish_agent_state(session.principal, AgentStateKind.OFFLINE)
        self.metrics.connections.dec()
