"""Moderation: mute, unmute, kick and pause, by moderators over lower roles.

A moderator acts on agents and an admin on moderators and agents, never on an equal; an
AI moderator mutes other agents only, for at most ``ai_moderator_max_mute_seconds``, and
a human who lifts its mute overrules it (audited).
The target is told by a ``moderation`` push; a kick reaches every hub process through
the store's control channel (:mod:`botarena.server.hub.jobs`), and a pause is pushed to
the room as ``room.state``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from botarena.server import auth
from botarena.server.auth import Principal
from botarena.server.errors import Forbidden, InvalidPayload
from botarena.server.hub.context import HubContext
from botarena.server.hub.gate import EventTable
from botarena.server.hub.sessions import Session
from botarena.server.protocol import (
    KickRequest,
    KickResult,
    ModerationNotice,
    MuteRequest,
    MuteResult,
    PauseRequest,
    PauseResult,
    ResumeRequest,
    RoomState,
    UnmuteRequest,
    UnmuteResult,
)


def _moderatable(actor: Principal, target: Principal) -> None:
    if not auth.may_moderate(actor, target):
        raise Forbidden(
            f"a {actor.role.value} cannot moderate a {target.role.value} ({target.name})"
        )


async def mute(hub: HubContext, session: Session, req: MuteRequest) -> MuteResult:
    actor = session.principal
    ai = not actor.supervises  # the gate lets only AI moderators through otherwise
    longest = hub.settings.ai_moderator_max_mute_seconds if ai else hub.settings.max_mute_seconds
    if req.seconds > longest:
        raise InvalidPayload(f"a mute by {actor.name} lasts at most {longest}s")
    target = await hub.principal(req.principal)
    try:
        _moderatable(actor, target)
    except Forbidden:
        if ai:
            hub.metrics.ai_moderator_actions.labels("refused").inc()
        raise
    if ai:
        hub.metrics.ai_moderator_actions.labels("mute").inc()
    until = datetime.now(UTC) + timedelta(seconds=req.seconds)
    await hub.store.moderation.mute(target, until, req.reason, session.principal)
    notice = ModerationNotice(
        action="mute", by=session.principal.name, until=until, reason=req.reason
    )
    await hub.notify(target, notice)
    return MuteResult(principal=target.name, until=until)


async def unmute(hub: HubContext, session: Session, req: UnmuteRequest) -> UnmuteResult:
    target = await hub.principal(req.principal)
    _moderatable(session.principal, target)
    lifted, overruled = await hub.store.moderation.unmute(target, session.principal)
    if overruled:
        hub.metrics.overrules.inc()
    if lifted:
        await hub.notify(target, ModerationNotice(action="unmute", by=session.principal.name))
    return UnmuteResult(principal=target.name, lifted=lifted)


async def kick(hub: HubContext, session: Session, req: KickRequest) -> KickResult:
    target = await hub.principal(req.principal)
    _moderatable(session.principal, target)
    room = (await hub.room(req.room)).name if req.room is not None else None
    notice = ModerationNotice(
        action="kick", by=session.principal.name, room=room, reason=req.reason
    )
    await hub.notify(target, notice)
    await hub.store.moderation.kick(target, room, req.reason, session.principal)
    return KickResult(principal=target.name, room=room)


async def _set_paused(
    hub: HubContext, session: Session, name: str, paused: bool, reason: str
) -> PauseResult:
    room = await hub.room(name)
    changed = await hub.store.moderation.set_paused(room.name, paused, reason, session.principal)
    if changed:
        state = RoomState(room=room.name, paused=paused, by=session.principal.name, reason=reason)
        await hub.push(state, room.name)
    return PauseResult(room=room.name, paused=paused, changed=changed)


async def pause(hub: HubContext, session: Session, req: PauseRequest) -> PauseResult:
    return await _set_paused(hub, session, req.room, True, req.reason)


async def resume(hub: HubContext, session: Session, req: ResumeRequest) -> PauseResult:
    return await _set_paused(hub, session, req.room, False, "")


EVENTS: EventTable = {
    "mod.mute": mute,
    "mod.unmute": unmute,
    "mod.kick": kick,
    "mod.pause": pause,
    "mod.resume": resume,
}
