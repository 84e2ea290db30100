"""Artifacts: files kept in the object store, recorded in the hub's database.

An artifact is recorded ``pending`` before its upload and ``complete`` only once the
object store reports every byte (its size checked), with its SHA-256 so a download can
be checked too; an upload that fails takes its record away, so nothing half-stored is
ever listed as an artifact. Storing one is audited. Artifacts are immutable: a key is
stored once.
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

import asyncpg

from botarena.server import audit
from botarena.server.errors import ObjectStoreError
from botarena.server.objects import ObjectStore


def _digest(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(1024 * 1024):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


class Artifacts:
    def __init__(self, pool: asyncpg.Pool, objects: ObjectStore) -> None:
        self.pool = pool
        self.objects = objects

    async def store(self, kind: str, key: str, source: Path, actor: str = "operator") -> dict:
        size, sha256 = await asyncio.to_thread(_digest, source)
        async with self.pool.acquire() as conn:
            inserted = await conn.fetchval(
                """INSERT INTO artifacts (key, kind, size, sha256) VALUES ($1, $2, $3, $4)
                   ON CONFLICT (key) DO NOTHING RETURNING key""",
                key,
                kind,
                size,
                sha256,
            )
        if inserted is None:
            raise ObjectStoreError("refused", f"artifact {key} exists (or is being stored)")
        try:
            info = await asyncio.to_thread(self.objects.put, key, source)
            if info.size != size:
                raise ObjectStoreError("unavailable", f"{key}: {info.size} bytes stored of {size}")
        except BaseException:
            await self.pool.execute("DELETE FROM artifacts WHERE key = $1", key)
            raise
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "UPDATE artifacts SET state = 'complete', completed_at = now() WHERE key = $1",
                key,
            )
            await audit.append(
                conn,
                "artifact.stored",
                actor=actor,
                subject=key,
                detail={"kind": kind, "size": size, "sha256": sha256},
            )
        return {"key": key, "kind": kind, "size": size, "sha256": sha256}

    async def list(self, kind: str | None = None, prefix: str = "") -> list[dict[str, Any]]:
        """Complete artifacts, of one kind and under one key prefix when given."""
        rows = await self.pool.fetch(
            """SELECT key, kind, size, sha256, completed_at FROM artifacts
               WHERE state = 'complete' AND ($1::text IS NULL OR kind = $1)
                 AND starts_with(key, $2) ORDER BY key""",
            kind,
            prefix,
        )
        return [dict(r) for r in rows]

    async def fetch(self, key: str, dest: Path) -> dict[str, Any]:
        """Download a complete artifact to ``dest``, checked against its SHA-256."""
        row = await self.pool.fetchrow(
            "SELECT kind, size, sha256 FROM artifacts WHERE key = $1 AND state = 'complete'", key
        )
        if row is None:
            raise ObjectStoreError("not_found", f"no artifact {key}")
        await asyncio.to_thread(self.objects.get, key, dest)
        size, sha256 = await asyncio.to_thread(_digest, dest)
        if (size, sha256) != (row["size"], row["sha256"]):
            await asyncio.to_thread(dest.unlink, missing_ok=True)
            where = self.objects.where
            raise ObjectStoreError("refused", f"{key} from {where} is not what was stored")
        return {"key": key, **dict(row)}
