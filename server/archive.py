"""Archiving to the object store: each room's transcript of a day, and canon exports.

A day's transcript of a room is one JSON line per message (id, time, author, role,
reply, text), stored as the artifact ``transcripts/<day>/<room>.jsonl``; a day is
archived once (a second run finds it there and skips it). A canon export is a tar
archive of every document's newest version with a manifest of versions and SHA-256s,
stored as ``canon/<time>.tar``. The hub archives yesterday's transcripts by itself each
day; ``botarena archive`` does it on demand.
"""

from __future__ import annotations

import asyncio
import io
import json
import tarfile
import tempfile
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from botarena.server.artifacts import Artifacts


def _write(path: Path, lines: list[str]) -> None:
    path.write_text("".join(lines))


async def archive_transcripts(pool: asyncpg.Pool, artifacts: Artifacts, day: date) -> list[str]:
    """Store each room's messages of ``day`` (UTC); the keys stored now."""
    start = datetime.combine(day, time(), tzinfo=UTC)
    end = start + timedelta(days=1)
    rooms = await pool.fetch(
        "SELECT DISTINCT room FROM messages WHERE created_at >= $1 AND created_at < $2", start, end
    )
    existing = {
        a["key"] for a in await artifacts.list("transcript", f"transcripts/{day.isoformat()}/")
    }
    stored = []
    with tempfile.TemporaryDirectory(prefix="botarena-archive-") as work:
        for row in sorted(rooms, key=lambda r: r["room"]):
            key = f"transcripts/{day.isoformat()}/{row['room'].replace(':', '_')}.jsonl"
            if key in existing:
                continue
            messages = await pool.fetch(
                """SELECT m.id, m.created_at, p.name AS author, p.role, m.reply_to, m.text
                   FROM messages m JOIN principals p ON p.id = m.author_id
                   WHERE m.room = $1 AND m.created_at >= $2 AND m.created_at < $3
                   ORDER BY m.id""",
                row["room"],
                start,
                end,
            )
            lines = [
                json.dumps({**dict(m), "created_at": m["created_at"].isoformat()}) + "\n"
                for m in messages
            ]
            path = Path(work) / f"{len(stored)}.jsonl"
            await asyncio.to_thread(_write, path, lines)
            await artifacts.store("transcript", key, path, actor="archiver")
            stored.append(key)
    return stored


def _canon_tar(path: Path, documents: list[asyncpg.Record], manifest: dict[str, Any]) -> None:
    with tarfile.open(path, "w") as archive:
        for name, data in [
            ("manifest.json", json.dumps(manifest, indent=1, sort_keys=True).encode()),
            *((f"canon/{d['path']}", d["content"].encode()) for d in documents),
        ]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


async def export_canon(pool: asyncpg.Pool, artifacts: Artifacts) -> dict[str, Any]:
    """Store the canon's newest versions as one tar artifact; its record."""
    documents = await pool.fetch(
        """SELECT DISTINCT ON (path) path, version, sha256, content FROM canon_versions
           ORDER BY path, version DESC"""
    )
    now = datetime.now(UTC)
    manifest = {
        "exported": now.isoformat(),
        "documents": {
            d["path"]: {"version": d["version"], "sha256": d["sha256"]} for d in documents
        },
    }
    with tempfile.TemporaryDirectory(prefix="botarena-canon-") as work:
        path = Path(work) / "canon.tar"
        await asyncio.to_thread(_canon_tar, path, list(documents), manifest)
        key = f"canon/{now:%Y-%m-%dT%H%M%S}Z.tar"
        return {
            **await artifacts.store("canon", key, path, actor="archiver"),
            "documents": len(documents),
        }
