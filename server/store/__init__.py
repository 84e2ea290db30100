"""The hub's store: every durable thing the hub knows, in PostgreSQL through asyncpg.

:class:`Store` (in :mod:`.facade`) owns the connection pool and its transactions and
applies the migrations (:mod:`.schema`, the SQL files in ``migrations/``) when it
opens. It is made of one repository per area, each in its own module and reached as an
attribute of the store: principals and tokens, rooms, messages, agent states,
moderation and control, proposals, the canon, tickets, the audit log, reputation and
artifacts. Refusals are the error tree's classes (:mod:`botarena.server.errors`).
The hub's internals use it, and so do the two commands that write to the database
without a hub: ``botarena up`` (the agents' tokens) and ``botarena bundle install`` (its
audit entry).
"""

from __future__ import annotations

from botarena.server.store.facade import Store, open_store
from botarena.server.store.messages import Posted
from botarena.server.store.moderation import CONTROL_CHANNEL, ControlAction
from botarena.server.store.principals import TokenInfo
from botarena.server.store.rooms import Room

__all__ = [
    "CONTROL_CHANNEL",
    "ControlAction",
    "Posted",
    "Room",
    "Store",
    "TokenInfo",
    "open_store",
]
