"""Backup then restore onto a fresh database and empty folders: the canon, the audit
chain (still verifying), proposals, messages, memories and knowledge, and artifacts come
back entity by entity; a damaged backup or a site that is not empty is refused."""

from __future__ import annotations

import asyncio
import io
import os
import tarfile
from pathlib import Path

import asyncpg
import pytest

from botarena.memory.index import KnowledgeIndex, open_chroma
from botarena.memory.knowledge import load_pack
from botarena.server.backup import backup, restore
from botarena.server.errors import BackupError
from botarena.server.objects import open_objects
from botarena.server.protocol import Role
from botarena.server.settings import Settings
from botarena.server.store import open_store
from tests.harness import create_database

ROOT = Path(__file__).resolve().parent.parent


async def rows(url: str) -> dict[str, list[str]]:
    """Every row of every table, as text, sorted: the entities to compare."""
    conn = await asyncpg.connect(url)
    try:
        tables = [
            r["tablename"]
            for r in await conn.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
            )
        ]
        return {
            t: sorted(r[0] for r in await conn.fetch(f'SELECT t::text FROM "{t}" t'))
            for t in tables
        }
    finally:
        await conn.close()


def chroma_contents(settings: Settings) -> dict[str, tuple[list[str], list[str]]]:
    client = open_chroma(settings)
    found = {}
    for collection in client.list_collections():
        got = collection.get(include=["documents"])
        pairs = sorted(zip(got["ids"], got["documents"], strict=True))
        found[collection.name] = ([p[0] for p in pairs], [p[1] for p in pairs])
    return found


async def populate(settings: Settings) -> None:
    async with open_store(settings) as store:
        mod, _ = await store.principals.issue_token("mod", Role.MODERATOR)
        ada, _ = await store.principals.issue_token("ada", Role.AGENT, arenas=["compiler"])
        for text in ("the parser is fixed", "tests are green"):
            await store.messages.post("compiler", ada, text)
        proposals = store.proposals
        first = await proposals.create(
            ada,
            arena="compiler",
            kind="document",
            path="docs/parser.md",
            base_version=0,
            title="Parser",
            content="The parser keeps trailing commas.\n",
        )
        await proposals.approve(first.id, mod)
        await proposals.create(
            ada,
            arena="compiler",
            kind="document",
            path="docs/lexer.md",
            base_version=0,
            title="Lexer",
            content="Pending work.\n",
        )
        attachment = settings.var_dir / "attachment.bin"
        attachment.write_bytes(os.urandom(200_000))
        await store.artifacts.put(
            open_objects(settings), "attachment", "attachments/1/diagram.bin", attachment
        )
    chunks, _ = load_pack(ROOT / "memory" / "packs" / "demo")
    await asyncio.to_thread(KnowledgeIndex(open_chroma(settings)).index, chunks)


async def populated_site(var_dir: Path, database_url: str) -> Settings:
    settings = Settings(var_dir=var_dir, database_url=database_url)
    await asyncio.to_thread(var_dir.mkdir)
    await populate(settings)
    return settings


async def test_backup_then_restore_onto_an_empty_site(
    tmp_path: Path, database_url: str, pg_admin_url: str
) -> None:
    source = await populated_site(tmp_path / "a", database_url)
    archive = tmp_path / "site.backup.tar"
    manifest = await backup(source, archive)
    assert manifest["objects"] == ["attachments/1/diagram.bin"]
    assert manifest["collections"] and all(n > 0 for n in manifest["collections"].values())

    target = Settings(var_dir=tmp_path / "b", database_url=await create_database(pg_admin_url))
    restored = await restore(target, archive)
    assert restored["collections"] == manifest["collections"]

    before, after = await rows(database_url), await rows(target.database_url or "")
    assert before.keys() == after.keys() and "canon_versions" in after
    for table in before:
        assert before[table] == after[table], table
    async with open_store(target) as store:
        verdict = await store.audit.verify()
        assert verdict.ok and verdict.entries > 5
        canon = await store.canon.get("docs/parser.md")
        assert canon == (1, "The parser keeps trailing commas.\n")
        back = tmp_path / "back.bin"
        await store.artifacts.get(open_objects(target), "attachments/1/diagram.bin", back)
        assert back.read_bytes() == (source.var_dir / "attachment.bin").read_bytes()
    assert chroma_contents(source) == chroma_contents(target)
    hits_before = KnowledgeIndex(open_chroma(source)).search("trailing commas", {"code": 1})
    hits_after = KnowledgeIndex(open_chroma(target)).search("trailing commas", {"code": 1})
    assert [h.chunk_id for h in hits_before] == [h.chunk_id for h in hits_after]

    # the restored site is no longer empty: a second restore is refused
    with pytest.raises(BackupError, match="not empty"):
        await restore(target, archive)


async def test_a_damaged_backup_is_refused_before_anything_changes(
    tmp_path: Path, database_url: str, pg_admin_url: str
) -> None:
    source = await populated_site(tmp_path / "a", database_url)
    archive = tmp_path / "site.backup.tar"
    await backup(source, archive)
    damaged = tmp_path / "damaged.tar"
    with tarfile.open(archive) as good, tarfile.open(damaged, "w") as bad:
        for member in good.getmembers():
            data = good.extractfile(member).read()  # type: ignore[union-attr]
            if member.name == "database.dump":
                data = data[:-10] + b"0123456789"
            bad.addfile(member, io.BytesIO(data))
    target = Settings(var_dir=tmp_path / "b", database_url=await create_database(pg_admin_url))
    with pytest.raises(BackupError, match=r"database\.dump in the backup is damaged"):
        await restore(target, damaged)
    assert await rows(target.database_url or "") == {}
    assert not open_chroma(target).list_collections()


async def test_backup_and_restore_commands(
    tmp_path: Path, database_url: str, pg_admin_url: str
) -> None:
    from tests.test_cli import botarena

    source = await populated_site(tmp_path / "a", database_url)
    archive = tmp_path / "cli.backup.tar"
    made = await asyncio.to_thread(
        botarena,
        source.var_dir,
        "backup",
        "--out",
        str(archive),
        "--to-store",
        database_url=database_url,
    )
    assert made.returncode == 0, made.stderr
    assert "2 objects" not in made.stdout and "1 objects" in made.stdout
    async with open_store(source) as store:
        kept = await store.artifacts.find("backup")
    assert [a["key"] for a in kept] == ["backups/cli.backup.tar"]

    target_url = await create_database(pg_admin_url)
    done = await asyncio.to_thread(
        botarena, tmp_path / "b", "restore", str(archive), database_url=target_url
    )
    assert done.returncode == 0, done.stderr
    assert "restored schema v" in done.stdout
    again = await asyncio.to_thread(
        botarena, tmp_path / "b", "restore", str(archive), database_url=target_url
    )
    assert again.returncode == 1 and "not empty" in again.stderr
