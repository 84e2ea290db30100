"""The hub: the Socket.IO server where agents and moderators meet in rooms.

:class:`Hub` authenticates each connection by token, answers every client event of
:mod:`server.protocol` with an acknowledgement (its result or an error code and
message), stores each message before broadcasting it, and applies moderation. Each
event goes through the same gate: a known session, the principal's rate limit, the
role check for moderator events, and validation of the payload; whatever goes wrong
after that is answered with an error, never a crash. Control actions that must reach
every hub process (kick, token revoked) arrive through the store's NOTIFY channel.
"""

from __future__ import annotations

import asyncio
import base64
import json
import tempfile
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import socketio
import structlog
from pydantic import BaseModel, ValidationError

from botarena.arenas.names import RoomKind, dm_room, group_room, room_kind, ticket_path
from botarena.server import audit, auth, reputation
from botarena.server.artifacts import Artifacts
from botarena.server.auth import Principal
from botarena.server.errors import ObjectStoreError
from botarena.server.metrics import HubMetrics
from botarena.server.objects import ObjectStore, open_objects
from botarena.server.patching import unified_diff
from botarena.server.proposals import ProposalStore
from botarena.server.protocol import (
    MODERATOR_EVENTS,
    REQUESTS,
    SUPERVISORS_ROOM,
    Ack,
    AgentState,
    AgentStateKind,
    AgentStateReport,
    AttachmentPut,
    AttachmentRef,
    CanonRequest,
    DirectRequest,
    EmptyRequest,
    ErrorBody,
    ErrorCode,
    GroupCreateRequest,
    HistoryRequest,
    HistoryResult,
    InviteRequest,
    JoinRequest,
    JoinResult,
    KickRequest,
    LeaveRequest,
    ModerationNotice,
    MuteRequest,
    PauseRequest,
    ProposalCreate,
    ProposalQuery,
    ProposalRef,
    ProposalReview,
    ReactRequest,
    ResumeRequest,
    Role,
    RoomInfo,
    RoomState,
    SendRequest,
    TicketFile,
    TicketQuery,
    UnmuteRequest,
    Whoami,
    ticket_announcement,
)
from botarena.server.ratelimit import RateLimiter
from botarena.server.settings import Settings
from botarena.server.store import CONTROL_CHANNEL, ControlAction, Room, Store, StoreError

log = structlog.get_logger(__name__)

_UNAVAILABLE = (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, OSError)


class HubError(Exception):
    """An event refused with a protocol error code and a message for the client."""

    def __init__(self, code: ErrorCode, message: str, **detail: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.detail = detail or None


def error_ack(code: ErrorCode, message: str, detail: dict[str, Any] | None = None) -> dict:
    error = ErrorBody(code=code, message=message, detail=detail)
    return Ack(ok=False, error=error).model_dump(mode="json")


def ok_ack(data: Any) -> dict:
    if isinstance(data, BaseModel):
        data = data.model_dump(mode="json")
    return {"ok": True, "data": data, "error": None}


def personal_room(principal_id: int) -> str:
    """The Socket.IO room holding every connection of one principal, on every hub."""
    return f"principal:{principal_id}"


@dataclass
class Session:
    principal: Principal
    token_id: int
    joined: dict[str, bool] = field(default_factory=dict)  # room -> may post


Handler = Callable[[str, Session, Any], Awaitable[Any]]


class Hub:
    """Socket.IO event handlers over a :class:`Store`."""

    def __init__(self, settings: Settings, store: Store, metrics: HubMetrics) -> None:
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
        self.limiter = RateLimiter(settings.rate_per_second, settings.rate_burst)
        self.proposals = ProposalStore(store.pool)
        self.sessions: dict[str, Session] = {}
        self.sids_of: dict[int, set[str]] = defaultdict(set)
        self._room_locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._control_task: asyncio.Task[None] | None = None
        self._audit_task: asyncio.Task[None] | None = None
        self._archive_task: asyncio.Task[None] | None = None
        self._objects: ObjectStore | None = None
        self._control_ready = asyncio.Event()
        self._control_seen: int | None = None  # last control action applied

        self.sio.on("connect", self._on_connect)
        self.sio.on("disconnect", self._on_disconnect)
        self.sio.on("*", self._on_unknown)
        handlers: dict[str, Handler] = {
            "whoami": self.whoami,
            "rooms": self.rooms,
            "join": self.join,
            "leave": self.leave,
            "send": self.send,
            "history": self.history,
            "dm.open": self.open_dm,
            "group.create": self.create_group,
            "room.invite": self.invite,
            "agent.state": self.report_agent_state,
            "agents": self.agent_states,
            "message.react": self.react,
            "reputation": self.standings,
            "proposal.create": self.propose,
            "proposal.review": self.review,
            "proposals": self.list_proposals,
            "proposal.attach": self.attach,
            "proposal.attachment": self.attachment,
            "proposal.get": self.get_proposal,
            "canon.get": self.get_canon,
            "ticket.file": self.file_ticket,
            "tickets": self.list_tickets,
            "mod.mute": self.mute,
            "mod.unmute": self.unmute,
            "mod.kick": self.kick,
            "mod.pause": self.pause,
            "mod.resume": self.resume,
        }
        assert handlers.keys() == REQUESTS.keys(), "every protocol event needs a handler"
        for name, handler in handlers.items():
            self.sio.on(name, self._gate(name, handler))

    # life cycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Start listening for control actions from every hub process."""
        self._control_task = asyncio.create_task(self._listen_control())
        self._audit_task = asyncio.create_task(self._watch_audit())
        if self.settings.archive_every_seconds:
            self._archive_task = asyncio.create_task(self._archive_daily())
        await asyncio.wait_for(self._control_ready.wait(), timeout=30)

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
        tasks = [
            t for t in (self._control_task, self._audit_task, self._archive_task) if t is not None
        ]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _archive_daily(self) -> None:
        """Archive yesterday's room transcripts to the object store (once a day is
        stored, later runs skip it; with several hubs, one of them stores it)."""
        from botarena.server.archive import archive_transcripts

        while True:
            try:
                yesterday = (datetime.now(UTC) - timedelta(days=1)).date()
                stored = await archive_transcripts(
                    self.store.pool, await self._artifacts(), yesterday
                )
                if stored:
                    log.info("archive.transcripts", day=str(yesterday), artifacts=stored)
            except ObjectStoreError as exc:
                log.warning("archive.not_stored", error=exc.message)
            except _UNAVAILABLE as exc:
                log.warning("archive.not_stored", error=str(exc))
            await asyncio.sleep(self.settings.archive_every_seconds)

    async def _watch_audit(self) -> None:
        """Verify the audit chain now and every ``audit_check_seconds``, for /metrics
        (and the alert on a broken chain)."""
        while True:
            try:
                async with self.store.pool.acquire() as conn:
                    verdict = await audit.verify(conn)
                self.metrics.audit_chain_ok.set(1 if verdict.ok else 0)
                self.metrics.audit_entries.set(verdict.entries)
                if not verdict.ok:
                    log.error("audit.chain_broken", problem=verdict.problem)
            except _UNAVAILABLE as exc:
                log.warning("audit.not_checked", error=str(exc))
            await asyncio.sleep(self.settings.audit_check_seconds)

    async def _listen_control(self) -> None:
        """Keep one connection LISTENing for control actions; reconnect when it drops."""
        delay = 0.2
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(self.store.url)
                lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

                def on_lost(_conn: object, lost: asyncio.Future[None] = lost) -> None:
                    if not lost.done():
                        lost.set_result(None)

                conn.add_termination_listener(on_lost)
                await conn.add_listener(CONTROL_CHANNEL, self._on_control)
                await self._catch_up_control()
                self._control_ready.set()
                log.info("control.listening")
                delay = 0.2
                await lost
                log.warning("control.connection_lost")
            except (*_UNAVAILABLE, asyncpg.PostgresError) as exc:
                log.warning("control.connect_failed", error=str(exc), retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            finally:
                if conn is not None and not conn.is_closed():
                    await asyncio.shield(conn.close(timeout=2))

    def _on_control(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        action = ControlAction(**json.loads(payload))
        asyncio.get_running_loop().create_task(self._apply_control(action))

    async def _catch_up_control(self) -> None:
        """After (re)connecting the listener, apply what was logged while it was away."""
        if self._control_seen is None:
            self._control_seen = await self.store.last_action_id()
            return
        for action in await self.store.control_actions_since(self._control_seen):
            await self._apply_control(action)

    async def _apply_control(self, action: ControlAction) -> None:
        if self._control_seen is not None and action.id <= self._control_seen:
            return
        self._control_seen = max(self._control_seen or 0, action.id)
        for sid in list(self.sids_of.get(action.principal_id, ())):
            session = self.sessions.get(sid)
            if session is None:
                continue
            if action.action == "revoke":
                if session.token_id == action.detail.get("token_id"):
                    await self.sio.disconnect(sid)
            elif action.room is not None:
                if session.joined.pop(action.room, None) is not None:
                    await self.sio.leave_room(sid, action.room)
            else:
                await self.sio.disconnect(sid)

    # connections ------------------------------------------------------------------

    async def _on_connect(self, sid: str, environ: dict, auth_data: Any = None) -> None:
        token = auth_data.get("token") if isinstance(auth_data, dict) else None
        if not isinstance(token, str) or not token:
            self._refuse(ErrorCode.UNAUTHORIZED, "no token: connect with auth={'token': TOKEN}")
        if len(token) > 256:
            self._refuse(ErrorCode.UNAUTHORIZED, "unknown token")
        try:
            found = await self.store.authenticate(token)
        except _UNAVAILABLE:
            self._refuse(ErrorCode.UNAVAILABLE, "the hub's database is unavailable; retry")
        if isinstance(found, str):
            self._refuse(ErrorCode.UNAUTHORIZED, found)
        principal, token_id = found
        self.sessions[sid] = Session(principal, token_id)
        self.sids_of[principal.id].add(sid)
        await self.sio.enter_room(sid, personal_room(principal.id))
        if principal.supervises:
            await self.sio.enter_room(sid, SUPERVISORS_ROOM)
        self.metrics.connections.inc()
        log.info("hub.connect", principal=principal.name, role=principal.role.value)

    def _refuse(self, code: ErrorCode, message: str) -> None:
        self.metrics.connects_refused.labels(code.value).inc()
        raise socketio.exceptions.ConnectionRefusedError(message, {"code": code.value})

    async def _on_disconnect(self, sid: str, *_reason: Any) -> None:
        session = self.sessions.pop(sid, None)
        if session is None:
            return
        sids = self.sids_of.get(session.principal.id)
        if sids is not None:
            sids.discard(sid)
            if not sids:
                del self.sids_of[session.principal.id]
                self.limiter.forget(session.principal.id)
                if session.principal.role is Role.AGENT:
                    await self._publish_agent_state(session.principal, AgentStateKind.OFFLINE)
        self.metrics.connections.dec()

    async def _publish_agent_state(
        self,
        agent: Principal,
        state: AgentStateKind,
        detail: str = "",
        drift: dict[str, float] | None = None,
        **extra: Any,
    ) -> AgentState | None:
        """Store and push an agent's state; ``extra``: summary, llm_seconds."""
        try:
            stored = await self.store.set_agent_state(
                agent, state.value, detail, drift or {}, **extra
            )
        except _UNAVAILABLE as exc:
            log.warning("hub.agent_state_not_stored", agent=agent.name, error=str(exc))
            return None
        await self.sio.emit("agent.state", stored.model_dump(mode="json"), room=SUPERVISORS_ROOM)
        return stored

    async def _on_unknown(self, event: str, sid: str, *_args: Any) -> dict:
        self.metrics.events.labels("unknown").inc()
        self.metrics.errors.labels("unknown", ErrorCode.UNKNOWN_EVENT.value).inc()
        shown = event[:64] if isinstance(event, str) else "?"
        return error_ack(ErrorCode.UNKNOWN_EVENT, f"no event named {shown!r}")

    # the gate every event passes ------------------------------------------------

    def _gate(self, name: str, handler: Handler) -> Callable[..., Awaitable[dict]]:
        model = REQUESTS[name]

        async def gated(sid: str, *args: Any) -> dict:
            self.metrics.events.labels(name).inc()
            try:
                return ok_ack(await self._admit(name, model, handler, sid, args))
            except HubError as exc:
                self.metrics.errors.labels(name, exc.code.value).inc()
                return error_ack(exc.code, exc.message, exc.detail)

        return gated

    async def _admit(
        self, name: str, model: type[BaseModel], handler: Handler, sid: str, args: tuple
    ) -> Any:
        session = self.sessions.get(sid)
        if session is None:
            raise HubError(ErrorCode.UNAUTHORIZED, "not authenticated")
        wait = self.limiter.take(session.principal.id)
        if wait:
            raise HubError(
                ErrorCode.RATE_LIMITED,
                f"too many events: wait {wait:.2f}s",
                retry_after=round(wait, 3),
            )
        if name in MODERATOR_EVENTS and not session.principal.supervises:
            raise HubError(ErrorCode.FORBIDDEN, f"{name} is for moderators")
        if len(args) > 1:
            raise HubError(ErrorCode.INVALID_PAYLOAD, f"{name} takes one payload object")
        raw = args[0] if args else None
        if raw is None and model is EmptyRequest:
            raw = {}
        try:
            request = model.model_validate(raw)
        except ValidationError as exc:
            problems = [
                {"field": ".".join(str(p) for p in e["loc"]) or "(payload)", "problem": e["msg"]}
                for e in exc.errors(include_url=False, include_input=False)[:10]
            ]
            summary = "; ".join(f"{p['field']}: {p['problem']}" for p in problems)
            raise HubError(
                ErrorCode.INVALID_PAYLOAD, f"bad {name} payload: {summary}", problems=problems
            ) from None
        try:
            return await handler(sid, session, request)
        except HubError:
            raise
        except StoreError as exc:
            raise HubError(ErrorCode(exc.code), exc.message) from None
        except _UNAVAILABLE as exc:
            log.warning("hub.store_unavailable", event_name=name, error=str(exc))
            raise HubError(
                ErrorCode.UNAVAILABLE, "the hub's database is unavailable; retry"
            ) from None
        except Exception:
            log.exception("hub.event_failed", event_name=name)
            raise HubError(ErrorCode.INTERNAL, "internal error; the hub logged it") from None

    # shared checks ----------------------------------------------------------------

    async def _room(self, name: str) -> Room:
        room = await self.store.room(name) if room_kind(name) else None
        if room is None:
            raise HubError(ErrorCode.UNKNOWN_ROOM, f"no room named {name[:80]!r}")
        return room

    async def _principal(self, name: str) -> Principal:
        principal = await self.store.principal(name)
        if principal is None:
            raise HubError(ErrorCode.NOT_FOUND, f"no principal named {name!r}")
        return principal

    async def _readable(self, session: Session, name: str) -> tuple[Room, bool]:
        """The room, and whether the session may post in it; refuses unreadable rooms."""
        room = await self._room(name)
        who = session.principal
        member = await self.store.is_member(room.name, who.id)
        if not auth.may_read(who, member):
            raise HubError(ErrorCode.FORBIDDEN, f"{who.name} is not admitted to {room.name}")
        await self._reputation_gate(who, room.name)
        return room, auth.may_post(who, room.kind, member)

    async def _reputation_gate(self, who: Principal, room: str) -> None:
        """Agents enter the external arena only while their reputation ranks high enough."""
        if room != reputation.EXTERNAL or who.role is not Role.AGENT:
            return
        refusal = await reputation.external_refusal(
            self.store.pool, who.name, self.settings.external_top_fraction
        )
        if refusal is not None:
            raise HubError(ErrorCode.FORBIDDEN, refusal)

    async def _still_admitted(self, sid: str, session: Session, room: str) -> None:
        """The gate for a session acting in a room: one that has fallen out of external
        is taken out of the room too, so it stops receiving it."""
        try:
            await self._reputation_gate(session.principal, room)
        except HubError:
            if session.joined.pop(room, None) is not None:
                await self.sio.leave_room(sid, room)
            raise

    def _moderatable(self, actor: Principal, target: Principal) -> None:
        if not auth.may_moderate(actor, target):
            raise HubError(
                ErrorCode.FORBIDDEN,
                f"a {actor.role.value} cannot moderate a {target.role.value} ({target.name})",
            )

    async def _notify(self, principal: Principal, notice: BaseModel, event: str) -> None:
        await self.sio.emit(event, notice.model_dump(mode="json"), room=personal_room(principal.id))

    # events -------------------------------------------------------------------------

    async def whoami(self, sid: str, session: Session, _req: EmptyRequest) -> Whoami:
        rooms = await self.store.rooms_for(session.principal)
        who = session.principal
        return Whoami(name=who.name, role=who.role, rooms=[r.name for r in rooms])

    async def rooms(self, sid: str, session: Session, _req: EmptyRequest) -> dict:
        rooms = await self.store.rooms_for(session.principal)
        return {"rooms": [r.model_dump(mode="json") for r in rooms]}

    async def join(self, sid: str, session: Session, req: JoinRequest) -> JoinResult:
        room, may_post = await self._readable(session, req.room)
        await self.sio.enter_room(sid, room.name)  # before reading history: nothing slips by
        session.joined[room.name] = may_post
        if req.since is None:
            messages, has_more = await self.store.history(
                room.name, limit=self.settings.history_on_join
            )
            has_more = False  # recent history is a window, not a resume
        else:
            messages, has_more = await self.store.history(
                room.name, since=req.since, limit=self.settings.history_page
            )
        last_id = messages[-1].id if messages else (req.since or 0)
        info = RoomInfo(
            name=room.name,
            kind=room.kind,
            title=room.title,
            paused=room.paused,
            may_post=may_post,
            last_id=last_id,
        )
        return JoinResult(room=info, messages=messages, has_more=has_more)

    async def leave(self, sid: str, session: Session, req: LeaveRequest) -> dict:
        if session.joined.pop(req.room, None) is None:
            raise HubError(ErrorCode.NOT_JOINED, f"not in {req.room[:80]!r}")
        await self.sio.leave_room(sid, req.room)
        return {"room": req.room}

    async def send(self, sid: str, session: Session, req: SendRequest) -> dict:
        received = time.perf_counter()
        if req.room not in session.joined:
            if room_kind(req.room) is None or await self.store.room(req.room) is None:
                raise HubError(ErrorCode.UNKNOWN_ROOM, f"no room named {req.room[:80]!r}")
            raise HubError(ErrorCode.NOT_JOINED, f"join {req.room} before sending to it")
        if not session.joined[req.room]:
            raise HubError(ErrorCode.FORBIDDEN, f"{session.principal.name} may not post here")
        await self._still_admitted(sid, session, req.room)  # standings change
        limit = self.settings.max_message_chars
        if len(req.text) > limit:
            raise HubError(
                ErrorCode.TOO_LARGE, f"text is {len(req.text)} characters; the limit is {limit}"
            )
        if not req.text.strip():
            raise HubError(ErrorCode.INVALID_PAYLOAD, "text is blank")
        who = session.principal
        async with self._room_locks[req.room]:  # this hub broadcasts a room in id order
            result = await self.store.post(
                req.room,
                who,
                req.text,
                reply_to=req.reply_to,
                client_id=req.client_id,
                may_post_when_paused=who.supervises,
            )
            payload = result.message.model_dump(mode="json") if result.message else None
            if result.status == "ok":
                self.metrics.messages_stored.inc()
                await self.sio.emit("message", payload, room=req.room)
                self.metrics.delivery_latency.observe(time.perf_counter() - received)
        if result.status == "muted":
            until = await self.store.active_mute(who.id)
            raise HubError(
                ErrorCode.MUTED,
                f"{who.name} is muted until {until}",
                until=until.isoformat() if until else None,
            )
        if result.status == "paused":
            raise HubError(ErrorCode.ROOM_PAUSED, f"{req.room} is paused by a moderator")
        if result.status == "bad_reply":
            raise HubError(ErrorCode.NOT_FOUND, f"message {req.reply_to} is not in {req.room}")
        if result.status == "unknown_room":
            raise HubError(ErrorCode.UNKNOWN_ROOM, f"no room named {req.room!r}")
        return {"message": payload, "duplicate": result.status == "duplicate"}

    async def history(self, sid: str, session: Session, req: HistoryRequest) -> HistoryResult:
        if req.since is not None and req.before is not None:
            raise HubError(ErrorCode.INVALID_PAYLOAD, "give since or before, not both")
        room, _ = await self._readable(session, req.room)
        limit = min(req.limit, self.settings.history_page)
        messages, has_more = await self.store.history(
            room.name, since=req.since, before=req.before, limit=limit
        )
        return HistoryResult(messages=messages, has_more=has_more)

    async def open_dm(self, sid: str, session: Session, req: DirectRequest) -> RoomInfo:
        who = session.principal
        other = await self._principal(req.principal)
        if other.id == who.id:
            raise HubError(ErrorCode.INVALID_PAYLOAD, "a direct message needs another principal")
        name = dm_room(who.name, other.name)
        await self.store.open_dm(who, other, name)
        info = RoomInfo(name=name, kind=RoomKind.DM, may_post=True)
        await self.sio.emit(
            "room.invited", info.model_dump(mode="json"), room=personal_room(other.id)
        )
        return info

    async def create_group(self, sid: str, session: Session, req: GroupCreateRequest) -> RoomInfo:
        who = session.principal
        if not auth.may_create_group(who):
            raise HubError(ErrorCode.FORBIDDEN, f"{who.name} may not create groups")
        members = [await self._principal(name) for name in dict.fromkeys(req.members)]
        name = group_room(req.name)
        await self.store.create_group(name, req.title, who, members)
        info = RoomInfo(name=name, kind=RoomKind.GROUP, title=req.title, may_post=True)
        for member in members:
            await self.sio.emit(
                "room.invited", info.model_dump(mode="json"), room=personal_room(member.id)
            )
        return info

    async def invite(self, sid: str, session: Session, req: InviteRequest) -> dict:
        who = session.principal
        room = await self._room(req.room)
        if not auth.may_invite(who, room.kind, room.created_by == who.id):
            raise HubError(ErrorCode.FORBIDDEN, f"{who.name} may not invite to {room.name}")
        target = await self._principal(req.principal)
        added = await self.store.add_member(room.name, target, who)
        if added:
            info = RoomInfo(name=room.name, kind=room.kind, title=room.title, paused=room.paused)
            await self.sio.emit(
                "room.invited", info.model_dump(mode="json"), room=personal_room(target.id)
            )
        return {"room": room.name, "principal": target.name, "added": added}

    async def report_agent_state(
        self, sid: str, session: Session, req: AgentStateReport
    ) -> AgentState | None:
        if session.principal.role is not Role.AGENT:
            raise HubError(ErrorCode.FORBIDDEN, "only agents report an agent state")
        return await self._publish_agent_state(
            session.principal,
            req.state,
            req.detail,
            req.drift,
            summary=req.summary,
            llm_seconds=req.llm_seconds,
        )

    async def agent_states(self, sid: str, session: Session, _req: EmptyRequest) -> dict:
        states = await self.store.agent_states()
        return {"agents": [s.model_dump(mode="json") for s in states]}

    async def react(self, sid: str, session: Session, req: ReactRequest) -> dict:
        """React to a message in a room the session has joined; the room sees it."""
        if req.room not in session.joined:
            raise HubError(ErrorCode.NOT_JOINED, f"join {req.room[:80]} before reacting in it")
        await self._still_admitted(sid, session, req.room)
        author = await self.store.react(session.principal, req.room, req.message_id, req.value)
        reaction = {
            "room": req.room,
            "message_id": req.message_id,
            "author": author,
            "by": session.principal.name,
            "value": req.value,
        }
        await self.sio.emit("reaction", reaction, room=req.room)
        return reaction

    async def standings(self, sid: str, session: Session, _req: EmptyRequest) -> dict:
        """Every agent's reputation and who may enter the external arena now."""
        fraction = self.settings.external_top_fraction
        board = await reputation.standings(self.store.pool, fraction)
        return {"agents": [s.public() for s in board], "external_top_fraction": fraction}

    async def propose(self, sid: str, session: Session, req: ProposalCreate) -> dict:
        await self._still_admitted(sid, session, req.arena)
        proposal = await self.proposals.create(
            session.principal,
            arena=req.arena,
            kind=req.kind,
            path=req.path,
            base_version=req.base_version,
            title=req.title,
            content=req.content,
        )
        await self.sio.emit("proposal.new", proposal.public(), room=SUPERVISORS_ROOM)
        return proposal.public()

    async def review(self, sid: str, session: Session, req: ProposalReview) -> dict:
        who = session.principal
        if req.decision == "reject":
            proposal = await self.proposals.reject(req.id, who, req.reason)
        elif req.decision == "edit":
            if not req.content:
                raise HubError(ErrorCode.INVALID_PAYLOAD, "edit needs the edited content")
            proposal = await self.proposals.approve(req.id, who, edited_content=req.content)
        else:
            proposal = await self.proposals.approve(req.id, who)
        author = await self.store.principal(proposal.author)
        rooms = [SUPERVISORS_ROOM] + ([personal_room(author.id)] if author else [])
        await self.sio.emit("proposal.reviewed", proposal.public(), to=rooms)  # each sid once
        if proposal.status == "approved":
            merged = {
                "path": proposal.path,
                "version": proposal.merged_version,
                "arena": proposal.arena,
                "proposal": proposal.id,
            }
            await self.sio.emit("canon.merged", merged, room=proposal.arena)
        return proposal.public()

    async def _artifacts(self) -> Artifacts:
        """The artifact store (the object store opened on first use)."""
        if self._objects is None:
            self._objects = await asyncio.to_thread(open_objects, self.settings)
        return Artifacts(self.store.pool, self._objects)

    async def _attachments(self, proposal_id: int) -> list[dict]:
        prefix = f"attachments/{proposal_id}/"
        found = await (await self._artifacts()).list("attachment", prefix)
        return [
            {"name": a["key"][len(prefix) :], "size": a["size"], "sha256": a["sha256"]}
            for a in found
        ]

    async def attach(self, sid: str, session: Session, req: AttachmentPut) -> dict:
        """Keep a file with a proposal, in the object store."""
        proposal = await self.proposals.get(req.id)
        if proposal is None:
            raise HubError(ErrorCode.NOT_FOUND, f"no proposal {req.id}")
        who = session.principal
        if proposal.author != who.name and not who.supervises:
            raise HubError(ErrorCode.FORBIDDEN, f"only {proposal.author} or a moderator may attach")
        try:
            data = base64.b64decode(req.content_base64, validate=True)
        except ValueError:
            raise HubError(ErrorCode.INVALID_PAYLOAD, "content_base64 is not base64") from None
        limit = self.settings.max_attachment_bytes
        if len(data) > limit:
            raise HubError(
                ErrorCode.TOO_LARGE, f"the file is {len(data)} bytes; the limit is {limit}"
            )
        key = f"attachments/{req.id}/{req.name}"
        with tempfile.TemporaryDirectory(prefix="botarena-attach-") as work:
            path = Path(work) / "file"
            await asyncio.to_thread(path.write_bytes, data)
            try:
                stored = await (await self._artifacts()).store("attachment", key, path, who.name)
            except ObjectStoreError as exc:
                code = ErrorCode.CONFLICT if "exists" in exc.message else ErrorCode.UNAVAILABLE
                raise HubError(code, exc.message) from None
        return {"id": req.id, "name": req.name, "size": stored["size"], "sha256": stored["sha256"]}

    async def attachment(self, sid: str, session: Session, req: AttachmentRef) -> dict:
        """A proposal's attachment, for those who may read the proposal."""
        proposal = await self.proposals.get(req.id)
        if proposal is None:
            raise HubError(ErrorCode.NOT_FOUND, f"no proposal {req.id}")
        await self._readable(session, proposal.arena)
        with tempfile.TemporaryDirectory(prefix="botarena-attach-") as work:
            path = Path(work) / "file"
            try:
                found = await (await self._artifacts()).fetch(
                    f"attachments/{req.id}/{req.name}", path
                )
            except ObjectStoreError as exc:
                code = ErrorCode.NOT_FOUND if exc.code == "not_found" else ErrorCode.UNAVAILABLE
                raise HubError(code, exc.message) from None
            data = await asyncio.to_thread(path.read_bytes)
        return {
            "id": req.id,
            "name": req.name,
            "size": found["size"],
            "sha256": found["sha256"],
            "content_base64": base64.b64encode(data).decode(),
        }

    async def list_proposals(self, sid: str, session: Session, req: ProposalQuery) -> dict:
        if req.arena is None and not session.principal.supervises:
            raise HubError(ErrorCode.INVALID_PAYLOAD, "name the arena whose proposals to list")
        if req.arena is not None:
            await self._readable(session, req.arena)
        found = await self.proposals.list(arena=req.arena, status=req.status, limit=req.limit)
        return {"proposals": [p.public() for p in found]}

    async def get_proposal(self, sid: str, session: Session, req: ProposalRef) -> dict:
        proposal = await self.proposals.get(req.id)
        if proposal is None:
            raise HubError(ErrorCode.NOT_FOUND, f"no proposal {req.id}")
        await self._readable(session, proposal.arena)
        head = await self.proposals.canon(proposal.path)
        version, current = head if head else (0, "")
        diff = (
            proposal.content
            if proposal.kind == "patch"
            else unified_diff(current, proposal.content, proposal.path)
        )
        return {
            **proposal.public(),
            "canon_version": version,
            "diff": diff,
            "stale": proposal.status == "pending" and proposal.base_version != version,
            "attachments": await self._attachments(proposal.id),
        }

    async def get_canon(self, sid: str, session: Session, req: CanonRequest) -> dict:
        found = await self.proposals.canon(req.path, req.version)
        if found is None:
            raise HubError(
                ErrorCode.NOT_FOUND,
                f"no canon document {req.path}"
                + (f" version {req.version}" if req.version else ""),
            )
        return {"path": req.path, "version": found[0], "content": found[1]}

    async def file_ticket(self, sid: str, session: Session, req: TicketFile) -> dict:
        """A moderator files a ticket; it is announced in the external arena."""
        ticket_id = await self.proposals.file_ticket(session.principal, req.title, req.body)
        text = ticket_announcement(ticket_id, req.title, req.body)
        text = text[: self.settings.max_message_chars]
        result = await self.store.post(
            "external", session.principal, text, may_post_when_paused=True
        )
        if result.status == "ok" and result.message is not None:
            await self.sio.emit("message", result.message.model_dump(mode="json"), room="external")
        return {"id": ticket_id, "path": ticket_path(ticket_id)}

    async def list_tickets(self, sid: str, session: Session, req: TicketQuery) -> dict:
        await self._readable(session, "external")
        return {"tickets": await self.proposals.tickets(req.status, req.limit)}

    async def mute(self, sid: str, session: Session, req: MuteRequest) -> dict:
        if req.seconds > self.settings.max_mute_seconds:
            raise HubError(
                ErrorCode.INVALID_PAYLOAD, f"a mute lasts at most {self.settings.max_mute_seconds}s"
            )
        target = await self._principal(req.principal)
        self._moderatable(session.principal, target)
        until = datetime.now(UTC) + timedelta(seconds=req.seconds)
        await self.store.mute(target, until, req.reason, session.principal)
        notice = ModerationNotice(
            action="mute", by=session.principal.name, until=until, reason=req.reason
        )
        await self._notify(target, notice, "moderation")
        return {"principal": target.name, "until": until.isoformat()}

    async def unmute(self, sid: str, session: Session, req: UnmuteRequest) -> dict:
        target = await self._principal(req.principal)
        self._moderatable(session.principal, target)
        lifted = await self.store.unmute(target, session.principal)
        if lifted:
            await self._notify(
                target, ModerationNotice(action="unmute", by=session.principal.name), "moderation"
            )
        return {"principal": target.name, "lifted": lifted}

    async def kick(self, sid: str, session: Session, req: KickRequest) -> dict:
        target = await self._principal(req.principal)
        self._moderatable(session.principal, target)
        room = (await self._room(req.room)).name if req.room is not None else None
        notice = ModerationNotice(
            action="kick", by=session.principal.name, room=room, reason=req.reason
        )
        await self._notify(target, notice, "moderation")
        await self.store.kick(target, room, req.reason, session.principal)
        return {"principal": target.name, "room": room}

    async def pause(self, sid: str, session: Session, req: PauseRequest) -> dict:
        return await self._set_paused(session, req.room, True, req.reason)

    async def resume(self, sid: str, session: Session, req: ResumeRequest) -> dict:
        return await self._set_paused(session, req.room, False, "")

    async def _set_paused(self, session: Session, name: str, paused: bool, reason: str) -> dict:
        room = await self._room(name)
        changed = await self.store.set_paused(room.name, paused, reason, session.principal)
        if changed:
            state = RoomState(
                room=room.name, paused=paused, by=session.principal.name, reason=reason
            )
            await self.sio.emit("room.state", state.model_dump(mode="json"), room=room.name)
        return {"room": room.name, "paused": paused, "changed": changed}
