"""Temporary: where proposals were before the store's repositories.

Proposals are ``store.proposals``, canon documents ``store.canon`` and tickets
``store.tickets`` (:mod:`botarena.server.store`). :class:`ProposalStore` keeps the old
names over them until the hub and the commands use those; delete this module then.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from botarena.server.store import Store


class ProposalStore:
    """The old proposal, canon and ticket calls, answered by the store's repositories."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        store = Store(pool, "")
        self._store = store
        self.create = store.proposals.create
        self.get = store.proposals.get
        self.list = store.proposals.find
        self.reject = store.proposals.reject
        self.approve = store.proposals.approve
        self.sync = store.proposals.sync
        self.canon = store.canon.get
        self.file_ticket = store.tickets.file
        self.tickets = store.tickets.find

    async def stats(self) -> dict[str, Any]:
        """Proposal counts per arena and status, and the tickets' counts, for /metrics."""
        return {
            "proposals": await self._store.proposals.counts(),
            "tickets": await self._store.tickets.counts(),
        }
