"""HTTP limits in front of the hub: what a client may cost before it shows a token.

aiohttp reads the requests and python-engineio turns them into sessions; neither bounds
what a client without a token may hold. :class:`HttpGuard` is an aiohttp middleware
that refuses a body longer than the largest frame (413) or of no stated length (411)
before anything reads it, gives a body ``http_body_timeout`` seconds to arrive (408),
and lets a request open an Engine.IO connection (a handshake, or a websocket upgrade)
only while its address has handshakes left in a token bucket and fewer sessions waiting
to authenticate than the cap (429 with ``Retry-After``, before any session exists). A
refused body closes its connection; an accepted one reaches Engine.IO whole (its
single read would otherwise take only the part already arrived). Headers are bounded
by aiohttp itself: :meth:`HttpGuard.server_options` sets the server's keep-alive
timeout, which aiohttp (3.14) counts from the moment a connection opens and from the
end of each answer, so a connection whose request headers are not complete by then is
closed without an answer.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Container, Mapping
from typing import Any

from aiohttp import web

from botarena.server.metrics import HubMetrics
from botarena.server.ratelimit import RateLimiter
from botarena.server.settings import HubSettings

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

PendingCount = Callable[[str], int]
"""How many sessions from one address have not authenticated yet."""

ENGINEIO_PATH = "/socket.io/"
"""Where the hub serves Engine.IO (python-socketio's default path)."""

_LINGERING_SECONDS = 10.0
"""aiohttp's own bound on reading and dropping a body it did not use."""

_BUFFER_BYTES = 2**18
"""aiohttp's own read buffer; raised when a whole frame would not fit in it."""


def unauthenticated_sessions(
    environs: Mapping[str, Mapping[str, Any]],
    sid_of: Callable[[str], str | None],
    sessions: Container[str],
) -> PendingCount:
    """Count an address's Engine.IO sessions that have no authenticated hub session.

    ``environs`` is python-socketio's table of Engine.IO sessions (each environ carries
    its aiohttp request, hence its address), ``sid_of`` maps an Engine.IO session to
    its Socket.IO session (None before CONNECT) and ``sessions`` holds the Socket.IO
    sessions whose token was accepted.
    """

    def count(address: str) -> int:
        pending = 0
        for eio_sid, environ in environs.items():
            request = environ.get("aiohttp.request")
            if request is None or request.remote != address:
                continue
            sid = sid_of(eio_sid)
            if sid is None or sid not in sessions:
                pending += 1
        return pending

    return count


class HttpGuard:
    """The hub's HTTP limits: an aiohttp middleware and the server options it needs."""

    def __init__(self, settings: HubSettings, metrics: HubMetrics, pending: PendingCount) -> None:
        self.settings = settings
        self.metrics = metrics
        self.pending = pending
        self.handshakes = RateLimiter(settings.handshakes_per_second, settings.handshakes_burst)

    def server_options(self) -> dict[str, Any]:
        """Options for aiohttp's server: ``web.AppRunner(app, **guard.server_options())``."""
        return {
            "keepalive_timeout": self.settings.http_header_timeout,
            "lingering_time": min(_LINGERING_SECONDS, self.settings.http_body_timeout),
            "read_bufsize": max(_BUFFER_BYTES, self.settings.max_payload_bytes),
        }

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if _opens_connection(request):
            refused = self._admit(request.remote or "")
            if refused is not None:
                return refused
        if request.body_exists:
            refused = await self._receive_body(request)
            if refused is not None:
                return refused
        return await handler(request)

    def _admit(self, address: str) -> web.Response | None:
        """None when ``address`` may open one more connection, else the refusal."""
        wait = self.handshakes.take(address)
        if wait:
            text = f"too many new connections from this address; retry in {wait:.1f} s"
            return self._refuse("handshake_rate", 429, text, retry_after=math.ceil(wait))
        if self.pending(address) >= self.settings.max_unauthenticated_connections:
            text = "too many connections from this address have not authenticated"
            return self._refuse("unauthenticated", 429, text, retry_after=1)
        return None

    async def _receive_body(self, request: web.Request) -> web.Response | None:
        """Wait until the whole body has arrived (it stays unread, for the handler);
        None when it has, else the refusal, which closes the connection."""
        length = request.content_length
        if length is None:
            return self._refuse("length_required", 411, "a body needs a Content-Length")
        limit = self.settings.max_payload_bytes
        if length > limit:
            return self._refuse("too_large", 413, f"a body may hold at most {limit} bytes")
        try:
            async with asyncio.timeout(self.settings.http_body_timeout):
                await request.content.wait_eof()
        except TimeoutError:
            return self._refuse("body_timeout", 408, "the body took too long to arrive")
        return None

    def _refuse(
        self, reason: str, status: int, text: str, *, retry_after: int | None = None
    ) -> web.Response:
        """The answer to a refused request, counted by reason. A refused handshake
        (``retry_after`` set) keeps its connection; a refused body closes it, since
        what follows the body on that connection cannot be trusted."""
        self.metrics.http_refused.labels(reason).inc()
        if retry_after is not None:
            headers = {"Retry-After": str(retry_after)}
            return web.Response(status=status, text=text + "\n", headers=headers)
        response = web.Response(status=status, text=text + "\n")
        response.force_close()
        return response


def _opens_connection(request: web.Request) -> bool:
    """Whether ``request`` opens an Engine.IO connection: a handshake (no session id
    yet, any transport) or a websocket upgrade of a session."""
    if request.method != "GET" or not request.path.startswith(ENGINEIO_PATH):
        return False
    query = request.query
    return "sid" not in query or query.get("transport") == "websocket"
