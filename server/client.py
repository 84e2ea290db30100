"""A Socket.IO client of the hub, shared by agents, the console, the CLI and the tests.

:class:`HubClient` connects with a token (once, or :meth:`~HubClient.connect_with_backoff`
while the hub is away), has a typed method for every event of the protocol (each
returns the event's response model), and raises the error tree's class for a refusal
(``except Muted:``, ``except HubError:``). :meth:`~HubClient.on` subscribes to a push
with its parsed model. The client remembers the last message id seen in each joined
room, and after a reconnect re-joins those rooms with ``since`` so that missed messages
arrive (paged until none is left). Each message is delivered once, in id order per
room: live messages that arrive while a join is answered wait behind the history it
returns, and ids at or below the last one delivered are skipped. A pushed message whose
``prev_id`` (the room's message before it) is not the last one delivered shows a gap --
a broadcast the client missed -- and the client fetches ``history(since=last)`` and
delivers what it missed first. Calls waiting for an answer fail at once with
:class:`ConnectionLost` when the connection drops. Messages are always sent with a
client id, so a send may be repeated without storing it twice.
:meth:`~HubClient.call` stays for callers that speak the protocol's dicts.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import inspect
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import socketio
import structlog
from pydantic import BaseModel, ValidationError

from botarena.arenas.names import ProposalKind, ProposalStatus, TicketStatus
from botarena.arenas.policy import Category
from botarena.server.errors import (
    HUB_ERRORS,
    BadAnswer,
    ConnectionLost,
    ConnectRefused,
    HubError,
    NotConnected,
    RateLimited,
    TimedOut,
    Unauthorized,
    Unavailable,
    Unreachable,
    hub_error,
)
from botarena.server.protocol import (
    Ack,
    AgentList,
    AgentState,
    AgentStateKind,
    AttachmentContent,
    AttachmentStored,
    BackendState,
    CanonDocument,
    CanonReverted,
    ErrorBody,
    ErrorCode,
    HistoryResult,
    InviteResult,
    JoinResult,
    KickResult,
    LeaveResult,
    Message,
    MuteResult,
    PauseResult,
    ProposalDetail,
    ProposalInfo,
    ProposalList,
    Push,
    QueueItem,
    QueueList,
    QueueState,
    Reaction,
    ReviewDecision,
    RoomInfo,
    RoomList,
    SendResult,
    Standings,
    TicketEscalated,
    TicketFiled,
    TicketList,
    UnmuteResult,
    Whoami,
    WorkerList,
)

log = structlog.get_logger(__name__)

R = TypeVar("R", bound=BaseModel)
P = TypeVar("P", bound=Push)

MessageHandler = Callable[[Message], Awaitable[None] | None]
PushHandler = Callable[[P], Awaitable[None] | None]
FailureHandler = Callable[[HubError, float | None], None]
"""Told each failed connect and the seconds until the next try (None: no next try)."""


async def _run(handler: Callable[[Any], Awaitable[None] | None], value: Any) -> None:
    outcome = handler(value)
    if inspect.isawaitable(outcome):
        await outcome


def _pass_on(answer: asyncio.Future[Any], asked: asyncio.Future[Any]) -> None:
    """Give ``answer`` the outcome of the call ``asked``, unless it has one already (the
    connection dropped first)."""
    if asked.cancelled():
        if not answer.done():
            answer.cancel()
        return
    failed = asked.exception()  # retrieved even when no longer wanted
    if answer.done():
        return
    if failed is not None:
        answer.set_exception(failed)
    else:
        answer.set_result(asked.result())


def _parse(event: str, response: type[R], data: Any) -> R:
    """The answer of ``event`` as ``response``; an answer of another shape is BadAnswer."""
    try:
        return response.model_validate(data)
    except ValidationError:
        raise BadAnswer(f"unexpected {event} data: {data!r:.200}") from None


class HubClient:
    """One authenticated connection to the hub."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        on_message: MessageHandler | None = None,
        on_connection: Callable[[bool], None] | None = None,
        reconnection: bool = True,
        call_timeout: float = 15.0,
        worker: str | None = None,
    ) -> None:
        """``worker``: the worker process this agent runs on; its connects then hold the
        agent's lease, or are refused :class:`Leased`."""
        self.url = url
        self.token = token
        self.worker = worker
        self.on_message = on_message
        self.on_connection = on_connection  # told True on (re)connect, False on a drop
        self.call_timeout = call_timeout
        self.last_seen: dict[str, int] = {}
        self._held: dict[str, list[Message]] = {}  # a room's pushes held during a join or fill
        self._unanswered: dict[asyncio.Future[Any], str] = {}  # calls waiting: their event
        self._subscribers: dict[str, list[Callable[[Any], Awaitable[None] | None]]] = {}
        self.refusal: HubError | None = None
        self.closed_by_hub = False  # the last drop was the hub's doing: no reconnection
        self.reconnected = asyncio.Event()
        self._connected_once = False
        self._rejoins: set[asyncio.Task[None]] = set()
        self.sio = socketio.AsyncClient(
            reconnection=reconnection,
            reconnection_delay=0.2,
            reconnection_delay_max=2,
            randomization_factor=0.2,
            logger=False,
            engineio_logger=False,
        )
        self.sio.on("connect", self._on_connect)
        self.sio.on("connect_error", self._on_connect_error)
        self.sio.on("disconnect", self._on_disconnect)
        self.sio.on(Message.event, self._on_message)

    # connection -----------------------------------------------------------------------

    async def connect(self, timeout: float = 10.0) -> None:
        """Connect and authenticate; raises the refusal's class (:class:`Unauthorized`...)
        or :class:`Unreachable`."""
        self.refusal = None
        try:
            await self.sio.connect(
                self.url,
                auth={"token": self.token, **({"worker": self.worker} if self.worker else {})},
                transports=["websocket"],
                wait_timeout=timeout,
            )
        except socketio.exceptions.ConnectionError as exc:
            await self._close_transport_session()
            if self.refusal is not None:
                raise self.refusal from None
            raise Unreachable(f"cannot reach the hub at {self.url}: {exc}") from exc

    async def connect_with_backoff(
        self,
        *,
        first_delay: float = 0.5,
        max_delay: float = 10.0,
        stop: asyncio.Event | None = None,
        on_failure: FailureHandler | None = None,
    ) -> bool:
        """Connect, retrying with a doubling delay (``first_delay`` up to ``max_delay``)
        while the hub is away or refuses for now; ``on_failure`` is told each failure.
        :class:`Unauthorized` is raised at once: a token does not get better. False when
        ``stop`` is set before a connection."""
        delay = first_delay
        while stop is None or not stop.is_set():
            try:
                await self.connect()
                return True
            except Unauthorized as exc:
                if on_failure is not None:
                    on_failure(exc, None)
                raise
            except HubError as exc:
                if isinstance(exc, RateLimited) and exc.retry_after:
                    delay = max(delay, exc.retry_after)  # the hub says when
                if on_failure is not None:
                    on_failure(exc, delay)
            if stop is None:
                await asyncio.sleep(delay)
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
            delay = min(delay * 2, max_delay)
        return False

    async def close(self) -> None:
        for task in self._rejoins:
            task.cancel()
        await asyncio.gather(*self._rejoins, return_exceptions=True)
        await self.sio.shutdown()  # disconnects, or ends python-socketio's reconnecting
        if self.sio.eio.state != "disconnected":  # a transport without a session
            await self.sio.eio.disconnect()
        await self._close_transport_session()

    async def _close_transport_session(self) -> None:
        """Close the HTTP session Engine.IO keeps for the transport (it outlives a
        disconnect or a refused connect)."""
        http = getattr(self.sio.eio, "http", None)
        if http is not None and not http.closed:
            await http.close()

    @property
    def connected(self) -> bool:
        return bool(self.sio.connected)

    # calls ----------------------------------------------------------------------------

    async def call(self, event: str, payload: Any = None, timeout: float | None = None) -> Any:
        """Emit ``event`` and return the acknowledged data (the response model's JSON), or
        raise the refusal's class."""
        args = () if payload is None else (payload,)
        asked = asyncio.ensure_future(
            self.sio.call(event, *args, timeout=timeout or self.call_timeout)
        )
        answered: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        asked.add_done_callback(lambda done: _pass_on(answered, done))
        self._unanswered[answered] = event
        try:
            ack = await answered  # or ConnectionLost, set when the connection drops
        except socketio.exceptions.TimeoutError:
            raise TimedOut(f"no answer to {event}") from None
        except socketio.exceptions.BadNamespaceError:
            raise NotConnected(f"not connected; {event} not sent") from None
        finally:
            del self._unanswered[answered]
            asked.cancel()
        try:
            answer = Ack.model_validate(ack)
        except ValidationError:
            raise BadAnswer(f"unexpected answer to {event}: {ack!r:.200}") from None
        if not answer.ok:
            raise hub_error(
                answer.error or ErrorBody(code=ErrorCode.INTERNAL, message="no error given")
            )
        return answer.data

    async def _ask(self, event: str, response: type[R], payload: dict[str, Any] | None = None) -> R:
        """Call ``event`` and parse its answer as ``response``."""
        return _parse(event, response, await self.call(event, payload))

    async def whoami(self) -> Whoami:
        return await self._ask("whoami", Whoami)

    async def rooms(self) -> RoomList:
        """The rooms this principal may join."""
        return await self._ask("rooms", RoomList)

    async def join(self, room: str, since: int | None = None) -> JoinResult:
        """Join ``room``; its recent (or, with ``since``, missed) messages are delivered."""
        held: list[Message] = []
        self._held[room] = held
        try:
            result = await self._ask("join", JoinResult, {"room": room, "since": since})
            self.last_seen.setdefault(room, 0)
            await self._deliver_all(result.messages)
            if since is None:
                self.last_seen[room] = max(self.last_seen[room], result.room.last_id)
            if result.has_more:
                await self._catch_up(room)
        except BaseException:
            self._unhold(room, held)
            raise
        await self._release(room, held)
        return result

    async def leave(self, room: str) -> LeaveResult:
        """Leave ``room``: no more of its messages, and it is not rejoined on reconnect."""
        self.last_seen.pop(room, None)
        return await self._ask("leave", LeaveResult, {"room": room})

    async def send(
        self,
        room: str,
        text: str,
        *,
        reply_to: int | None = None,
        client_id: str | None = None,
    ) -> Message:
        """Post ``text``; the stored message (the earlier one for a known ``client_id``).

        Without ``client_id`` a new one is made up. Resend with the same ``client_id``
        after :class:`Unavailable` or :class:`ConnectionLost` (both carry it in
        ``detail["client_id"]``): a message is never stored twice."""
        client_id = client_id or uuid.uuid4().hex
        payload = {"room": room, "text": text, "reply_to": reply_to, "client_id": client_id}
        try:
            return (await self._ask("send", SendResult, payload)).message
        except (Unavailable, ConnectionLost) as exc:
            exc.detail.setdefault("client_id", client_id)
            raise

    async def history(self, room: str, **query: Any) -> tuple[list[Message], bool]:
        """A page of ``room``'s messages (``since``, ``before``, ``limit``), and whether
        there are more."""
        page = await self._ask("history", HistoryResult, {"room": room, **query})
        return page.messages, page.has_more

    async def open_dm(self, principal: str) -> RoomInfo:
        return await self._ask("dm.open", RoomInfo, {"principal": principal})

    async def create_group(
        self, name: str, *, title: str | None = None, members: Sequence[str] = ()
    ) -> RoomInfo:
        payload = {"name": name, "title": title, "members": list(members)}
        return await self._ask("group.create", RoomInfo, payload)

    async def invite(self, room: str, principal: str) -> InviteResult:
        return await self._ask("room.invite", InviteResult, {"room": room, "principal": principal})

    async def report_state(
        self,
        state: AgentStateKind,
        detail: str = "",
        *,
        drift: dict[str, float] | None = None,
        summary: str | None = None,
        llm_seconds: float | None = None,
        backend: str | None = None,
        memory: str | None = None,
        pool: list[BackendState] | None = None,
        timeout: float | None = None,
    ) -> AgentState | None:
        """Report this agent's state (and, when given, the LLM backend and memory it uses
        and its worker's pool of backends);
        None when the hub could not store it. ``timeout``: seconds to wait for the answer
        (None: the client's ``call_timeout``)."""
        payload = {
            "state": state,
            "detail": detail,
            "drift": drift or {},
            "summary": summary,
            "llm_seconds": llm_seconds,
            "backend": backend,
            "memory": memory,
            "pool": None if pool is None else [b.model_dump() for b in pool],
        }
        data = await self.call("agent.state", payload, timeout=timeout)
        return None if data is None else _parse("agent.state", AgentState, data)

    async def agent_states(self) -> AgentList:
        return await self._ask("agents", AgentList)

    async def workers(self) -> WorkerList:
        """The live workers (for an agent connected from one)."""
        return await self._ask("workers", WorkerList)

    async def react(self, room: str, message_id: int, value: int) -> Reaction:
        """+1, -1, or 0 to take a reaction back."""
        payload = {"room": room, "message_id": message_id, "value": value}
        return await self._ask("message.react", Reaction, payload)

    async def reputation(self) -> Standings:
        return await self._ask("reputation", Standings)

    async def propose(
        self,
        arena: str,
        kind: ProposalKind,
        path: str,
        title: str,
        content: str,
        *,
        base_version: int = 0,
    ) -> ProposalInfo:
        payload = {
            "arena": arena,
            "kind": kind,
            "path": path,
            "base_version": base_version,
            "title": title,
            "content": content,
        }
        return await self._ask("proposal.create", ProposalInfo, payload)

    async def review(
        self,
        proposal_id: int,
        decision: ReviewDecision,
        *,
        reason: str = "",
        content: str | None = None,
    ) -> ProposalInfo:
        """``approve``, ``reject`` (with a reason) or ``edit`` (with the edited content)."""
        payload = {"id": proposal_id, "decision": decision, "reason": reason, "content": content}
        return await self._ask("proposal.review", ProposalInfo, payload)

    async def revert(self, proposal_id: int, reason: str) -> CanonReverted:
        """Undo an approved proposal with a new canon version (moderators)."""
        payload = {"proposal": proposal_id, "reason": reason}
        return await self._ask("canon.revert", CanonReverted, payload)

    async def proposals(
        self,
        *,
        arena: str | None = None,
        status: ProposalStatus | None = None,
        limit: int = 100,
    ) -> ProposalList:
        payload = {"arena": arena, "status": status, "limit": limit}
        return await self._ask("proposals", ProposalList, payload)

    async def proposal(self, proposal_id: int) -> ProposalDetail:
        """A proposal with its diff against the canon and its attachments."""
        return await self._ask("proposal.get", ProposalDetail, {"id": proposal_id})

    async def attach(self, proposal_id: int, name: str, content: bytes) -> AttachmentStored:
        payload = {
            "id": proposal_id,
            "name": name,
            "content_base64": base64.b64encode(content).decode(),
        }
        return await self._ask("proposal.attach", AttachmentStored, payload)

    async def attachment(self, proposal_id: int, name: str) -> AttachmentContent:
        payload = {"id": proposal_id, "name": name}
        return await self._ask("proposal.attachment", AttachmentContent, payload)

    async def canon(self, path: str, version: int | None = None) -> CanonDocument:
        """A canon document: its newest version, or the one asked for."""
        return await self._ask("canon.get", CanonDocument, {"path": path, "version": version})

    async def file_ticket(self, title: str, body: str) -> TicketFiled:
        return await self._ask("ticket.file", TicketFiled, {"title": title, "body": body})

    async def tickets(self, *, status: TicketStatus | None = None, limit: int = 100) -> TicketList:
        return await self._ask("tickets", TicketList, {"status": status, "limit": limit})

    async def escalate(self, ticket: int, reason: str) -> TicketEscalated:
        """Hand a ticket the agents cannot answer to the humans."""
        return await self._ask(
            "ticket.escalate", TicketEscalated, {"ticket": ticket, "reason": reason}
        )

    async def mute(self, principal: str, seconds: int, reason: str = "") -> MuteResult:
        payload = {"principal": principal, "seconds": seconds, "reason": reason}
        return await self._ask("mod.mute", MuteResult, payload)

    async def unmute(self, principal: str) -> UnmuteResult:
        return await self._ask("mod.unmute", UnmuteResult, {"principal": principal})

    async def kick(
        self, principal: str, *, room: str | None = None, reason: str = ""
    ) -> KickResult:
        """Disconnect ``principal``, or revoke its admission to ``room``."""
        payload = {"principal": principal, "room": room, "reason": reason}
        return await self._ask("mod.kick", KickResult, payload)

    async def pause(self, room: str, reason: str = "") -> PauseResult:
        return await self._ask("mod.pause", PauseResult, {"room": room, "reason": reason})

    async def resume(self, room: str) -> PauseResult:
        return await self._ask("mod.resume", PauseResult, {"room": room})

    async def queue(
        self, state: QueueState = QueueState.OPEN, *, room: str | None = None, limit: int = 50
    ) -> list[QueueItem]:
        """The moderation queue: flagged and held messages in ``state``."""
        payload = {"state": state.value, "room": room, "limit": limit}
        return (await self._ask("mod.queue", QueueList, payload)).items

    async def release(self, item: int, reason: str = "") -> QueueItem:
        """Post a message the filter held (it gets its room's next id), or show again
        one a moderator withheld (in its place)."""
        return await self._ask("mod.release", QueueItem, {"id": item, "reason": reason})

    async def drop(self, item: int, reason: str = "") -> QueueItem:
        """Never post a held message; its author is told."""
        return await self._ask("mod.drop", QueueItem, {"id": item, "reason": reason})

    async def clear(self, item: int, reason: str = "") -> QueueItem:
        """Leave a flagged message as it is, looked at."""
        return await self._ask("mod.clear", QueueItem, {"id": item, "reason": reason})

    async def flag(self, message_id: int, category: Category, reason: str = "") -> QueueItem:
        """Mark a posted message for moderators (moderators, and AI moderators on other
        agents' messages)."""
        return await self._judge("mod.flag", message_id, category, reason)

    async def hold(self, message_id: int, category: Category, reason: str = "") -> QueueItem:
        """Take a posted message back out of its room until a moderator decides
        (moderators, and AI moderators on other agents' messages)."""
        return await self._judge("mod.hold", message_id, category, reason)

    async def _judge(
        self, event: str, message_id: int, category: Category, reason: str
    ) -> QueueItem:
        payload = {"message_id": message_id, "category": category.value, "reason": reason}
        return await self._ask(event, QueueItem, payload)

    # pushes ---------------------------------------------------------------------------

    def on(self, push: type[P], handler: PushHandler[P]) -> None:
        """Call ``handler`` with each ``push`` the hub sends, parsed. :class:`Message`
        handlers see each message once, in order, after the catch-up of a join."""
        subscribers = self._subscribers.setdefault(push.event, [])
        if not subscribers and push is not Message:

            async def received(data: Any = None) -> None:
                await self._dispatch(push, data)

            self.sio.on(push.event, received)
        subscribers.append(handler)

    async def _dispatch(self, push: type[Push], data: Any) -> None:
        try:
            parsed = push.model_validate(data)
        except ValidationError:
            log.warning("client.bad_push", push=push.event, data=f"{data!r:.200}")
            return
        for handler in self._subscribers.get(push.event, ()):
            await _run(handler, parsed)

    async def _catch_up(self, room: str) -> None:
        """Deliver every message of ``room`` after the last one delivered."""
        more = True
        while more:
            messages, more = await self.history(room, since=self.last_seen.get(room, 0), limit=5000)
            await self._deliver_all(messages)

    async def _deliver_all(self, messages: list[Message]) -> None:
        for message in messages:
            await self._deliver(message)

    async def _deliver(self, message: Message) -> None:
        """Hand ``message`` to the handlers, unless it is not newer than the room's last
        one delivered: delivery is in id order, so that one was delivered (or lies
        before what the join asked for)."""
        if message.id <= self.last_seen.get(message.room, 0):
            return
        self.last_seen[message.room] = message.id
        if self.on_message is not None:
            await _run(self.on_message, message)
        for handler in self._subscribers.get(Message.event, ()):
            await _run(handler, message)

    def _missed_before(self, message: Message) -> bool:
        """Whether the room has messages before ``message`` that were not delivered."""
        last = self.last_seen.get(message.room)
        return last is not None and message.prev_id is not None and message.prev_id > last

    async def _on_message(self, data: dict[str, Any]) -> None:
        message = Message.model_validate(data)
        held = self._held.get(message.room)
        if held is not None:  # a join or a gap fill delivers it in its turn
            held.append(message)
        elif self._missed_before(message):
            log.info("client.gap", room=message.room, last=self.last_seen.get(message.room))
            held = [message]
            self._held[message.room] = held
            await self._release(message.room, held)
        else:
            await self._deliver(message)

    async def _release(self, room: str, held: list[Message]) -> None:
        """Deliver the pushes ``held`` for ``room`` in id order (more may arrive
        meanwhile), each after fetching what a gap before it shows missing; then stop
        holding. A fill that cannot be made drops the rest: they are stored, so the next
        push's gap, or the join after a reconnect, fetches them again."""
        try:
            while held:
                held.sort(key=lambda m: m.id)
                message = held.pop(0)
                if self._missed_before(message) and not await self._fill(room):
                    return
                await self._deliver(message)
        finally:
            self._unhold(room, held)

    async def _fill(self, room: str) -> bool:
        """Fetch and deliver what ``room`` has after its last delivered message, retrying
        while the hub is reachable but cannot answer yet; False when it cannot be done."""
        pause = 0.2
        while True:
            try:
                await self._catch_up(room)
                return True
            except (Unavailable, TimedOut, RateLimited) as exc:
                if not self.connected:
                    return False
                log.info("client.fill_retry", room=room, error=str(exc))
            except HubError as exc:
                log.warning("client.fill_failed", room=room, error=str(exc))
                return False
            await asyncio.sleep(pause)
            pause = min(pause * 2, 2.0)

    def _unhold(self, room: str, held: list[Message]) -> None:
        if self._held.get(room) is held:
            del self._held[room]

    async def _on_connect(self) -> None:
        if self._connected_once:
            self.reconnected.clear()
            rejoin = asyncio.create_task(self._rejoin())
            self._rejoins.add(rejoin)
            rejoin.add_done_callback(self._rejoins.discard)
        self._connected_once = True
        self.closed_by_hub = False
        if self.on_connection is not None:
            self.on_connection(True)

    async def _on_disconnect(self, reason: Any = None, *_: Any) -> None:
        # python-socketio reconnects by itself unless the hub closed the session
        self.closed_by_hub = reason == socketio.AsyncClient.reason.SERVER_DISCONNECT
        for answer, event in list(self._unanswered.items()):
            if not answer.done():
                answer.set_exception(
                    ConnectionLost(
                        f"the connection dropped before {event} was answered; "
                        "the hub may have done it"
                    )
                )
        if self.on_connection is not None:
            self.on_connection(False)

    async def _rejoin(self) -> None:
        for room, since in list(self.last_seen.items()):
            try:
                await self.join(room, since=since)
            except HubError as exc:
                log.warning("client.rejoin_failed", room=room, error=str(exc))
        self.reconnected.set()

    async def _on_connect_error(self, data: Any = None) -> None:
        if not isinstance(data, dict):
            self.refusal = ConnectRefused(str(data))
            return
        extra = data.get("data")
        detail = dict(extra) if isinstance(extra, dict) else {}
        code = detail.pop("code", None)
        try:
            refusal = HUB_ERRORS[ErrorCode(str(code))]
        except ValueError:
            refusal = ConnectRefused
        self.refusal = refusal(str(data.get("message", "")), **detail)
