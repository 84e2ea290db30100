"""The hub's whole event table: the handler groups' tables, checked against the protocol.

Each handler group (:mod:`~botarena.server.hub.rooms`, ``agents``, ``proposals``,
``attachments``, ``tickets``, ``moderation``, ``screening``) exposes ``EVENTS``, its event name ->
handler. :func:`event_table` joins them and refuses to start a hub where two groups
claim one event, or where the union is not exactly the protocol's :data:`REQUESTS`.
"""

from __future__ import annotations

from botarena.server.hub import (
    agents,
    attachments,
    moderation,
    proposals,
    rooms,
    screening,
    tickets,
)
from botarena.server.hub.gate import EventTable, Handler
from botarena.server.protocol import REQUESTS

GROUPS: dict[str, EventTable] = {
    "rooms": rooms.EVENTS,
    "agents": agents.EVENTS,
    "proposals": proposals.EVENTS,
    "attachments": attachments.EVENTS,
    "tickets": tickets.EVENTS,
    "moderation": moderation.EVENTS,
    "screening": screening.EVENTS,
}
"""Every handler group's table, by group."""


class EventTableError(RuntimeError):
    """The handler groups do not answer the protocol's events exactly once each."""


def event_table(groups: dict[str, EventTable] = GROUPS) -> dict[str, Handler]:
    """Every protocol event and its handler."""
    table: dict[str, Handler] = {}
    for group, events in groups.items():
        for name, handler in events.items():
            if name in table:
                raise EventTableError(f"{name} is handled twice (again by {group})")
            table[name] = handler
    missing, unknown = REQUESTS.keys() - table.keys(), table.keys() - REQUESTS.keys()
    if missing or unknown:
        raise EventTableError(
            f"events without a handler: {sorted(missing)}; handlers of no event: {sorted(unknown)}"
        )
    return table
