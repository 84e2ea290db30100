"""The connection pool and its transactions, shared by every repository of the store,
and the one rule for which database errors mean "the database is away".

:class:`Database` is the one holder of the asyncpg pool. Every repository reaches
PostgreSQL through it in the same way: a method runs on a connection and a transaction
of its own, unless it is handed ``conn``, the connection of a caller's transaction, in
which case it is one step of that larger change (a proposal approved, its ticket closed
and both audited commit or fail together).

:data:`UNAVAILABLE` is what a database that is down, restarting, full or unreachable
raises; the hub answers those ``unavailable`` (retry later), never ``internal``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from asyncpg import exceptions as pg

UNAVAILABLE: tuple[type[Exception], ...] = (
    pg.PostgresConnectionError,  # 08xxx: the connection does not exist, failed, was refused
    pg.CannotConnectNowError,  # 57P03: the database system is starting up or shutting down
    pg.AdminShutdownError,  # 57P01: terminated by an administrator or a fast shutdown
    pg.CrashShutdownError,  # 57P02: another backend crashed; every session is reset
    pg.IdleSessionTimeoutError,  # 57P05: the server closed an idle session
    pg.TooManyConnectionsError,  # 53300: no connection slot left
    pg.InterfaceError,  # the connection is closed, the pool is closing, busy connection
    pg.InternalClientError,  # asyncpg's protocol state lost mid-call ("cannot switch to state")
    OSError,  # refused, reset, unreachable; TimeoutError of a connect
)
"""What a database that is away raises: connection-class errors, start-up and shutdown,
no free connection slot, and the client-side state errors asyncpg raises when the server
dies under a call. Retrying later is the right answer to each; none of them says anything
about the request. (asyncpg's argument-encoding ``DataError`` is an ``InterfaceError``
too: values the database cannot take are refused before they reach it.)"""


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
