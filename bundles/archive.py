"""The bundle file: one tar archive with ``manifest.json``, ``signatures/<FPR>.asc`` and
``payload/...``, written and read without trusting a byte of it.

Reading happens in two passes. The first reads only headers, the manifest and the
signatures, and refuses any member that is not a regular file (links, devices, FIFOs,
sparse files), any name that could leave the target, duplicates, and payload that does
not match the manifest's list or declared sizes. The second streams the payload through
SHA-256, never reading past a member's declared size, and (for an install) writes it into
a staging folder; a compressed archive that expands beyond its declared total is
refused. Errors are :class:`BundleError` with a code for scripts and a plain message.
"""

from __future__ import annotations

import hashlib
import io
import re
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from botarena.bundles.manifest import Manifest, safe_path
from botarena.server.errors import BundleError
from botarena.server.files import atomic_write

MANIFEST = "manifest.json"
SIGNATURES = "signatures/"
PAYLOAD = "payload/"
MAX_MANIFEST = 16 * 1024 * 1024
MAX_SIGNATURE = 64 * 1024
CHUNK = 1024 * 1024
_SIGNATURE_NAME = re.compile(r"^signatures/([0-9A-F]{40})\.asc$")

Progress = Callable[[int], None]


@dataclass
class Contents:
    manifest: Manifest
    manifest_bytes: bytes
    signatures: dict[str, str] = field(default_factory=dict)  # fingerprint -> armored


def _open(path: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(path, "r:*")
    except (tarfile.TarError, OSError) as exc:
        raise BundleError("malformed", f"{path.name} is not a readable bundle: {exc}") from None


def _check_member(member: tarfile.TarInfo) -> None:
    if member.issym() or member.islnk():
        raise BundleError("link", f"{member.name!r} is a link; bundles carry regular files only")
    if not member.isreg() or member.issparse():
        raise BundleError(
            "special_file", f"{member.name!r} is not a regular file (device, FIFO or folder)"
        )
    try:
        safe_path(member.name)
    except ValueError as exc:
        raise BundleError("unsafe_path", str(exc)) from None


def _read_small(archive: tarfile.TarFile, member: tarfile.TarInfo, limit: int) -> bytes:
    if member.size > limit:
        raise BundleError("malformed", f"{member.name} is {member.size} bytes; at most {limit}")
    handle = archive.extractfile(member)
    assert handle is not None
    return handle.read(limit + 1)[:limit]


def read_contents(path: Path) -> Contents:
    """Pass one: headers, the manifest and the signatures, all checked."""
    with _open(path) as archive:
        try:
            members = archive.getmembers()
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise BundleError("malformed", f"the archive is damaged: {exc}") from None
        seen: set[str] = set()
        manifest_bytes: bytes | None = None
        signatures: dict[str, str] = {}
        payload: dict[str, int] = {}
        for member in members:
            _check_member(member)
            if member.name in seen:
                raise BundleError("malformed", f"{member.name} appears twice in the archive")
            seen.add(member.name)
            if member.name == MANIFEST:
                manifest_bytes = _read_small(archive, member, MAX_MANIFEST)
            elif member.name.startswith(SIGNATURES):
                match = _SIGNATURE_NAME.match(member.name)
                if match is None:
                    raise BundleError("malformed", f"{member.name} is not signatures/<FPR>.asc")
                raw = _read_small(archive, member, MAX_SIGNATURE)
                signatures[match[1]] = raw.decode("ascii", errors="replace")
            elif member.name.startswith(PAYLOAD):
                payload[member.name[len(PAYLOAD) :]] = member.size
            else:
                raise BundleError("extra_file", f"{member.name} is not part of a bundle's layout")
    if manifest_bytes is None:
        raise BundleError("malformed", "the bundle has no manifest.json")
    try:
        manifest = Manifest.model_validate_json(manifest_bytes)
    except ValidationError as exc:
        problem = exc.errors()[0]
        where = ".".join(str(p) for p in problem["loc"]) or "manifest"
        raise BundleError("malformed", f"manifest.json: {where}: {problem['msg']}") from None
    declared = {f.path: f.size for f in manifest.files}
    extra = sorted(set(payload) - set(declared))
    if extra:
        raise BundleError("extra_file", f"not in the manifest: {', '.join(extra[:5])}")
    missing = sorted(set(declared) - set(payload))
    if missing:
        raise BundleError("missing_file", f"listed but missing: {', '.join(missing[:5])}")
    for name, size in payload.items():
        if size > declared[name]:
            raise BundleError(
                "expansion",
                f"{name} expands to {size} bytes; the manifest declares {declared[name]}",
            )
        if size != declared[name]:
            raise BundleError(
                "size_mismatch", f"{name} is {size} bytes; the manifest says {declared[name]}"
            )
    return Contents(manifest, manifest_bytes, signatures)


def check_payload(
    path: Path, manifest: Manifest, dest: Path | None = None, progress: Progress | None = None
) -> None:
    """Pass two: every payload file's bytes against its hash; written under ``dest``
    (created, must be empty) when given. Nothing beyond a declared size is ever read."""
    expected = {f.path: f for f in manifest.files}
    budget = manifest.total_size
    with _open(path) as archive:
        for member in archive:
            if not member.name.startswith(PAYLOAD):
                continue
            name = member.name[len(PAYLOAD) :]
            entry = expected[name]  # pass one matched names and sizes
            budget -= entry.size
            if budget < 0:
                raise BundleError("expansion", "the archive expands beyond its declared size")
            digest = hashlib.sha256()
            source = archive.extractfile(member)
            assert source is not None
            target = None
            if dest is not None:
                out = dest / PAYLOAD / name
                out.parent.mkdir(parents=True, exist_ok=True)
                target = open(out, "xb")
            try:
                remaining = entry.size
                while remaining > 0:
                    chunk = source.read(min(CHUNK, remaining))
                    if not chunk:
                        raise BundleError("size_mismatch", f"{name} ends before its size")
                    remaining -= len(chunk)
                    digest.update(chunk)
                    if target is not None:
                        target.write(chunk)
                    if progress is not None:
                        progress(len(chunk))
            finally:
                if target is not None:
                    target.close()
            if digest.hexdigest() != entry.sha256:
                raise BundleError("hash_mismatch", f"{name} does not match its SHA-256")


def write_bundle(
    out: Path,
    manifest: Manifest,
    sources: dict[str, Path],
    progress: Progress | None = None,
) -> None:
    """Write a bundle (manifest first, then the payload) to ``out`` atomically."""
    with (
        atomic_write(out) as handle,
        tarfile.open(fileobj=handle, mode="w", format=tarfile.PAX_FORMAT) as archive,
    ):
        _add_bytes(archive, MANIFEST, manifest.dump())
        for entry in manifest.files:
            info = tarfile.TarInfo(PAYLOAD + entry.path)
            info.size, info.mode, info.mtime = entry.size, 0o644, int(manifest.created.timestamp())
            with open(sources[entry.path], "rb") as source:
                archive.addfile(info, _Counted(source, progress))


def add_signature(path: Path, fingerprint: str, armored: str) -> None:
    """Add ``signatures/<fingerprint>.asc`` to a bundle (appended in place)."""
    name = f"{SIGNATURES}{fingerprint}.asc"
    with _open(path) as archive:
        if name in archive.getnames():
            raise BundleError("malformed", f"already signed by {fingerprint}")
    with tarfile.open(path, "a", format=tarfile.PAX_FORMAT) as archive:
        _add_bytes(archive, name, armored.encode())


def _add_bytes(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), 0o644
    archive.addfile(info, io.BytesIO(data))


class _Counted(io.RawIOBase):
    """A file read through, reporting progress."""

    def __init__(self, handle: io.BufferedReader, progress: Progress | None) -> None:
        self.handle, self.progress = handle, progress

    def read(self, size: int = -1) -> bytes:
        data = self.handle.read(size)
        if self.progress is not None and data:
            self.progress(len(data))
        return data
