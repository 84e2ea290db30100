"""The hub's packet layer: which Socket.IO frames reach a handler at all.

:class:`HubServer` is python-socketio's ``AsyncServer`` with the checks a hostile client
calls for before any handler runs. Frames are decoded by :class:`HubPacket`, whose JSON
reader refuses what the store could not hold (:func:`check_value`): NaN and Infinity,
integers beyond 64 bits, text with NUL or lone surrogates, nesting deeper than
:data:`MAX_DEPTH`, more than :data:`MAX_VALUES` values. (The decoder itself stops at
Python's recursion limit, so its work is linear in a frame already bounded by
``max_payload_bytes``.) An event goes to its handler only when its name is one of the
protocol's events; every other name, the ones python-socketio treats specially
(``connect``, ``disconnect``...) included, goes to the unknown-event handler, which is
rate-limited like the rest. A second CONNECT on a live namespace is refused, and binary
frames, which no protocol event uses, are answered and never buffered. A refused frame
is answered wherever the client waits for an answer (CONNECT_ERROR with the error code,
or an error acknowledgement), and otherwise dropped. Before a connection authenticates,
each refused frame is told to the hub (``stranger``), which spends it from the address's
refusals: a CONNECT is then answered ``rate_limited``, any other frame drops the
connection (:meth:`HubServer.abort`).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Awaitable, Callable, Collection
from typing import Any

import orjson
import socketio
import structlog
from engineio import exceptions as eio_exceptions
from engineio import packet as eio_packet
from pydantic import BaseModel
from socketio import packet

from botarena.server.errors import HubError, InvalidPayload, RateLimited, Unauthorized
from botarena.server.protocol import Ack

log = structlog.get_logger(__name__)

MAX_DEPTH = 16
"""The deepest nesting of lists and objects a frame may carry (the protocol needs 4)."""

MAX_VALUES = 10_000
"""The most values (strings, numbers, lists, objects...) one frame may carry."""

INT64 = 2**63
"""Integers must lie in [-INT64, INT64): PostgreSQL's bigint, the widest column."""

UNKNOWN_EVENT = "\x00unknown"
"""Where events of no protocol name are sent (a name no client can send: NUL is refused)."""

_SURROGATE = re.compile("[\ud800-\udfff]")


def ok_ack(data: BaseModel | None) -> dict[str, Any]:
    """The acknowledgement of an event that succeeded, with its response model."""
    return {
        "ok": True,
        "data": None if data is None else data.model_dump(mode="json"),
        "error": None,
    }


def error_ack(error: HubError) -> dict[str, Any]:
    """The acknowledgement of an event that was refused."""
    return Ack(ok=False, error=error.body()).model_dump(mode="json")


def _check_text(text: str) -> None:
    if "\x00" in text:
        raise InvalidPayload("text may not contain NUL (\\u0000)")
    if not text.isascii() and _SURROGATE.search(text):
        raise InvalidPayload("text is not valid Unicode (a lone surrogate)")


def check_value(value: Any) -> None:
    """Refuse (``InvalidPayload``) a decoded JSON value the store could not hold."""
    _check(value)


def _check(value: Any) -> bool:
    """:func:`check_value`; whether the value holds a float."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    seen = 1
    floats = False
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            _check_text(item)
        elif isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, int):
            if not -INT64 <= item < INT64:
                raise InvalidPayload("an integer is beyond 64 bits")
        elif isinstance(item, float):
            floats = True
            if not math.isfinite(item):
                raise InvalidPayload("a number is not finite")
        elif isinstance(item, list | dict):
            if depth >= MAX_DEPTH:
                raise InvalidPayload(f"nested deeper than {MAX_DEPTH}")
            seen += len(item)
            if seen > MAX_VALUES:
                raise InvalidPayload(f"more than {MAX_VALUES} values")
            if isinstance(item, dict):
                for key in item:
                    _check_text(key)
                stack.extend((child, depth + 1) for child in item.values())
            else:
                stack.extend((child, depth + 1) for child in item)
    return floats


def _refuse_constant(name: str) -> Any:
    raise InvalidPayload(f"{name} is not a number JSON allows")


_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)


class BoundedJSON:
    """The ``json`` module python-socketio's packets use: orjson, with :func:`check_value`
    on read.

    A frame orjson refuses, or one with a float in it (orjson reads an integer beyond 64
    bits as a float, where the standard library keeps it an integer that
    :func:`check_value` refuses), is read again by the standard library's decoder, so
    that what is accepted and every refusal's reason are the standard library's."""

    @staticmethod
    def dumps(value: Any, **_kwargs: Any) -> str:
        try:
            return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
        except TypeError:  # a type orjson does not write (an integer beyond 64 bits...)
            return json.dumps(value, separators=(",", ":"))

    @staticmethod
    def loads(text: str | bytes, **_kwargs: Any) -> Any:
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError:
            return _strict_loads(text)
        if _check(value):
            return _strict_loads(text)
        return value


def _strict_loads(text: str | bytes) -> Any:
    """The standard library's reading of a frame, with :func:`check_value`."""
    try:
        if not isinstance(text, str):
            text = text.decode()
        value = _DECODER.decode(text)
    except RecursionError:
        raise InvalidPayload(f"nested deeper than {MAX_DEPTH}") from None
    except ValueError as exc:  # malformed JSON, or an integer of thousands of digits
        raise InvalidPayload(f"not JSON: {str(exc)[:120]}") from None
    check_value(value)
    return value


class RefusedFrame(Exception):
    """A frame that did not decode: the error, and what the client waits for."""

    def __init__(self, error: HubError, packet_type: int | None, ack_id: int | None) -> None:
        super().__init__(error.message)
        self.error = error
        self.packet_type = packet_type
        self.ack_id = ack_id


class HubPacket(packet.Packet):
    """A Socket.IO packet read with :class:`BoundedJSON`. No protocol event carries
    binary data, so outgoing packets are not searched for it."""

    json = BoundedJSON
    uses_binary_events = False

    def decode(self, encoded_packet: str) -> int:
        try:
            return int(super().decode(encoded_packet) or 0)
        except InvalidPayload as exc:
            raise RefusedFrame(exc, self.packet_type, self.id) from None
        except (ValueError, TypeError) as exc:  # not a Socket.IO packet at all
            raise RefusedFrame(InvalidPayload(str(exc)[:120]), None, None) from None


UnknownHandler = Callable[[str, str], Awaitable[dict[str, Any]]]
"""Answers an event of no protocol name: (Socket.IO sid, the name as sent)."""
StrangerHandler = Callable[[dict[str, Any]], Awaitable[float]]
"""Told of each frame refused before its connection authenticated (its WSGI-style
environ): the seconds its address must wait now, 0 while it has refusals left."""


class HubServer(socketio.AsyncServer):
    """A Socket.IO server that lets only the protocol's frames reach their handlers."""

    def __init__(
        self,
        events: Collection[str],
        unknown: UnknownHandler,
        stranger: StrangerHandler | None = None,
        **options: Any,
    ) -> None:
        super().__init__(serializer=HubPacket, **options)
        self.protocol_events = frozenset(events)
        self.on(UNKNOWN_EVENT, unknown)
        self._stranger = stranger

    async def emit(
        self,
        event: str,
        data: Any = None,
        to: Any = None,
        room: Any = None,
        skip_sid: Any = None,
        namespace: str | None = None,
        callback: Any = None,
        ignore_queue: bool = False,
    ) -> None:
        """python-socketio's emit; to one room of this process' own manager, each
        connection's queue is handed the packet directly (see :meth:`_emit_here`)."""
        target = to or room
        if (
            isinstance(target, str)
            and skip_sid is None
            and callback is None
            and type(self.manager) is socketio.AsyncManager
        ):
            await self._emit_here(event, data, target, namespace or "/")
            return
        await super().emit(
            event,
            data,
            to=to,
            room=room,
            skip_sid=skip_sid,
            namespace=namespace,
            callback=callback,
            ignore_queue=ignore_queue,
        )

    async def _emit_here(self, event: str, data: Any, room: str, namespace: str) -> None:
        """An event to every connection in ``room`` of this process: the packet encoded
        once, as python-socketio does, then put on each connection's send queue in turn
        (unbounded: it never waits) rather than by a task per connection."""
        if isinstance(data, tuple):
            args = list(data)
        else:
            args = [] if data is None else [data]
        encoded = self.packet_class(packet.EVENT, namespace=namespace, data=[event, *args])
        frame = eio_packet.Packet(eio_packet.MESSAGE, encoded.encode())
        sockets = self.eio.sockets
        for _sid, eio_sid in self.manager.get_participants(namespace, room):
            sock = sockets.get(eio_sid)
            if sock is None or sock.closed:
                continue
            try:
                await sock.send(frame)
            except eio_exceptions.SocketIsClosedError:
                continue

    async def _stranger_wait(self, eio_sid: str) -> float:
        """A frame of a connection not authenticated was refused: what the hub says its
        address must wait now."""
        if self._stranger is None:
            return 0.0
        return await self._stranger(self.environ.get(eio_sid, {}))

    async def _refused_stranger(self, eio_sid: str) -> None:
        """A frame other than a CONNECT was refused before authenticating: the connection
        is dropped once its address has spent its refusals."""
        if await self._stranger_wait(eio_sid):
            await self.abort(eio_sid, "too many refused frames")

    async def abort(self, eio_sid: str, reason: str) -> None:
        """Close a connection's transport at once. An Engine.IO close would wait for the
        client's next frame to end a websocket (and a Socket.IO disconnect tells clients
        not to come back); aborting the socket and waking its writer closes it now."""
        sock = self.eio.sockets.get(eio_sid)
        if sock is not None:
            await sock.close(wait=False, abort=True, reason=reason)
            await sock.queue.put(None)

    async def _answer(
        self, eio_sid: str, namespace: str, ack_id: int | None, error: HubError
    ) -> None:
        if ack_id is None:
            return  # nobody waits for an answer
        answer = self.packet_class(
            packet.ACK, namespace=namespace, id=ack_id, data=[error_ack(error)]
        )
        await self._send_packet(eio_sid, answer)

    async def _refuse_connect(self, eio_sid: str, namespace: str, error: HubError) -> None:
        extra = {"retry_after": error.retry_after} if isinstance(error, RateLimited) else {}
        reason = {"message": error.message, "data": {"code": str(error.code), **extra}}
        await self._send_packet(
            eio_sid, self.packet_class(packet.CONNECT_ERROR, data=reason, namespace=namespace)
        )

    async def _handle_eio_message(self, eio_sid: str, data: str | bytes) -> None:
        if not isinstance(data, str):  # an attachment (or a number Engine.IO decoded)
            if self.manager.sid_from_eio_sid(eio_sid, "/") is None:
                await self._refused_stranger(eio_sid)
            return  # no protocol packet has attachments, so none is ever awaited
        try:
            pkt = self.packet_class(encoded_packet=data)
        except RefusedFrame as refused:
            log.info("hub.frame_refused", error=refused.error.message)
            stranger = self.manager.sid_from_eio_sid(eio_sid, "/") is None
            if refused.packet_type == packet.CONNECT:  # refused, as a bad token is
                wait = await self._stranger_wait(eio_sid) if stranger else 0.0
                await self._refuse_connect(
                    eio_sid, "/", too_many_refusals(wait) if wait else refused.error
                )
                return
            await self._answer(eio_sid, "/", refused.ack_id, refused.error)
            if stranger:
                await self._refused_stranger(eio_sid)
            return
        namespace = pkt.namespace or "/"
        kind = pkt.packet_type
        if kind == packet.CONNECT:
            if self.manager.sid_from_eio_sid(eio_sid, namespace) is not None:
                await self._refuse_connect(
                    eio_sid, namespace, InvalidPayload("this connection is connected already")
                )
            else:
                await self._handle_connect(eio_sid, namespace, pkt.data)
        elif kind == packet.DISCONNECT:
            await self._handle_disconnect(eio_sid, namespace, self.reason.CLIENT_DISCONNECT)
        elif kind == packet.EVENT:
            await self._dispatch(eio_sid, namespace, pkt.id, pkt.data)
        elif kind == packet.ACK:
            await self._handle_ack(eio_sid, namespace, pkt.id, pkt.data)
        else:  # binary events and acks, CONNECT_ERROR: not for a client to send
            await self._answer(
                eio_sid,
                namespace,
                pkt.id,
                InvalidPayload("binary frames are not part of the protocol"),
            )
            if self.manager.sid_from_eio_sid(eio_sid, namespace) is None:
                await self._refused_stranger(eio_sid)

    async def _dispatch(self, eio_sid: str, namespace: str, ack_id: int | None, data: Any) -> None:
        sid = self.manager.sid_from_eio_sid(eio_sid, namespace)
        if sid is None or not self.manager.is_connected(sid, namespace):
            await self._answer(eio_sid, namespace, ack_id, Unauthorized("not authenticated"))
            await self._refused_stranger(eio_sid)
            return
        if not isinstance(data, list) or not data:
            await self._answer(
                eio_sid, namespace, ack_id, InvalidPayload("an event is a list: [name, payload]")
            )
            return
        name = data[0]
        if not isinstance(name, str) or name not in self.protocol_events:
            data = [UNKNOWN_EVENT, name if isinstance(name, str) else repr(name)[:64]]
        await self._handle_event(eio_sid, namespace, ack_id, data)


def too_many_refusals(wait: float) -> RateLimited:
    """The refusal of a connect from an address that spent its refused connects."""
    return RateLimited(f"too many refused connects: wait {wait:.2f}s", retry_after=wait)
