"""Artifacts: files kept in the object store, recorded in the hub's database.

An artifact is recorded ``pending`` before its upload and ``complete`` only once the
object store reports every byte (its size checked), with its SHA-256 so a download can
be checked too; an upload that fails takes its record away, so nothing half-stored is
ever listed as an artifact. Storing one is audited. Artifacts are immutable: a key is
stored once, and storing it again is a :class:`~botarena.server.errors.Conflict`. The
object store holding the bytes is given to each call that moves them.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from botarena.server.errors import Conflict, NotFound, ObjectRefused, ObjectUnavailable
from botarena.server.files import sha256_file
from botarena.server.objects import ObjectStore
from botarena.server.store.audit import AuditLog
from botarena.server.store.database import Database


def _digest(path: Path) -> tuple[int, str]:
    """A file's size and SHA-256."""
    return path.stat().st_size, sha256_file(path)


class ArtifactRepository:
    """The records of the artifacts in an object store."""

    def __init__(self, db: Database, audit: AuditLog) -> None:
        self.db = db
        self.audit = audit

    async def put(
        self, objects: ObjectStore, kind: str, key: str, source: Path, actor: str = "operator"
    ) -> dict[str, Any]:
        """Store the file ``source`` in ``objects`` as the artifact ``key``; its record."""
        size, sha256 = await asyncio.to_thread(_digest, source)
        inserted = await self.db.pool.fetchval(
            """INSERT INTO artifacts (key, kind, size, sha256) VALUES ($1, $2, $3, $4)
               ON CONFLICT (key) DO NOTHING RETURNING key""",
            key,
            kind,
            size,
            sha256,
        )
        if inserted is None:
            raise Conflict(f"artifact {key} exists (or is being stored)")
        try:
            info = await asyncio.to_thread(objects.put, key, source)
            if info.size != size:
                raise ObjectUnavailable(f"{key}: {info.size} bytes stored of {size}")
        except BaseException:
            await self.db.pool.execute("DELETE FROM artifacts WHERE key = $1", key)
            raise
        async with self.db.transaction() as conn:
            await conn.execute(
                "UPDATE artifacts SET state = 'complete', completed_at = now() WHERE key = $1",
                key,
            )
            await self.audit.append(
                "artifact.stored",
                actor=actor,
                subject=key,
                detail={"kind": kind, "size": size, "sha256": sha256},
                conn=conn,
            )
        return {"key": key, "kind": kind, "size": size, "sha256": sha256}

    async def find(self, kind: str | None = None, prefix: str = "") -> list[dict[str, Any]]:
        """Complete artifacts, of one kind and under one key prefix when given."""
        rows = await self.db.pool.fetch(
            """SELECT key, kind, size, sha256, completed_at FROM artifacts
               WHERE state = 'complete' AND ($1::text IS NULL OR kind = $1)
                 AND starts_with(key, $2) ORDER BY key""",
            kind,
            prefix,
        )
        return [dict(r) for r in rows]

    async def get(self, objects: ObjectStore, key: str, dest: Path) -> dict[str, Any]:
        """Download a complete artifact from ``objects`` to ``dest``, checked against its
        SHA-256; its record."""
        row = await self.db.pool.fetchrow(
            "SELECT kind, size, sha256 FROM artifacts WHERE key = $1 AND state = 'complete'", key
        )
        if row is None:
            raise NotFound(f"no artifact {key}")
        await asyncio.to_thread(objects.get, key, dest)
        size, sha256 = await asyncio.to_thread(_digest, dest)
        if (size, sha256) != (row["size"], row["sha256"]):
            await asyncio.to_thread(dest.unlink, missing_ok=True)
            raise ObjectRefused(f"{key} from {objects.where} is not what was stored")
        return {"key": key, **dict(row)}
