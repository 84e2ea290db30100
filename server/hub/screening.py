"""The content filter in the hub, and the moderation queue's events.

Every message sent (:func:`post_screened`), and every proposal and ticket answer
(:func:`screen`), is judged by the local filter
(:mod:`botarena.server.screening`) and handled by its room's policy (the arena's charter,
:data:`~botarena.arenas.policy.DEFAULT_POLICY` elsewhere): allowed, flagged (posted with
its categories in ``flags`` and queued for moderators in the transaction that stores
it), held (stored in the queue only: its sender is refused :class:`Held` with the item's
id) or blocked (refused :class:`Blocked`, nothing stored but an audit entry that names the
categories and rules, never the text). A proposal waits for a human review anyway: a
flag or a hold marks it (``flags``) for its reviewer, and a block refuses it. A human's
message is never kept out of a room: a hold is a flag for them (a block is still
refused: they keep their text and hear why).

Moderators work the queue (``mod.queue``, ``mod.release``, ``mod.drop``, ``mod.clear``);
a release posts the held message through the room's ordinary path under its own client
id, so it gets the room's next id, is broadcast once, and a release retried after a
failure finds it posted. A drop tells its author. AI moderators, and moderators, flag
posted messages (``mod.flag``: they stay, marked) or hold them (``mod.hold``: withheld
from the room, which is told with ``message.withheld``, until a release shows them again
in their place or a drop leaves them withheld); releasing an AI moderator's hold, like
clearing its flag, is an overrule. Every step is pushed to moderators as ``queue.item``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from botarena.arenas.charter import charters
from botarena.arenas.names import room_kind
from botarena.arenas.policy import DEFAULT_POLICY, Action, Policy
from botarena.server import auth
from botarena.server.auth import Principal
from botarena.server.errors import Blocked, Conflict, Forbidden, Held, NotFound, RoomPaused
from botarena.server.hub.context import HubContext
from botarena.server.hub.gate import EventTable
from botarena.server.hub.sessions import Session
from botarena.server.protocol import (
    SUPERVISORS_ROOM,
    FlagRequest,
    Message,
    MessageWithheld,
    ModerationNotice,
    QueueDecision,
    QueueItem,
    QueueList,
    QueueRequest,
    QueueState,
)
from botarena.server.screening import Verdict
from botarena.server.store.messages import HUB_CLIENT_ID_PREFIX, Posted


def policy(room: str) -> Policy:
    """The filter policy of ``room``: its arena's charter's, or the default."""
    charter = charters().get(room)
    return charter.screening if charter is not None else DEFAULT_POLICY


def _label(room: str) -> str:
    """The room as a metrics label: an arena's name, or its kind (never a person's)."""
    return room if room in charters() else str(room_kind(room) or "other")


@dataclass(frozen=True)
class Screened:
    """The filter's verdicts on a text, and what its room's policy makes of them."""

    action: Action
    categories: list[str]
    rules: list[str]

    @property
    def flags(self) -> tuple[str, ...]:
        """The categories a text posted or proposed is marked with."""
        return tuple(self.categories) if self.action is not Action.ALLOW else ()


async def screen(hub: HubContext, room: str, author: Principal, text: str) -> Screened:
    """Judge ``text`` by ``room``'s policy, counted in the metrics; a block is audited
    (the categories and rules, never the text) and raised as :class:`Blocked`. A
    human's text is never held: a hold is a flag for them."""
    verdicts: list[Verdict] = hub.screen.judge(text) if hub.screen is not None else []
    action = policy(room).action(v.category for v in verdicts)
    if author.supervises and action is Action.HOLD:
        action = Action.FLAG
    for verdict in verdicts:
        hub.metrics.verdicts.labels(verdict.category.value, _label(room), action.value).inc()
    screened = Screened(action, [v.category.value for v in verdicts], [v.rule for v in verdicts])
    if action is Action.BLOCK:
        detail = {"room": room, "categories": screened.categories, "rules": screened.rules}
        await hub.store.audit.append(
            "moderation.block", actor="filter", subject=author.name, detail=detail
        )
        raise Blocked(
            f"the content filter refused this ({', '.join(screened.categories)}); "
            "nothing was stored",
            categories=screened.categories,
            rules=screened.rules,
        )
    return screened


async def post_screened(
    hub: HubContext,
    room: str,
    author: Principal,
    text: str,
    *,
    reply_to: int | None,
    client_id: str | None,
    may_post_when_paused: bool,
) -> Posted:
    """Post ``text`` as the room's policy says of the filter's verdicts on it: the
    stored message (flagged or not), or :class:`Blocked` / :class:`Held` raised."""
    screened = await screen(hub, room, author, text)
    if screened.action is Action.HOLD:
        return await _hold(hub, room, author, text, reply_to, client_id, screened)
    posted = await hub.post(
        room,
        author,
        text,
        reply_to=reply_to,
        client_id=client_id,
        may_post_when_paused=may_post_when_paused,
        flags=screened.flags,
        rules=tuple(screened.rules) if screened.flags else (),
    )
    if screened.flags and not posted.duplicate:
        item = await hub.store.queue.for_message(posted.message.id)
        if item is not None:
            await hub.push(item, SUPERVISORS_ROOM)
    return posted


async def _hold(
    hub: HubContext,
    room: str,
    author: Principal,
    text: str,
    reply_to: int | None,
    client_id: str | None,
    screened: Screened,
) -> Posted:
    """Keep a message for a moderator; refused first as a post would be (muted, paused,
    unknown room), so that a hold never queues what could not be posted."""
    found = await hub.room(room)
    if found.paused:
        raise RoomPaused(f"{room} is paused by a moderator")
    await hub.store.moderation.refuse_if_muted(author)
    item, new = await hub.store.queue.hold(
        found.name,
        author,
        text,
        reply_to=reply_to,
        client_id=client_id or HUB_CLIENT_ID_PREFIX + uuid.uuid4().hex,
        categories=screened.categories,
        rules=screened.rules,
    )
    if new:
        await hub.push(item, SUPERVISORS_ROOM)
    raise Held(
        f"the content filter held this message ({', '.join(screened.categories)}) for a "
        f"moderator as #{item.id}: it is posted if released; do not send it again",
        held_id=item.id,
        categories=screened.categories,
    )


# the queue's events ---------------------------------------------------------------


async def queue(hub: HubContext, session: Session, req: QueueRequest) -> QueueList:
    return QueueList(items=await hub.store.queue.items(req.state, req.room, req.limit))


async def _open_item(hub: HubContext, item_id: int, kind: str) -> QueueItem:
    item = await hub.store.queue.get(item_id)
    if item is None:
        raise NotFound(f"no moderation queue item {item_id}")
    if item.kind != kind:
        raise Conflict(f"item {item_id} is {item.kind}, not {kind}")
    if item.state is not QueueState.OPEN:
        raise Conflict(f"item {item_id} is {item.state.value} already")
    return item


async def _decided(
    hub: HubContext,
    session: Session,
    req: QueueDecision,
    state: QueueState,
    message_id: int | None = None,
) -> QueueItem:
    outcome = await hub.store.queue.decide(req.id, state, session.principal, req.reason, message_id)
    if outcome is None:
        raise Conflict(f"item {req.id} was decided meanwhile")
    decided, overrules = outcome
    if overrules:
        hub.metrics.overrules.inc()
    await hub.push(decided, SUPERVISORS_ROOM)
    return decided


async def release(hub: HubContext, session: Session, req: QueueDecision) -> QueueItem:
    item = await _open_item(hub, req.id, "held")
    author = await hub.principal(item.author)
    if item.message_id is not None:  # withheld after it was posted: shown again
        decided = await _decided(hub, session, req, QueueState.RELEASED)
        shown = await hub.store.messages.get(item.message_id)
        await _push_withheld(hub, item, session.principal, shown)
    else:
        held = await hub.store.queue.held_text(item.id)
        assert held is not None
        text, reply_to, client_id = held
        posted = await hub.post(  # the room's next id; once, whatever a retry does
            item.room,
            author,
            text,
            reply_to=reply_to,
            client_id=client_id,
            may_post_when_paused=True,
        )
        decided = await _decided(hub, session, req, QueueState.RELEASED, posted.message.id)
    notice = ModerationNotice(
        action="release", by=session.principal.name, room=item.room, reason=req.reason
    )
    await hub.notify(author, notice)
    return decided


async def drop(hub: HubContext, session: Session, req: QueueDecision) -> QueueItem:
    item = await _open_item(hub, req.id, "held")
    decided = await _decided(hub, session, req, QueueState.DROPPED)
    notice = ModerationNotice(
        action="drop", by=session.principal.name, room=item.room, reason=req.reason
    )
    await hub.notify(await hub.principal(item.author), notice)
    return decided


async def clear(hub: HubContext, session: Session, req: QueueDecision) -> QueueItem:
    await _open_item(hub, req.id, "flagged")
    return await _decided(hub, session, req, QueueState.CLEARED)


async def _judged(
    hub: HubContext, session: Session, req: FlagRequest, action: str
) -> tuple[Message, Principal]:
    """The posted message a flag or a hold names, and its author, when ``session`` may
    act on them: a moderator on anyone's, an AI moderator on another agent's message in
    a room it may read."""
    who = session.principal
    message = await hub.store.messages.get(req.message_id)
    if message is None or not await hub.arena_readable(session, message.room):
        raise NotFound(f"no message {req.message_id} in a room {who.name} may read")
    author = await hub.principal(message.author)
    if not auth.may_moderate(who, author):
        if who.ai_moderator:
            hub.metrics.ai_moderator_actions.labels("refused").inc()
        raise Forbidden(f"{who.name} may not {action} a message of {author.name} ({author.role})")
    return message, author


async def _queued(hub: HubContext, who: Principal, item: QueueItem, action: str) -> None:
    if who.ai_moderator:
        hub.metrics.ai_moderator_actions.labels(action).inc()
    await hub.push(item, SUPERVISORS_ROOM)


async def _push_withheld(
    hub: HubContext, item: QueueItem, by: Principal, shown: Message | None = None
) -> None:
    assert item.message_id is not None
    withheld = MessageWithheld(
        room=item.room,
        message_id=item.message_id,
        withheld=shown is None,
        by=by.name,
        message=shown,
    )
    await hub.push(withheld, item.room)


async def flag(hub: HubContext, session: Session, req: FlagRequest) -> QueueItem:
    """Flag a posted message: it stays in its room, marked, and waits in the queue."""
    message, _ = await _judged(hub, session, req, "flag")
    item, new = await hub.store.queue.flag(message, session.principal, req.category, req.reason)
    if new:
        await _queued(hub, session.principal, item, "flag")
    return item


async def hold(hub: HubContext, session: Session, req: FlagRequest) -> QueueItem:
    """Hold a posted message: withheld from its room (its readers are told to hide it,
    its history no longer gives it) until a moderator releases or drops it; its author
    is told."""
    message, author = await _judged(hub, session, req, "hold")
    item, new = await hub.store.queue.withhold(message, session.principal, req.category, req.reason)
    if new:
        await _queued(hub, session.principal, item, "hold")
        await _push_withheld(hub, item, session.principal)
        notice = ModerationNotice(
            action="hold", by=session.principal.name, room=item.room, reason=req.reason
        )
        await hub.notify(author, notice)
    return item


EVENTS: EventTable = {
    "mod.queue": queue,
    "mod.release": release,
    "mod.drop": drop,
    "mod.clear": clear,
    "mod.flag": flag,
    "mod.hold": hold,
}
