"""The connection pool and its transactions, shared by every repository of the store.

:class:`Database` is the one holder of the asyncpg pool. Every repository reaches
PostgreSQL through it in the same way: a method runs on a connection and a transaction
of its own, unless it is handed ``conn``, the connection of a caller's transaction, in
which case it is one step of that larger change (a proposal approved, its ticket closed
and both audited commit or fail together).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg


class Database:
    """The pool, and transactions on it that a caller may share with its repositories."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @asynccontextmanager
    async def transaction(
        self, conn: asyncpg.Connection | None = None
    ) -> AsyncIterator[asyncpg.Connection]:
        """A new transaction that commits when the block ends; or, given ``conn``, the
        caller's own, which the caller commits."""
        if conn is not None:
            yield conn
            return
        async with self.pool.acquire() as acquired, acquired.transaction():
            yield acquired
