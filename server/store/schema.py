"""Forward-only, versioned schema migrations, applied at start.

Migrations are the numbered SQL files in ``server/store/migrations`` (``0001_hub.sql``...).
Each runs in its own transaction and is recorded in ``schema_migrations`` with its
checksum, under an advisory lock so that several hub processes starting together apply
each one once. A database newer than this code, or an applied migration whose file
has since changed, stops start-up with a message instead of guessing.

:func:`version_at` and :func:`tables_at` look at a database no store was opened on (a
backup's manifest, a restore's check that the site is empty).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources

import asyncpg
import structlog

from botarena.server.errors import MigrationError
from botarena.server.store.database import connected

log = structlog.get_logger(__name__)

_LOCK_KEY = 0x42_07_A4_E4  # pg_advisory_lock key shared by every BotArena process


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def available() -> list[Migration]:
    """Every migration shipped with this code, in version order."""
    found = []
    for entry in resources.files("botarena.server.store").joinpath("migrations").iterdir():
        match = re.fullmatch(r"(\d{4})_([a-z0-9_]+)\.sql", entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text()))
    found.sort(key=lambda m: m.version)
    if [m.version for m in found] != list(range(1, len(found) + 1)):
        raise MigrationError(f"migration versions are not 1..n: {[m.version for m in found]}")
    return found


async def current_version(conn: asyncpg.Connection) -> int:
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not exists:
        return 0
    return await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_migrations")


async def version_at(url: str) -> int:
    """The schema version of the database at ``url`` (0 when it has none)."""
    async with connected(url) as conn:
        return await current_version(conn)


async def tables_at(url: str) -> int:
    """How many tables the database at ``url`` holds in its ``public`` schema (0: an
    empty database)."""
    async with connected(url) as conn:
        return await conn.fetchval("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")


async def migrate(conn: asyncpg.Connection) -> int:
    """Apply the migrations the database lacks; return the schema version reached."""
    migrations = available()
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
    try:
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version    integer PRIMARY KEY,
                   name       text NOT NULL,
                   checksum   text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        applied = {
            r["version"]: r["checksum"]
            for r in await conn.fetch("SELECT version, checksum FROM schema_migrations")
        }
        newest = migrations[-1].version if migrations else 0
        if applied and max(applied) > newest:
            raise MigrationError(
                f"the database is at schema version {max(applied)} but this BotArena knows "
                f"only up to {newest}: run a newer BotArena against it"
            )
        for migration in migrations:
            if migration.version in applied:
                if applied[migration.version] != migration.checksum:
                    raise MigrationError(
                        f"migration {migration.version:04d}_{migration.name} was changed after "
                        "it was applied; migrations are forward-only: add a new one instead"
                    )
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    migration.version,
                    migration.name,
                    migration.checksum,
                )
            log.info("migration.applied", version=migration.version, name=migration.name)
        return await current_version(conn)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
