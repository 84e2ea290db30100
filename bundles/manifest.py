"""A bundle's manifest: what it is and exactly which bytes it carries.

The manifest names the bundle and its version, when it was made and until when it may
be installed, the oldest BotArena that can use it, and for every payload file its path,
size and SHA-256. Signatures cover the manifest's bytes as stored, so the payload is
bound to them through the hashes. Paths are relative POSIX paths that cannot leave the
bundle (no absolute paths, ``..``, backslashes or control characters).
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Annotated, Literal

from packaging.version import InvalidVersion, Version
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

BUNDLE_NAME = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
_BAD_PART = re.compile(r"[\x00-\x1f\\]")


def safe_path(path: str) -> str:
    """``path`` if it is a plain relative path inside the bundle; ValueError otherwise."""
    if not path or path.startswith("/") or _BAD_PART.search(path):
        raise ValueError(f"not a relative path inside the bundle: {path!r}")
    parts = path.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise ValueError(f"path escapes or is not normal: {path!r}")
    return path


def version_text(value: str) -> str:
    try:
        Version(value)
    except InvalidVersion:
        raise ValueError(f"not a version: {value!r}") from None
    return value


SafePath = Annotated[str, StringConstraints(max_length=400), AfterValidator(safe_path)]
VersionText = Annotated[str, StringConstraints(max_length=64), AfterValidator(version_text)]


class FileEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: SafePath
    size: int = Field(ge=0)
    sha256: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: Literal[1] = 1
    name: Annotated[str, StringConstraints(pattern=BUNDLE_NAME)]
    version: VersionText
    created: datetime
    expires: datetime
    min_botarena: VersionText
    files: list[FileEntry] = Field(max_length=100_000)

    def model_post_init(self, _context: object) -> None:
        paths = [f.path for f in self.files]
        if len(set(paths)) != len(paths):
            raise ValueError("a path is listed twice")
        if self.expires <= self.created:
            raise ValueError("the bundle expires before it was created")

    @property
    def total_size(self) -> int:
        return sum(f.size for f in self.files)

    def dump(self) -> bytes:
        """The manifest's bytes, as stored and signed."""
        return (json.dumps(self.model_dump(mode="json"), indent=1, sort_keys=True) + "\n").encode()
