"""Artifacts in the object store: a folder under var/ and a real S3 server (SeaweedFS's
``weed``) through the minio client; upload, list, download, a missing object, and the
server going away mid-transfer."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from botarena.server.errors import (
    Conflict,
    NotFound,
    ObjectNotFound,
    ObjectRefused,
    ObjectUnavailable,
)
from botarena.server.objects import open_objects
from botarena.server.settings import Settings
from tests.harness import Arena
from tests.services import S3_KEYS, S3Server, s3_server


@pytest.fixture
def s3() -> Iterator[S3Server]:
    with s3_server() as server:
        yield server


def settings(tmp_path: Path, server: S3Server | None) -> Settings:
    if server is None:
        return Settings(var_dir=tmp_path / "var")
    return Settings(
        var_dir=tmp_path / "var",
        s3_url=server.url,
        s3_access_key=S3_KEYS[0],
        s3_secret_key=S3_KEYS[1],
        s3_bucket="artifacts",
    )


@pytest.mark.parametrize("where", ["folder", "s3"])
async def test_store_list_fetch_and_a_missing_artifact(
    arena: Arena, tmp_path: Path, where: str, request: pytest.FixtureRequest
) -> None:
    server = request.getfixturevalue("s3") if where == "s3" else None
    objects = await asyncio.to_thread(open_objects, settings(tmp_path, server))
    artifacts = arena.store.artifacts
    source = tmp_path / "transcript.jsonl"
    source.write_bytes(os.urandom(3 * 1024 * 1024 + 17))

    stored = await artifacts.put(
        objects, "transcript", "transcripts/2026-11-22/compiler.jsonl", source
    )
    assert stored["size"] == source.stat().st_size
    assert [a["key"] for a in await artifacts.find("transcript")] == [stored["key"]]
    assert [o.key for o in await asyncio.to_thread(objects.list, "transcripts/")] == [stored["key"]]

    back = tmp_path / "back.jsonl"
    await artifacts.get(objects, stored["key"], back)
    assert back.read_bytes() == source.read_bytes()

    with pytest.raises(NotFound) as missing:
        await artifacts.get(objects, "transcripts/1999-01-01/none.jsonl", tmp_path / "x")
    assert missing.value.code == "not_found"
    with pytest.raises(ObjectNotFound) as absent:
        await asyncio.to_thread(objects.get, "no/such/key", tmp_path / "y")
    assert absent.value.code == "not_found" and not (tmp_path / "y").exists()
    with pytest.raises(Conflict, match="exists"):
        await artifacts.put(objects, "transcript", stored["key"], source)
    with pytest.raises(ObjectRefused, match="not an object key"):
        await artifacts.put(objects, "transcript", "../escape", source)
    assert [a["key"] for a in await artifacts.find()] == [stored["key"]]

    assert (await arena.store.audit.verify()).ok
    actions = [e.action for e in await arena.store.audit.entries()]
    assert actions.count("artifact.stored") == 1


async def test_the_s3_server_going_away_mid_transfer(
    arena: Arena, tmp_path: Path, s3: S3Server
) -> None:
    objects = await asyncio.to_thread(open_objects, settings(tmp_path, s3))
    artifacts = arena.store.artifacts
    source = tmp_path / "backup.tar"
    source.write_bytes(os.urandom(96 * 1024 * 1024))
    data_dir = Path(next(a for a in s3.process.args if a.startswith("-dir=")).split("=", 1)[1])

    def kill_once_a_part_lands() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            written = sum(f.stat().st_size for f in data_dir.rglob("*") if f.is_file())
            if written > 8 * 1024 * 1024:
                s3.stop()
                return
            time.sleep(0.01)

    killer = threading.Thread(target=kill_once_a_part_lands)
    killer.start()
    with pytest.raises(ObjectUnavailable) as failed:
        await artifacts.put(objects, "backup", "backups/site.tar", source)
    killer.join()
    assert failed.value.code == "unavailable"
    assert "did not answer" in failed.value.message and s3.url in failed.value.message
    assert await artifacts.find() == []  # nothing recorded, not even as pending
    assert await arena.store.pool.fetchval("SELECT count(*) FROM artifacts") == 0
