"""Daily transcripts and canon exports in the object store, by command and by the hub."""

from __future__ import annotations

import asyncio
import json
import tarfile
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

from botarena.server.archive import archive_canon, archive_day
from botarena.server.objects import open_objects
from botarena.server.protocol import Role
from botarena.server.settings import Settings
from tests.harness import Arena


def yesterday() -> date:
    """Yesterday by the clock now, read when a test runs (a suite may cross midnight)."""
    return (datetime.now(UTC) - timedelta(days=1)).date()


async def yesterdays_talk(arena: Arena) -> date:
    """Three messages dated yesterday at noon and one of today; the day they belong to."""
    ada = await arena.client("ada", arenas=["compiler", "creative"])
    for room, text in [("compiler", "one"), ("compiler", "two"), ("creative", "a tale")]:
        await ada.join(room)
        await ada.send(room, text)
    day = yesterday()
    noon = datetime.combine(day, time(12), tzinfo=UTC)
    await arena.store.pool.execute("UPDATE messages SET created_at = $1", noon)
    await ada.send("compiler", "today's")  # not part of yesterday
    return day


async def test_a_days_transcripts_are_archived_once(arena: Arena, tmp_path: Path) -> None:
    day = await yesterdays_talk(arena)
    objects = open_objects(Settings(var_dir=tmp_path / "var"))
    stored = await archive_day(arena.store, objects, day)
    assert stored == [f"transcripts/{day}/compiler.jsonl", f"transcripts/{day}/creative.jsonl"]
    back = tmp_path / "compiler.jsonl"
    await arena.store.artifacts.get(objects, stored[0], back)
    lines = [json.loads(line) for line in back.read_text().splitlines()]
    assert [(m["author"], m["text"]) for m in lines] == [("ada", "one"), ("ada", "two")]
    assert await archive_day(arena.store, objects, day) == []  # once


async def test_the_canon_is_exported_with_its_manifest(arena: Arena, tmp_path: Path) -> None:
    mod, _ = await arena.store.principals.issue_token("mod", Role.MODERATOR)
    proposals = arena.store.proposals
    for path, text in [
        ("docs/a.md", "alpha\n"),
        ("docs/b.md", "beta\n"),
        ("docs/a.md", "alpha 2\n"),
    ]:
        head = await arena.store.canon.get(path)
        created = await proposals.create(
            mod,
            arena="compiler",
            kind="document",
            path=path,
            base_version=head[0] if head else 0,
            title=path,
            content=text,
        )
        await proposals.approve(created.id, mod)
    objects = open_objects(Settings(var_dir=tmp_path / "var"))
    exported = await archive_canon(arena.store, objects)
    assert exported["documents"] == 2 and exported["key"].startswith("canon/")
    back = tmp_path / "canon.tar"
    await arena.store.artifacts.get(objects, exported["key"], back)
    with tarfile.open(back) as archive:
        manifest = json.load(archive.extractfile("manifest.json"))  # type: ignore[arg-type]
        latest = archive.extractfile("canon/docs/a.md").read()  # type: ignore[union-attr]
    assert {p: d["version"] for p, d in manifest["documents"].items()} == {
        "docs/a.md": 2,
        "docs/b.md": 1,
    }
    assert latest == b"alpha 2\n"


async def test_the_hub_archives_yesterday_by_itself(hub_factory, tmp_path: Path) -> None:
    arena = await hub_factory(archive_every_seconds=0.2)
    day = await yesterdays_talk(arena)

    async def keys() -> list[str]:
        return [a["key"] for a in await arena.store.artifacts.find("transcript")]

    for _ in range(100):
        if len(await keys()) == 2:
            break
        await asyncio.sleep(0.1)
    assert await keys() == [
        f"transcripts/{day}/compiler.jsonl",
        f"transcripts/{day}/creative.jsonl",
    ]


def test_the_archive_command(tmp_path: Path, database_url: str) -> None:
    from tests.test_cli import botarena

    done = botarena(tmp_path / "var", "archive", "--canon", database_url=database_url)
    assert done.returncode == 0, done.stderr
    assert "0 transcript(s)" in done.stdout and "canon exported to canon/" in done.stdout
    bad = botarena(tmp_path / "var", "archive", "--day", "yesterday", database_url=database_url)
    assert bad.returncode == 2 and "not a day" in bad.stderr
