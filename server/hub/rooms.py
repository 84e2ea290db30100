"""Rooms and messages: who may read and post where, joining, sending, history, direct
messages and groups.

Every message is stored before it is broadcast, and one hub broadcasts a room's
messages in id order (a lock per room around store-and-emit). Each push carries the
id of the room's message before it (``prev_id``), so a client that missed one fetches
it. A send whose write the database failed is broadcast when the store finds it was
stored after all, and answered ``unavailable`` (resend with the same client id) when
it was not (see :mod:`botarena.server.store.messages`). Joining enters the Socket.IO
room before history is read, so nothing posted meanwhile slips by; a join with
``since`` resumes from the last id seen, paged by ``history``. What is sent passes the
content filter first (:mod:`botarena.server.hub.screening`).
"""

from __future__ import annotations

import time

from botarena.arenas.names import RoomKind, dm_room, group_room, room_kind
from botarena.server import auth
from botarena.server.errors import (
    Forbidden,
    InvalidPayload,
    NotJoined,
    TooLarge,
)
from botarena.server.hub.context import PRIVATE_ROOMS, HubContext
from botarena.server.hub.gate import EventTable
from botarena.server.hub.screening import post_screened
from botarena.server.hub.sessions import Session
from botarena.server.protocol import (
    DirectRequest,
    EmptyRequest,
    GroupCreateRequest,
    HistoryRequest,
    HistoryResult,
    InviteRequest,
    InviteResult,
    JoinRequest,
    JoinResult,
    LeaveRequest,
    LeaveResult,
    RoomInfo,
    RoomInvited,
    RoomList,
    SendRequest,
    SendResult,
    Whoami,
)


async def whoami(hub: HubContext, session: Session, _req: EmptyRequest) -> Whoami:
    rooms = await hub.store.rooms.visible_to(session.principal)
    who = session.principal
    return Whoami(name=who.name, role=who.role, rooms=[r.name for r in rooms])


async def rooms(hub: HubContext, session: Session, _req: EmptyRequest) -> RoomList:
    return RoomList(rooms=await hub.store.rooms.visible_to(session.principal))


async def join(hub: HubContext, session: Session, req: JoinRequest) -> JoinResult:
    room, may_post = await hub.readable(session, req.room)
    await hub.enter(session, room.name, may_post)  # before reading history: nothing slips by
    if req.since is None:
        messages, has_more = await hub.store.messages.history(
            room.name, limit=hub.settings.history_on_join
        )
        has_more = False  # recent history is a window, not a resume
    else:
        messages, has_more = await hub.store.messages.history(
            room.name, since=req.since, limit=hub.settings.history_page
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


async def leave(hub: HubContext, session: Session, req: LeaveRequest) -> LeaveResult:
    if not await hub.leave(session, req.room):
        raise NotJoined(f"not in {req.room[:80]!r}")
    return LeaveResult(room=req.room)


async def send(hub: HubContext, session: Session, req: SendRequest) -> SendResult:
    received = time.perf_counter()
    if req.room not in session.joined:
        if room_kind(req.room) not in PRIVATE_ROOMS or session.principal.supervises:
            await hub.room(req.room)  # an unknown arena says so; a private room shows nothing
        raise NotJoined(f"join {req.room[:80]} before sending to it")
    if not session.joined[req.room]:
        raise Forbidden(f"{session.principal.name} may not post here")
    await hub.still_admitted(session, req.room)  # standings change
    limit = hub.settings.max_message_chars
    if len(req.text) > limit:
        raise TooLarge(f"text is {len(req.text)} characters; the limit is {limit}")
    if not req.text.strip():
        raise InvalidPayload("text is blank")
    posted = await post_screened(  # refused: Blocked, Held, Muted, RoomPaused, NotFound...
        hub,
        req.room,
        session.principal,
        req.text,
        reply_to=req.reply_to,
        client_id=req.client_id,
        may_post_when_paused=session.principal.supervises,
    )
    if posted.announce:
        hub.metrics.delivery_latency.observe(time.perf_counter() - received)
    return SendResult(message=posted.message, duplicate=posted.duplicate)


async def history(hub: HubContext, session: Session, req: HistoryRequest) -> HistoryResult:
    if req.since is not None and req.before is not None:
        raise InvalidPayload("give since or before, not both")
    room, _ = await hub.readable(session, req.room)
    limit = min(req.limit, hub.settings.history_page)
    messages, has_more = await hub.store.messages.history(
        room.name, since=req.since, before=req.before, limit=limit
    )
    return HistoryResult(messages=messages, has_more=has_more)


async def open_dm(hub: HubContext, session: Session, req: DirectRequest) -> RoomInfo:
    who = session.principal
    other = await hub.principal(req.principal)
    if other.id == who.id:
        raise InvalidPayload("a direct message needs another principal")
    name = dm_room(who.name, other.name)
    await hub.store.rooms.open_dm(who, other, name)
    info = RoomInfo(name=name, kind=RoomKind.DM, may_post=True)
    await hub.notify(other, RoomInvited(**info.model_dump()))
    return info


async def create_group(hub: HubContext, session: Session, req: GroupCreateRequest) -> RoomInfo:
    who = session.principal
    if not auth.may_create_group(who):
        raise Forbidden(f"{who.name} may not create groups")
    members = [await hub.principal(name) for name in dict.fromkeys(req.members)]
    name = group_room(req.name)
    await hub.store.rooms.create_group(name, req.title, who, members)
    info = RoomInfo(name=name, kind=RoomKind.GROUP, title=req.title, may_post=True)
    for member in members:
        await hub.notify(member, RoomInvited(**info.model_dump()))
    return info


async def invite(hub: HubContext, session: Session, req: InviteRequest) -> InviteResult:
    who = session.principal
    refused = Forbidden(f"{who.name} may not invite to {req.room[:80]}")
    try:
        room = await hub.room(req.room, who)
    except Forbidden:  # a private room that does not exist: told as one that does
        raise refused from None
    if not auth.may_invite(who, room.kind, room.created_by == who.id):
        raise refused
    target = await hub.principal(req.principal)
    added = await hub.store.rooms.add_member(room.name, target, who)
    if added:
        invited = RoomInvited(name=room.name, kind=room.kind, title=room.title, paused=room.paused)
        await hub.notify(target, invited)
    return InviteResult(room=room.name, principal=target.name, added=added)


EVENTS: EventTable = {
    "whoami": whoami,
    "rooms": rooms,
    "join": join,
    "leave": leave,
    "send": send,
    "history": history,
    "dm.open": open_dm,
    "group.create": create_group,
    "room.invite": invite,
}
