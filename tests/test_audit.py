"""The audit chain: every state change is appended, the database refuses to change an
entry, and verification names the exact entry that was tampered with."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import asyncpg
import pytest

from botarena.server.audit import Verdict
from botarena.server.protocol import Role
from botarena.server.store import Store
from tests.harness import Arena
from tests.test_cli import botarena, run_ok


async def chain(store: Store) -> Verdict:
    return await store.audit.verify()


async def test_state_changes_are_appended_and_the_chain_verifies(arena: Arena) -> None:
    mod = await arena.client("mod", "moderator")
    await arena.token("target")
    await mod.call("mod.mute", {"principal": "target", "seconds": 60, "reason": "spam"})
    await mod.call("mod.pause", {"room": "creative", "reason": "drill"})
    await mod.call("group.create", {"name": "ops", "members": ["target"]})
    await arena.store.principals.revoke_tokens(name="target")
    log = list(reversed(await arena.store.audit.entries(100)))
    assert [(e.action, e.actor, e.subject) for e in log] == [
        ("token.issued", "operator", "mod"),
        ("token.issued", "operator", "target"),
        ("moderation.mute", "mod", "target"),
        ("moderation.pause", "mod", None),
        ("room.created", "mod", "group:ops"),
        ("moderation.revoke", None, "target"),
    ]
    assert json.loads(log[2].detail)["reason"] == "spam"
    assert [e.seq for e in log] == list(range(1, 7))
    assert log[1].prev_hash == log[0].hash
    verdict = await chain(arena.store)
    assert verdict.ok and verdict.entries == 6 and verdict.head == log[-1].hash


async def test_the_database_refuses_to_change_the_log(database_url: str) -> None:
    store = await Store.open(database_url)
    await store.principals.issue_token("ada", Role.AGENT)
    for sql in (
        "UPDATE audit_log SET actor = 'mallory'",
        "DELETE FROM audit_log",
        "TRUNCATE audit_log",
    ):
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await store.pool.execute(sql)
    assert (await chain(store)).ok
    await store.close()


async def test_concurrent_changes_keep_one_unbroken_chain(database_url: str) -> None:
    stores = [await Store.open(database_url) for _ in range(3)]  # three hubs, say
    await asyncio.gather(
        *(stores[i % 3].principals.issue_token(f"agent{i}", Role.AGENT) for i in range(30))
    )
    verdict = await chain(stores[0])
    assert verdict.ok and verdict.entries == 30
    for store in stores:
        await store.close()


async def _tamper(store: Store, sql: str) -> None:
    """Change the log as a superuser who switches the guard off."""
    async with store.pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL session_replication_role = replica")  # no triggers
        await conn.execute(sql)


@pytest.mark.parametrize(
    ("sql", "bad_seq", "words"),
    [
        ('UPDATE audit_log SET detail = \'{"role":"admin"}\' WHERE seq = 3', 3, "altered"),
        ("UPDATE audit_log SET actor = 'someone' WHERE seq = 2", 2, "altered"),
        ("DELETE FROM audit_log WHERE seq = 2", 2, "missing"),
        ("UPDATE audit_log SET prev_hash = repeat('1', 64) WHERE seq = 4", 4, "re-linked"),
    ],
)
async def test_tampering_is_reported_at_the_exact_entry(
    database_url: str, sql: str, bad_seq: int, words: str
) -> None:
    store = await Store.open(database_url)
    for name in ("a1", "a2", "a3", "a4", "a5"):
        await store.principals.issue_token(name, Role.AGENT)
    await _tamper(store, sql)
    verdict = await chain(store)
    assert not verdict.ok and verdict.bad_seq == bad_seq and words in verdict.problem
    assert verdict.entries == bad_seq - 1
    await store.close()


def test_audit_verify_command_reports_the_entry(tmp_path: Path) -> None:
    var = tmp_path / "var"
    run_ok(var, "token", "create", "--name", "alice", "--role", "moderator")
    run_ok(var, "token", "create", "--name", "bob", "--role", "agent")
    intact = botarena(var, "audit", "verify")
    assert intact.returncode == 0 and "intact: 2 entries" in intact.stdout
    shown = botarena(var, "audit", "log")
    assert "token.issued" in shown.stdout and "alice" in shown.stdout and "bat_" not in shown.stdout

    async def tamper() -> None:
        from botarena.server.settings import Settings
        from botarena.server.store import open_store

        async with open_store(Settings(var_dir=var)) as store:
            await _tamper(store, "UPDATE audit_log SET subject = 'eve' WHERE seq = 2")

    asyncio.run(tamper())
    broken = botarena(var, "audit", "verify")
    assert broken.returncode == 1 and "entry 2 (token.issued" in broken.stderr
