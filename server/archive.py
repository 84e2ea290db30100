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

from botarena.server.errors import Conflict
from botarena.server.objects import ObjectStore
from botarena.server.store import Store


def _write(path: Path, lines: list[str]) -> None:
    path.write_text("".join(lines))


async def archive_day(store: Store, objects: ObjectStore, day: date) -> list[str]:
    """Store each room's messages of ``day`` (UTC) in ``objects``; the keys stored now."""
    start = datetime.combine(day, time(), tzinfo=UTC)
    end = start + timedelta(days=1)
    folder = f"transcripts/{day.isoformat()}/"
    existing = {a["key"] for a in await store.artifacts.find("transcript", folder)}
    stored: list[str] = []
    with tempfile.TemporaryDirectory(prefix="botarena-archive-") as work:
        for room in await store.messages.rooms_between(start, end):
            key = f"{folder}{room.replace(':', '_')}.jsonl"
            if key in existing:
                continue
            lines = [
                json.dumps({**m, "created_at": m["created_at"].isoformat()}) + "\n"
                for m in await store.messages.transcript(room, start, end)
            ]
            path = Path(work) / f"{len(stored)}.jsonl"
            await asyncio.to_thread(_write, path, lines)
            try:
                await store.artifacts.put(objects, "transcript", key, path, actor="archiver")
            except Conflict:  # another hub stored this room's day meanwhile
                continue
            stored.append(key)
    return stored


def _canon_tar(path: Path, documents: list[dict[str, Any]], manifest: dict[str, Any]) -> None:
    with tarfile.open(path, "w") as archive:
        for name, data in [
            ("manifest.json", json.dumps(manifest, indent=1, sort_keys=True).encode()),
            *((f"canon/{d['path']}", d["content"].encode()) for d in documents),
        ]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


async def archive_canon(store: Store, objects: ObjectStore) -> dict[str, Any]:
    """Store the canon's newest versions in ``objects`` as one tar artifact; its record."""
    documents = await store.canon.newest()
    now = datetime.now(UTC)
    manifest = {
        "exported": now.isoformat(),
        "documents": {
            d["path"]: {"version": d["version"], "sha256": d["sha256"]} for d in documents
        },
    }
    with tempfile.TemporaryDirectory(prefix="botarena-canon-") as work:
        path = Path(work) / "canon.tar"
        await asyncio.to_thread(_canon_tar, path, documents, manifest)
        key = f"canon/{now:%Y-%m-%dT%H%M%S}Z.tar"
        return {
            **await store.artifacts.put(objects, "canon", key, path, actor="archiver"),
            "documents": len(documents),
        }
