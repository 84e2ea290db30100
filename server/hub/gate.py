"""The gate every client event passes before and after its handler.

In order: a known session (with its agent's lease, :meth:`Leases.check`), the
principal's rate limit, the role check for moderator
events, and validation of the payload against the event's request model; then the
handler runs. Whatever it raises becomes an error acknowledgement: the error tree's
classes as they are (:meth:`HubError.body`), a database that is away as
``unavailable``, anything else as ``internal`` (logged). A result is acknowledged with
its response model's JSON, so the wire is written in one place. An event of no protocol
name (the packet layer sends every one here) passes the same session and rate checks
before it is answered ``unknown_event``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import structlog
from pydantic import BaseModel, ValidationError

from botarena.server import auth
from botarena.server.errors import (
    Forbidden,
    HubError,
    Internal,
    InvalidPayload,
    RateLimited,
    Unauthorized,
    Unavailable,
    UnknownEvent,
)
from botarena.server.hub.context import UNAVAILABLE, HubContext
from botarena.server.hub.leases import Leases
from botarena.server.hub.sessions import Session, Sessions
from botarena.server.hub.transport import error_ack, ok_ack
from botarena.server.metrics import HubMetrics
from botarena.server.protocol import (
    MODERATOR_EVENTS,
    REQUESTS,
    EmptyRequest,
    Payload,
)
from botarena.server.ratelimit import Buckets

log = structlog.get_logger(__name__)

Handler = Callable[[HubContext, Session, Any], Awaitable[BaseModel | None]]
"""An event handler: the hub, the caller's session, the validated request; its response."""

EventTable = Mapping[str, Handler]
"""A handler group's events: event name -> handler."""

Acknowledged = Callable[..., Awaitable[dict[str, Any]]]
"""A Socket.IO event handler that answers with an acknowledgement."""


def _invalid(name: str, exc: ValidationError) -> InvalidPayload:
    problems = [
        {"field": ".".join(str(p) for p in e["loc"]) or "(payload)", "problem": e["msg"]}
        for e in exc.errors(include_url=False, include_input=False)[:10]
    ]
    summary = "; ".join(f"{p['field']}: {p['problem']}" for p in problems)
    return InvalidPayload(f"bad {name} payload: {summary}", problems=problems)


class Gate:
    """Wraps event handlers into acknowledged Socket.IO handlers."""

    def __init__(
        self, sessions: Sessions, limiter: Buckets, metrics: HubMetrics, leases: Leases
    ) -> None:
        self.sessions = sessions
        self.limiter = limiter
        self.metrics = metrics
        self.leases = leases

    def wrap(self, name: str, handler: Handler, hub: HubContext) -> Acknowledged:
        model = REQUESTS[name]
        metrics = self.metrics

        async def gated(sid: str, *args: Any) -> dict[str, Any]:
            metrics.events.labels(name).inc()
            try:
                return ok_ack(await self._admit(hub, name, model, handler, sid, args))
            except HubError as exc:
                metrics.errors.labels(name, exc.code).inc()
                return error_ack(exc)

        return gated

    async def unknown(self, sid: str, event: str) -> dict[str, Any]:
        """The answer to an event the protocol does not have."""
        self.metrics.events.labels("unknown").inc()
        try:
            await self._session(sid)
            raise UnknownEvent(f"no event named {event[:64]!r}")
        except HubError as exc:
            self.metrics.errors.labels("unknown", exc.code).inc()
            return error_ack(exc)

    async def _session(self, sid: str) -> Session:
        """The caller's session, once it has spent a token from its principal's bucket."""
        session = self.sessions.get(sid)
        if session is None:
            raise Unauthorized("not authenticated")
        self.leases.check(session)
        wait = await self.limiter.take(session.principal.name)
        if wait:
            raise RateLimited(f"too many events: wait {wait:.2f}s", retry_after=round(wait, 3))
        return session

    async def _admit(
        self,
        hub: HubContext,
        name: str,
        model: type[Payload],
        handler: Handler,
        sid: str,
        args: tuple[Any, ...],
    ) -> BaseModel | None:
        session = await self._session(sid)
        if name in MODERATOR_EVENTS and not auth.may_call(session.principal, name):
            raise Forbidden(f"{name} is for moderators")
        if len(args) > 1:
            raise InvalidPayload(f"{name} takes one payload object")
        raw = args[0] if args else None
        if raw is None and model is EmptyRequest:
            raw = {}
        try:
            request = model.model_validate(raw)
        except ValidationError as exc:
            raise _invalid(name, exc) from None
        try:
            return await handler(hub, session, request)
        except HubError:
            raise
        except UNAVAILABLE as exc:
            log.warning("hub.store_unavailable", event_name=name, error=str(exc))
            raise Unavailable("the hub's database is unavailable; retry") from None
        except Exception:
            log.exception("hub.event_failed", event_name=name)
            raise Internal("internal error; the hub logged it") from None
