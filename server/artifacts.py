"""Temporary: where artifacts were before the store's repositories.

Artifacts are ``store.artifacts`` (:mod:`botarena.server.store.artifacts`), given the
object store on each call that moves bytes. :class:`Artifacts` keeps the old shape (a
pool and an object store) until the hub and the commands use it; delete this module then.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg

from botarena.server.objects import ObjectStore
from botarena.server.store import Store


class Artifacts:
    """The old artifact calls on one object store, answered by ``store.artifacts``."""

    def __init__(self, pool: asyncpg.Pool, objects: ObjectStore) -> None:
        self.records = Store(pool, "").artifacts
        self.objects = objects

    async def store(
        self, kind: str, key: str, source: Path, actor: str = "operator"
    ) -> dict[str, Any]:
        return await self.records.put(self.objects, kind, key, source, actor)

    async def list(self, kind: str | None = None, prefix: str = "") -> list[dict[str, Any]]:
        return await self.records.find(kind, prefix)

    async def fetch(self, key: str, dest: Path) -> dict[str, Any]:
        return await self.records.get(self.objects, key, dest)
