"""Migrations, tokens and the store's guarantees, against a real PostgreSQL."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from botarena.server.auth import hash_token
from botarena.server.errors import Conflict, MigrationError, Unauthorized, UnknownRoom
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
    with pytest.raises(Unauthorized, match="unknown token"):
        await store.principals.authenticate(token + "x")
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


async def test_the_statuses_the_database_allows_are_the_enums(database_url: str) -> None:
    """The enums are the one source of the names the store writes: the database's checks
    allow exactly their values (a new status needs a migration as well)."""
    import re

    from botarena.arenas.names import ProposalStatus, TicketStatus

    store = await Store.open(database_url)
    try:
        for table, column, enum in (
            ("proposals", "status", ProposalStatus),
            ("tickets", "status", TicketStatus),
            ("principals", "role", Role),
        ):
            check = await store.pool.fetchval(
                """SELECT pg_get_constraintdef(oid) FROM pg_constraint
                   WHERE conrelid = $1::regclass AND contype = 'c'
                     AND pg_get_constraintdef(oid) LIKE '%' || $2 || '%'""",
                table,
                column,
            )
            assert set(re.findall(r"'([a-z_]+)'::text", check)) == {e.value for e in enum}
    finally:
        await store.close()


async def test_schema_helpers_read_a_database_no_store_was_opened_on(database_url: str) -> None:
    assert await schema.version_at(database_url) == 0
    assert await schema.tables_at(database_url) == 0
    store = await Store.open(database_url)
    await store.close()
    assert await schema.version_at(database_url) == schema.available()[-1].version
    assert await schema.tables_at(database_url) > 0


async def test_the_control_listener_hears_actions_and_tells_when_its_connection_is_lost(
    database_url: str,
) -> None:
    import asyncio

    store = await Store.open(database_url)
    try:
        heard: asyncio.Queue[object] = asyncio.Queue()
        moderator, _ = await store.principals.issue_token("ada", Role.MODERATOR)
        target, _ = await store.principals.issue_token("bob", Role.AGENT)
        async with store.moderation.listen_control(heard.put_nowait) as lost:
            await store.moderation.kick(target, None, "spam", moderator)
            action = await asyncio.wait_for(heard.get(), 5)
            assert action == (await store.moderation.control_actions_since(0))[0]
            assert not lost.done()
            await store.pool.execute(
                """SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                   WHERE query LIKE 'LISTEN%' AND pid <> pg_backend_pid()"""
            )
            await asyncio.wait_for(lost, 5)
    finally:
        await store.close()


async def test_closing_the_store_cuts_a_query_that_never_ends(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from botarena.server.store import facade

    monkeypatch.setattr(facade, "CLOSE_SECONDS", 0.5)
    store = await Store.open(database_url)
    stuck = asyncio.create_task(store.pool.fetchval("SELECT pg_sleep(60)"))
    await asyncio.sleep(0.3)
    await asyncio.wait_for(store.close(), 10)  # not the minute the query would take
    with pytest.raises((asyncpg.InterfaceError, asyncpg.ConnectionDoesNotExistError)):
        await stuck  # cut
