"""The connection pool and its transactions, shared by every repository of the store,
and the one rule for which database errors mean "the database is away".

:class:`Database` is the one holder of the asyncpg pool. Every repository reaches
PostgreSQL through it in the same way: a method runs on a connection and a transaction
of its own, unless it is handed ``conn``, the connection of a caller's transaction, in
which case it is one step of that larger change (a proposal approved, its ticket closed
and both audited commit or fail together).

:data:`UNAVAILABLE` is what a database that is down, restarting, full or unreachable
raises; the hub answers those ``unavailable`` (retry later), never ``internal``.

Besides the pool, :meth:`Database.listen` opens a connection of its own that LISTENs on
a channel (a LISTEN must outlive any transaction, so it never holds a pool slot), and
:func:`connected` opens a short one on a database no store was opened on (the backup's
checks).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
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

LISTEN_FAILED: tuple[type[Exception], ...] = (*UNAVAILABLE, pg.PostgresError)
"""What opening or keeping a listening connection (:meth:`Database.listen`) raises when
the listener should wait and connect again: the database away, or a server-side refusal
(a database not there yet, a password not accepted yet)."""


@asynccontextmanager
async def connected(url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection of its own to ``url``, closed when the block ends."""
    conn = await asyncpg.connect(url)
    try:
        yield conn
    finally:
        await conn.close()


class Database:
    """The pool, and transactions on it that a caller may share with its repositories."""

    def __init__(self, pool: asyncpg.Pool, url: str | None = None) -> None:
        self.pool = pool
        self.url = url  # where listening connections go (the pool's own database)

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

    @asynccontextmanager
    async def listen(
        self, channel: str, on_payload: Callable[[str], None]
    ) -> AsyncIterator[asyncio.Future[None]]:
        """A connection of its own LISTENing on ``channel``, each notification's payload
        handed to ``on_payload``; what the block receives resolves when that connection
        is lost. The connection closes when the block ends. Opening it raises one of
        :data:`LISTEN_FAILED` when the database is away."""
        if self.url is None:
            raise RuntimeError("this database was opened without a URL: it cannot listen")
        conn = await asyncpg.connect(self.url)
        try:
            lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

            def on_lost(_conn: object) -> None:
                if not lost.done():
                    lost.set_result(None)

            def on_notify(_conn: object, _pid: int, _channel: str, payload: str) -> None:
                on_payload(payload)

            conn.add_termination_listener(on_lost)
            await conn.add_listener(channel, on_notify)
            yield lost
        finally:
            if not conn.is_closed():
                await asyncio.shield(conn.close(timeout=2))
