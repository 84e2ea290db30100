"""Migrations, tokens and the store's guarantees, against a real PostgreSQL."""

from __future__ import annotations

import asyncpg
import pytest

from botarena.server.auth import hash_token
from botarena.server.errors import Conflict, MigrationError, UnknownRoom
from botarena.server.protocol import Role
from botarena.server.store import Store, schema


async def test_migrations_record_the_schema_version_and_apply_once(database_url: str) -> None:
    store = await Store.open(database_url)
    newest = schema.available()[-1].version
    assert store.schema_version == newest
    await store.close()
    store = await Store.open(database_url)  # a second start applies nothing again
    rows = await store.pool.fetch("SELECT version, name FROM schema_migrations ORDER BY 1")
    assert [r["version"] for r in rows] == list(range(1, newest + 1))
    await store.close()


async def test_a_database_newer_than_the_code_is_refused(database_url: str) -> None:
    store = await Store.open(database_url)
    await store.pool.execute(
        "INSERT INTO schema_migrations (version, name, checksum) VALUES (999, 'future', 'x')"
    )
    await store.close()
    with pytest.raises(MigrationError, match="schema version 999"):
        await Store.open(database_url)


async def test_an_edited_migration_is_refused(database_url: str) -> None:
    store = await Store.open(database_url)
    await store.pool.execute("UPDATE schema_migrations SET checksum = 'edited' WHERE version = 1")
    await store.close()
    with pytest.raises(MigrationError, match="forward-only"):
        await Store.open(database_url)


async def test_hubs_starting_together_migrate_once(database_url: str) -> None:
    import asyncio

    stores = await asyncio.gather(*(Store.open(database_url) for _ in range(3)))
    counts = await stores[0].pool.fetchval("SELECT count(*) FROM rooms WHERE kind = 'arena'")
    assert counts == 5
    for store in stores:
        await store.close()


async def test_only_a_hash_of_a_token_is_stored(database_url: str) -> None:
    store = await Store.open(database_url)
    principal, token = await store.principals.issue_token("ada", Role.MODERATOR)
    dump = await store.pool.fetchval("SELECT string_agg(t::text, ' ') FROM tokens t")
    assert token not in dump
    assert (
        await store.pool.fetchval(
            "SELECT count(*) FROM tokens WHERE token_hash = $1", hash_token(token)
        )
        == 1
    )
    assert await store.principals.authenticate(token) == (principal, 1)
    assert await store.principals.authenticate(token + "x") == "unknown token"
    await store.close()


async def test_a_principal_keeps_its_role(database_url: str) -> None:
    store = await Store.open(database_url)
    await store.principals.issue_token("ada", Role.AGENT)
    with pytest.raises(Conflict, match="exists with role agent"):
        await store.principals.issue_token("ada", Role.ADMIN)
    with pytest.raises(UnknownRoom, match="not an arena"):
        await store.principals.issue_token("bob", Role.AGENT, arenas=["kitchen"])
    assert await store.principals.get("bob") is None
    await store.close()


async def test_the_database_itself_refuses_bad_rows(database_url: str) -> None:
    store = await Store.open(database_url)
    with pytest.raises(asyncpg.CheckViolationError):
        await store.pool.execute("INSERT INTO principals (name, role) VALUES ('Bad Name', 'agent')")
    with pytest.raises(asyncpg.CheckViolationError):
        await store.pool.execute("INSERT INTO principals (name, role) VALUES ('ok', 'god')")
    await store.close()
