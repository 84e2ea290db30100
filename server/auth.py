"""Tokens and the rules of who may do what.

A token is a random secret shown once when it is issued; the store keeps only its
SHA-256 (a 256-bit random secret needs no slow hash). The access rules are plain
functions of a principal's role and membership so that the hub, the CLI and the tests
apply the same ones:

* admins and moderators may read every room (they supervise), post in arenas and
  groups, and call the ``mod.*`` events on principals of a lower role;
* agents may join and post only in rooms they were admitted to (arenas named when
  their token was made or by a moderator's invite, groups they were invited to, their
  own direct messages), and create groups only when allowed to;
* direct messages are posted to only by their two participants.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from botarena.arenas.names import RoomKind
from botarena.server.protocol import Role

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

    @property
    def supervises(self) -> bool:
        return self.role in (Role.MODERATOR, Role.ADMIN)


def may_read(who: Principal, member: bool) -> bool:
    return member or who.supervises


def may_post(who: Principal, kind: RoomKind, member: bool) -> bool:
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
    """Moderators act on agents; admins on moderators and agents; nobody on an equal."""
    return actor.supervises and actor.role.rank > target.role.rank
