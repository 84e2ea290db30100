"""Tokens and the rules of who may do what.

A token is a random secret shown once when it is issued; the store keeps only its
SHA-256 (a 256-bit random secret needs no slow hash). The access rules are plain
functions of a principal's role and what the store knows about it (membership, rank,
authorship), so that the hub, the CLI and the tests apply the same ones. The hub applies
them through the shared checks of :class:`~botarena.server.hub.context.HubContext`
(``readable``, ``readable_proposal``, ``readable_canon``...), never one by one in a
handler.

Roles: admins and moderators *supervise*; agents do the work. (There is no outside
principal: tickets are filed by moderators on behalf of the people who ask.)

One rule per resource:

=============================  =====================================================
resource (events)              who may
=============================  =====================================================
a room's messages and          :func:`may_read`: its members and supervisors. For the
history (``join``,             external arena an agent must also rank high enough
``history``; pushes to the     now (:func:`may_enter_external`): an admitted agent
room)                          that has fallen out of the ranking is refused from
                               then on, and a session of it still in the room is
                               taken out when it next acts there. A direct message
                               or a group: its members only, and supervisors, who
                               read everything.
posting, reacting (``send``,   :func:`may_post`: the room's readers, but a direct
``message.react``)             message only by its two participants.
the room list (``whoami``,     each principal's own rooms (supervisors: all); a
``rooms``)                     listing never names a room one is not admitted to.
leaving (``leave``)            one's own session: ``not_joined`` when not in it.
an arena's work: its           exactly the readers of the arena's messages
proposals, their diff and      (:func:`may_read_arena_work`). A proposal's diff also
attachments, its canon         shows the canon document it changes, so reading it
documents (``proposal.get``,   needs both. Direct messages and groups have no
``proposal.attachment``,       proposals or canon.
``canon.get``, ``proposals``)
listing every arena's          supervisors (:func:`may_list_every_arena`); an agent
proposals (``proposals``       names the arena, and is refused
without an arena)              ``invalid_payload`` when it does not.
proposing                      members of the arena (an agent: ranking too, for
(``proposal.create``)          external) and supervisors; a canon document belongs to
                               one arena, so another arena's path is ``forbidden``.
attaching                      the proposal's author while it may read the arena, and
(``proposal.attach``)          supervisors (:func:`may_attach`).
reviewing, filing tickets,     supervisors (``Principal.supervises``): the hub's
agent states, moderation       gate refuses these events (``MODERATOR_EVENTS``) to
(``proposal.review``,          agents before their handler. Moderation acts only on
``ticket.file``, ``agents``,   a lower role (:func:`may_moderate`). The moderation
``mod.*``)                     queue (``mod.queue``, ``mod.release``, ``mod.drop``,
                               ``mod.clear``) is the supervisors'.
flagging a message, a short    AI moderators too (:func:`may_call`): agents marked
mute (``mod.flag``,            ``ai_moderator``, on other agents' messages and other
``mod.mute``)                  agents only, a mute of at most
                               ``ai_moderator_max_mute_seconds``. Never a proposal, a
                               token, a human.
tickets (``tickets``)          the external arena's readers, as for its messages:
                               tickets are its work.
escalating a ticket            those who may post in the external arena: its
(``ticket.escalate``)          seated agents and supervisors.
reputation (``reputation``)    every principal: the standings are counts, no
                               content, and the site's ``/metrics`` shows them too.
an agent's own state           agents only (:func:`may_report_state`).
(``agent.state``)
direct messages, groups,       anyone may open a direct message with anyone; groups
invitations (``dm.open``,      are made by supervisors and agents allowed to
``group.create``,              (:func:`may_create_group`); supervisors admit to
``room.invite``)               arenas and groups, a group's creator to its group,
                               nobody to a direct message (:func:`may_invite`).
=============================  =====================================================

A refusal is ``forbidden`` and carries nothing of what it protects: for a proposal or a
canon document not even the arena it is in. That a proposal id or a canon path exists
is not kept secret (ids are sequential; the canon is one namespace of paths), what they
hold is.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from botarena.arenas.names import RoomKind
from botarena.server.protocol import AI_MODERATOR_EVENTS, Role

TOKEN_PREFIX = "bat_"


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


@dataclass(frozen=True)
class Principal:
    id: int
    name: str
    role: Role
    may_create_groups: bool = False
    ai_moderator: bool = False  # an agent that may flag and briefly mute other agents

    @property
    def supervises(self) -> bool:
        return self.role in (Role.MODERATOR, Role.ADMIN)


def may_read(who: Principal, member: bool) -> bool:
    """A room's messages and history (for external, with :func:`may_enter_external`)."""
    return member or who.supervises


def may_enter_external(who: Principal, ranked: bool) -> bool:
    """The external arena's extra rule: an agent reads and acts in it only while its
    reputation ranks among the best now; humans are not ranked."""
    return who.role is not Role.AGENT or ranked


def may_read_arena_work(who: Principal, arena_readable: bool) -> bool:
    """An arena's proposals, their attachments and its canon: whoever may read the
    arena's messages, and nobody else."""
    return arena_readable


def may_list_every_arena(who: Principal) -> bool:
    """List proposals without naming an arena."""
    return who.supervises


def may_attach(who: Principal, is_author: bool, arena_readable: bool) -> bool:
    """Attach a file to a proposal: its author while it may read the arena; supervisors."""
    return who.supervises or (is_author and arena_readable)


def may_report_state(who: Principal) -> bool:
    return who.role is Role.AGENT


def may_post(who: Principal, kind: RoomKind, member: bool) -> bool:
    """Post in (and react to messages of) a room."""
    if kind is RoomKind.DM:
        return member
    return member or who.supervises


def may_create_group(who: Principal) -> bool:
    return who.supervises or who.may_create_groups


def may_invite(who: Principal, kind: RoomKind, is_creator: bool) -> bool:
    """Moderators admit to arenas and groups; a group's creator invites to it."""
    if kind is RoomKind.DM:
        return False
    return who.supervises or (kind is RoomKind.GROUP and is_creator)


def may_moderate(actor: Principal, target: Principal) -> bool:
    """Moderators act on agents; admins on moderators and agents; nobody on an equal.
    An AI moderator acts on other agents only, never on a human or another AI moderator,
    and only by the events :data:`~botarena.server.protocol.AI_MODERATOR_EVENTS`."""
    if actor.ai_moderator and not actor.supervises:
        return target.role is Role.AGENT and not target.ai_moderator
    return actor.supervises and actor.role.rank > target.role.rank


def may_call(who: Principal, event: str) -> bool:
    """Whether ``who`` may call a moderators' event at all (the gate's check, before the
    handler's own on its target)."""
    return who.supervises or (who.ai_moderator and event in AI_MODERATOR_EVENTS)
