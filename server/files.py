"""Small file helpers every part of BotArena shares: writing a file whole or not at all,
and the SHA-256 of a file read in chunks (with progress for long reads)."""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

CHUNK = 1024 * 1024


@contextmanager
def atomic_write(path: Path, mode: int = 0o644) -> Iterator[BinaryIO]:
    """A handle on a hidden partial file beside ``path``, renamed over ``path`` only when
    the block ends without an error (removed otherwise): readers see the old file or the
    whole new one, never half of it. Each write has its own partial file
    (``.<name>.<random>.partial``), so writers of the same path never share one."""
    partial = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def write_atomic(path: Path, data: bytes | str, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` whole or not at all (see :func:`atomic_write`)."""
    with atomic_write(path, mode) as handle:
        handle.write(data.encode() if isinstance(data, str) else data)


def copy_atomic(source: Path, target: Path) -> None:
    """Copy ``source`` to ``target`` whole or not at all."""
    with atomic_write(target) as handle, open(source, "rb") as inp:
        shutil.copyfileobj(inp, handle, CHUNK)


def sha256_file(path: Path, progress: Callable[[int], None] | None = None) -> str:
    """The hex SHA-256 of a file; ``progress`` is told each chunk's size as it is read."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            if progress is not None:
                progress(len(chunk))
    return digest.hexdigest()
