"""A Socket.IO client of the hub, shared by agents, the console, the CLI and the tests.

:class:`HubClient` connects with a token, turns acknowledgements into results or raises
the error tree's class for a refusal (``except Muted:``, ``except HubError:``),
remembers the last message id seen in each joined room, and after a reconnect re-joins
those rooms with ``since`` so that missed messages arrive (paged until none is left).
Each message is delivered once: live messages that arrive while a join is answered wait
behind the history it returns, and ids already delivered are skipped.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import socketio
import structlog
from pydantic import ValidationError

from botarena.server.errors import (
    HUB_ERRORS,
    BadAnswer,
    ConnectRefused,
    HubError,
    NotConnected,
    TimedOut,
    Unreachable,
    hub_error,
)
from botarena.server.protocol import Ack, ErrorBody, ErrorCode, JoinResult, Message

log = structlog.get_logger(__name__)

MessageHandler = Callable[[Message], Awaitable[None] | None]


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
    ) -> None:
        self.url = url
        self.token = token
        self.on_message = on_message
        self.on_connection = on_connection  # told True on (re)connect, False on a drop
        self.call_timeout = call_timeout
        self.last_seen: dict[str, int] = {}
        self._recent: dict[str, tuple[deque[int], set[int]]] = {}
        self._joining: dict[str, list[Message]] = {}
        self.refusal: HubError | None = None
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
        self.sio.on("message", self._on_message)

    async def connect(self, timeout: float = 10.0) -> None:
        """Connect and authenticate; raises the refusal's class (:class:`Unauthorized`...)
        or :class:`Unreachable`."""
        self.refusal = None
        try:
            await self.sio.connect(
                self.url,
                auth={"token": self.token},
                transports=["websocket"],
                wait_timeout=timeout,
            )
        except socketio.exceptions.ConnectionError as exc:
            await self._close_transport_session()
            if self.refusal is not None:
                raise self.refusal from None
            raise Unreachable(f"cannot reach the hub at {self.url}: {exc}") from exc

    async def close(self) -> None:
        for task in self._rejoins:
            task.cancel()
        await asyncio.gather(*self._rejoins, return_exceptions=True)
        await self.sio.disconnect()
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

    async def call(self, event: str, payload: Any = None, timeout: float | None = None) -> Any:
        """Emit ``event`` and return the acknowledged data, or raise the refusal's class."""
        args = () if payload is None else (payload,)
        try:
            ack = await self.sio.call(event, *args, timeout=timeout or self.call_timeout)
        except socketio.exceptions.TimeoutError:
            raise TimedOut(f"no answer to {event}") from None
        except socketio.exceptions.BadNamespaceError:
            raise NotConnected(f"not connected; {event} not sent") from None
        try:
            answer = Ack.model_validate(ack)
        except ValidationError:
            raise BadAnswer(f"unexpected answer to {event}: {ack!r:.200}") from None
        if not answer.ok:
            raise hub_error(
                answer.error or ErrorBody(code=ErrorCode.INTERNAL, message="no error given")
            )
        return answer.data

    async def join(self, room: str, since: int | None = None) -> JoinResult:
        """Join ``room``; its recent (or, with ``since``, missed) messages are delivered."""
        self._joining[room] = []
        try:
            data = await self.call("join", {"room": room, "since": since})
            result = JoinResult.model_validate(data)
            self.last_seen.setdefault(room, 0)
            await self._deliver_all(result.messages)
            if since is None:
                self.last_seen[room] = max(self.last_seen[room], result.room.last_id)
            if result.has_more:
                await self._catch_up(room)
        finally:
            held = self._joining.pop(room, [])
        await self._deliver_all(sorted(held, key=lambda m: m.id))
        return result

    async def leave(self, room: str) -> None:
        """Leave ``room``: no more of its messages, and it is not rejoined on reconnect."""
        self.last_seen.pop(room, None)
        await self.call("leave", {"room": room})

    async def send(
        self,
        room: str,
        text: str,
        *,
        reply_to: int | None = None,
        client_id: str | None = None,
    ) -> Message:
        data = await self.call(
            "send", {"room": room, "text": text, "reply_to": reply_to, "client_id": client_id}
        )
        return Message.model_validate(data["message"])

    async def history(self, room: str, **query: Any) -> tuple[list[Message], bool]:
        data = await self.call("history", {"room": room, **query})
        return [Message.model_validate(m) for m in data["messages"]], data["has_more"]

    async def _catch_up(self, room: str) -> None:
        more = True
        while more:
            messages, more = await self.history(room, since=self.last_seen.get(room, 0), limit=5000)
            await self._deliver_all(messages)

    async def _deliver_all(self, messages: list[Message]) -> None:
        for message in messages:
            await self._deliver(message)

    async def _deliver(self, message: Message) -> None:
        order, ids = self._recent.setdefault(message.room, (deque(), set()))
        if message.id in ids:
            return  # already delivered (live and again in a history page)
        order.append(message.id)
        ids.add(message.id)
        if len(order) > 10_000:
            ids.discard(order.popleft())
        self.last_seen[message.room] = max(self.last_seen.get(message.room, 0), message.id)
        if self.on_message is not None:
            outcome = self.on_message(message)
            if asyncio.iscoroutine(outcome):
                await outcome

    async def _on_message(self, data: dict[str, Any]) -> None:
        message = Message.model_validate(data)
        held = self._joining.get(message.room)
        if held is not None:
            held.append(message)
        else:
            await self._deliver(message)

    async def _on_connect(self) -> None:
        if self._connected_once:
            self.reconnected.clear()
            rejoin = asyncio.create_task(self._rejoin())
            self._rejoins.add(rejoin)
            rejoin.add_done_callback(self._rejoins.discard)
        self._connected_once = True
        if self.on_connection is not None:
            self.on_connection(True)

    async def _on_disconnect(self, *_reason: Any) -> None:
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
        code = extra.get("code") if isinstance(extra, dict) else None
        try:
            refusal = HUB_ERRORS[ErrorCode(str(code))]
        except ValueError:
            refusal = ConnectRefused
        self.refusal = refusal(str(data.get("message", "")))
