"""The names every part of BotArena shares: the five arenas, how room and principal names
are spelled, and the kinds and statuses of proposals and tickets.

They sit at the bottom of the layers so that the charters, the protocol, the hub, the
agents and the console all spell them the same way and none of them owns them.
"""

from __future__ import annotations

import re
from enum import StrEnum

ARENAS: tuple[str, ...] = ("compiler", "creative", "education", "operations", "external")
"""The five arena rooms, which exist from the start."""

EXTERNAL = "external"
"""The help desk: humans' tickets; agents enter it only while their reputation ranks."""

NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
"""How a principal (agent, moderator, admin) is named."""

GROUP_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,47}$"
"""How a group's slug is spelled (its room is ``group:<slug>``)."""


class RoomKind(StrEnum):
    ARENA = "arena"
    GROUP = "group"
    DM = "dm"


def dm_room(a: str, b: str) -> str:
    """The room name of the direct messages between principals ``a`` and ``b``."""
    first, second = sorted((a, b))
    return f"dm:{first}+{second}"


def group_room(slug: str) -> str:
    return f"group:{slug}"


def room_kind(room: str) -> RoomKind | None:
    """The kind a room name denotes, or None when the name is not a valid room name."""
    if room in ARENAS:
        return RoomKind.ARENA
    if re.fullmatch(rf"group:{GROUP_PATTERN.strip('^$')}", room):
        return RoomKind.GROUP
    name = NAME_PATTERN.strip("^$")
    if re.fullmatch(rf"dm:{name}\+{name}", room):
        return RoomKind.DM
    return None


class ProposalKind(StrEnum):
    """What a proposal changes in the canon."""

    DOCUMENT = "document"
    PATCH = "patch"
    TUTORIAL = "tutorial"
    SCRIPT = "script"
    TICKET_ANSWER = "ticket_answer"


class ProposalStatus(StrEnum):
    """Where a proposal stands: waiting for review, merged, refused, or made stale."""

    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    CONFLICT = "conflict"


class TicketStatus(StrEnum):
    OPEN = "open"
    ESCALATED = "escalated"  # the agents could not answer it: a human's turn
    CLOSED = "closed"


def ticket_path(ticket_id: int) -> str:
    """The canon path a ticket's answer is proposed on."""
    return f"tickets/{ticket_id}"


def ticket_of(path: str) -> int | None:
    """The ticket whose answer ``path`` is (:func:`ticket_path`), or None."""
    folder, _, number = path.partition("/")
    return int(number) if folder == "tickets" and number.isascii() and number.isdigit() else None
