"""A bundle's manifest: what it is and exactly which bytes it carries.

The manifest names the bundle and its version, when it was made and until when it may
be installed (both with a time zone), the oldest BotArena that can use it, and for every
payload file its path, size and SHA-256. Signatures cover the manifest's bytes as stored,
so the payload is bound to them through the hashes. Paths are relative POSIX paths that
cannot leave the bundle (no absolute paths, ``..``, backslashes or control characters),
whose every part fits a file system's name limit, and no file is also another's folder.
Versions are kept in their normal form (``packaging``'s), so `` 1.0`` is ``1.0``.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Annotated, Literal

from packaging.version import InvalidVersion, Version
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from botarena.server.errors import BundleError

BUNDLE_NAME = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
MAX_FILES = 20_000
MAX_PATH = 400
MAX_FILE_SIZE = 1 << 40  # 1 TiB
MAX_PART = 255  # bytes: NAME_MAX of the file systems a site runs on
_BAD_PART = re.compile(r"[\x00-\x1f\x7f\\]")


def _path_problem(path: str) -> str | None:
    """What makes ``path`` unfit to be a payload path (None: nothing)."""
    if not path or path.startswith("/") or _BAD_PART.search(path):
        return f"not a relative path inside the bundle: {path!r}"
    parts = path.split("/")
    if any(part in ("", ".", "..") for part in parts):
        return f"path escapes or is not normal: {path!r}"
    try:
        longest = max(len(part.encode()) for part in parts)
    except UnicodeEncodeError:
        return f"not a UTF-8 path: {path!r}"
    if longest > MAX_PART or len(path) > MAX_PATH:
        return (
            f"path too long for a file system (a part over {MAX_PART} bytes or the whole"
            f" over {MAX_PATH} characters): {path[:80]!r}..."
        )
    return None


def safe_path(path: str) -> str:
    """``path`` if it is a plain relative path inside the bundle; :class:`BundleError`
    ``unsafe_path`` otherwise."""
    problem = _path_problem(path)
    if problem is not None:
        raise BundleError("unsafe_path", problem)
    return path


def _valid_path(path: str) -> str:
    """:func:`safe_path` as a pydantic validator: ValueError, which pydantic turns into
    the model's ValidationError."""
    problem = _path_problem(path)
    if problem is not None:
        raise ValueError(problem)
    return path


def version_text(value: str) -> str:
    """``value`` as a version in normal form; a pydantic validator (ValueError, which
    pydantic turns into the model's ValidationError)."""
    try:
        return str(Version(value))
    except InvalidVersion:
        raise ValueError(f"not a version: {value!r}") from None


SafePath = Annotated[str, AfterValidator(_valid_path)]
VersionText = Annotated[str, StringConstraints(max_length=64), AfterValidator(version_text)]


class FileEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: SafePath
    size: int = Field(ge=0, le=MAX_FILE_SIZE)
    sha256: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: Literal[1] = 1
    name: Annotated[str, StringConstraints(pattern=BUNDLE_NAME)]
    version: VersionText
    created: AwareDatetime
    expires: AwareDatetime
    min_botarena: VersionText
    files: list[FileEntry] = Field(max_length=MAX_FILES)

    @model_validator(mode="after")
    def _consistent(self) -> Manifest:
        paths = {f.path for f in self.files}
        if len(paths) != len(self.files):
            raise ValueError("a path is listed twice")
        folders = {p.rsplit("/", 1)[0] for p in paths if "/" in p}
        for folder in folders:
            parts = folder.split("/")
            for n in range(1, len(parts) + 1):
                if "/".join(parts[:n]) in paths:
                    raise ValueError(f"{'/'.join(parts[:n])} is both a file and a folder")
        if self.expires <= self.created:
            raise ValueError("the bundle expires before it was created")
        return self

    @functools.cached_property
    def sizes(self) -> dict[str, int]:
        """Each payload path's size."""
        return {f.path: f.size for f in self.files}

    @property
    def total_size(self) -> int:
        return sum(f.size for f in self.files)

    def dump(self) -> bytes:
        """The manifest's bytes, as stored and signed."""
        return (json.dumps(self.model_dump(mode="json"), indent=1, sort_keys=True) + "\n").encode()
