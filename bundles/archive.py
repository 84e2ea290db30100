"""The bundle file: one plain tar archive with ``manifest.json`` first, then
``payload/...`` and ``signatures/<FPR>.asc``, written and read without trusting a byte.

A :class:`BundleFile` is opened once and both passes read that one descriptor. The first
reads only headers, the manifest and the signatures, and refuses any member that is not
a regular file (links, devices, FIFOs, sparse files), any name that could leave the
target, duplicates, and payload that does not match the manifest's list or sizes; it
records where each member lies. The second streams the payload through SHA-256, never
reading past a member's size, and (for an install) writes it into a staging folder; it
refuses any member that is not where the first pass saw it, a manifest or signature whose
bytes differ, and a file whose size, times or inode changed while it was read ("changed").
Memory and time are bounded whatever the archive holds: extended headers, members and
signatures have limits, and a compressed archive is refused (a bundle is compressed for
transport only), so skipping a member never means inflating it. Errors are
:class:`BundleError` with a code for scripts and a plain message, never a traceback.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import re
import stat
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from pydantic import ValidationError

from botarena.bundles.manifest import MAX_FILES, Manifest, safe_path
from botarena.server.errors import BundleError
from botarena.server.files import atomic_write

MANIFEST = "manifest.json"
SIGNATURES = "signatures/"
PAYLOAD = "payload/"
MAX_MANIFEST = 16 * 1024 * 1024
MAX_SIGNATURE = 64 * 1024
MAX_SIGNATURES = 16
MAX_HEADER = 4096  # a pax or GNU long-name header: names are at most 400 characters
MAX_HEADER_RUN = 4  # extended headers in a row before one member (tarfile writes one)
MAX_MEMBERS = MAX_FILES + MAX_SIGNATURES + 1
CHUNK = 1024 * 1024
_SIGNATURE_NAME = re.compile(r"^signatures/([0-9A-F]{40})\.asc$")
_COMPRESSED = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00", b"\x28\xb5\x2f\xfd")
_EXTENDED = (
    tarfile.GNUTYPE_LONGNAME,
    tarfile.GNUTYPE_LONGLINK,
    tarfile.XHDTYPE,
    tarfile.XGLTYPE,
    tarfile.SOLARIS_XHDTYPE,
)

Progress = Callable[[int], None]
Spot = tuple[str, bytes, int, int]  # name, type, size, where its data starts


@dataclass
class Contents:
    manifest: Manifest
    manifest_bytes: bytes
    signatures: dict[str, str] = field(default_factory=dict)  # fingerprint -> armored
    layout: list[Spot] = field(default_factory=list)


class _BoundedInfo(tarfile.TarInfo):
    """A tar header that refuses, before tarfile reads it, an extended header over
    :data:`MAX_HEADER` or more than :data:`MAX_HEADER_RUN` of them in a row (each costs
    a parse, slow on crafted input in some CPython releases), a negative size and a GNU
    sparse member (whose map tarfile would follow)."""

    def _proc_member(self, archive: tarfile.TarFile) -> Any:
        run = getattr(archive, "_extended_run", 0) + 1 if self.type in _EXTENDED else 0
        archive._extended_run = run  # type: ignore[attr-defined]
        if run > MAX_HEADER_RUN:
            raise BundleError("too_large", f"more than {MAX_HEADER_RUN} extended headers in a row")
        if self.type in _EXTENDED and self.size > MAX_HEADER:
            raise BundleError(
                "too_large", f"an extended tar header of {self.size} bytes; at most {MAX_HEADER}"
            )
        if self.size < 0:
            raise BundleError("malformed", f"{self.name!r} has a negative size")
        if self.type == tarfile.GNUTYPE_SPARSE:
            raise BundleError("special_file", f"{self.name!r} is a sparse file")
        return super()._proc_member(archive)  # type: ignore[misc]


class BundleFile:
    """A bundle opened once; :attr:`contents` is the first pass, :meth:`check_payload`
    the second, both on the same descriptor."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:  # not blocking: a FIFO must not hang the command before it is refused
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        except OSError as exc:
            raise BundleError("unreadable", f"cannot read {path}: {exc.strerror}") from None
        found = os.fstat(fd)
        if not stat.S_ISREG(found.st_mode):
            os.close(fd)
            raise BundleError("unreadable", f"{path} is not a regular file")
        os.set_blocking(fd, True)
        self.handle = os.fdopen(fd, "rb")
        self._stat = _identity(found)
        magic = self.handle.read(6)
        if magic.startswith(_COMPRESSED):
            self.close()
            raise BundleError(
                "compressed", f"{path.name} is compressed, not a plain tar: decompress it first"
            )

    def close(self) -> None:
        self.handle.close()

    def __enter__(self) -> BundleFile:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def unchanged(self) -> None:
        """Refuse the bundle if its file changed since it was opened."""
        if _identity(os.fstat(self.handle.fileno())) != self._stat:
            raise BundleError("changed", f"{self.path.name} changed while it was read")

    def _members(self) -> Iterator[tuple[tarfile.TarFile, tarfile.TarInfo]]:
        """Every member from the start of the file, damage and limits turned into refusals."""
        self.handle.seek(0)
        try:
            archive = tarfile.open(fileobj=self.handle, mode="r:", tarinfo=_BoundedInfo)
        except BundleError:
            raise
        except Exception as exc:  # tarfile raises many kinds on damaged input
            message = f"{self.path.name} is not a readable bundle: {exc}"
            raise BundleError("malformed", message) from None
        with archive:
            for count in range(MAX_MEMBERS + 1):
                try:
                    member = archive.next()
                except BundleError:
                    raise
                except Exception as exc:  # as above
                    raise BundleError("malformed", f"the archive is damaged: {exc}") from None
                if member is None:
                    return
                if count == MAX_MEMBERS:
                    raise BundleError("too_large", f"more than {MAX_MEMBERS} members")
                archive.members.clear()  # type: ignore[attr-defined]  # tarfile keeps them all
                yield archive, member

    @functools.cached_property
    def contents(self) -> Contents:
        """Pass one: headers, the manifest and the signatures, all checked."""
        contents: Contents | None = None
        seen: set[str] = set()
        for archive, member in self._members():
            _check_member(member)
            if member.name in seen:
                raise BundleError("malformed", f"{member.name} appears twice in the archive")
            seen.add(member.name)
            if contents is None:
                if member.name != MANIFEST:
                    raise BundleError("malformed", f"{MANIFEST} must come first, not {member.name}")
                raw = _read_small(archive, member, MAX_MANIFEST)
                contents = Contents(_parse_manifest(raw), raw)
            elif member.name.startswith(SIGNATURES):
                match = _SIGNATURE_NAME.match(member.name)
                if match is None:
                    raise BundleError("malformed", f"{member.name} is not signatures/<FPR>.asc")
                if len(contents.signatures) == MAX_SIGNATURES:
                    raise BundleError("too_large", f"more than {MAX_SIGNATURES} signatures")
                raw = _read_small(archive, member, MAX_SIGNATURE)
                contents.signatures[match[1]] = _armored(raw)
            elif member.name.startswith(PAYLOAD):
                _check_declared(member, contents.manifest)
            else:
                raise BundleError("extra_file", f"{member.name} is not part of a bundle's layout")
            contents.layout.append((member.name, member.type, member.size, member.offset_data))
        if contents is None:
            raise BundleError("malformed", f"the bundle has no {MANIFEST}")
        found = {name[len(PAYLOAD) :] for name in seen}
        missing = sorted(set(contents.manifest.sizes) - found)
        if missing:
            raise BundleError("missing_file", f"listed but missing: {', '.join(missing[:5])}")
        self.unchanged()
        return contents

    def check_payload(self, dest: Path | None = None, progress: Progress | None = None) -> None:
        """Pass two: every payload file's bytes against its hash; written under ``dest``
        (created, must be empty) when given. Nothing beyond a declared size is ever read."""
        contents = self.contents
        expected = {f.path: f for f in contents.manifest.files}
        layout = iter(contents.layout)
        for archive, member in self._members():
            if (member.name, member.type, member.size, member.offset_data) != next(layout, None):
                raise BundleError("changed", f"{self.path.name} changed while it was read")
            if member.name == MANIFEST:
                same = _read_small(archive, member, member.size) == contents.manifest_bytes
            elif member.name.startswith(SIGNATURES):
                fpr = member.name[len(SIGNATURES) : -len(".asc")]
                raw = _read_small(archive, member, member.size)
                same = _armored(raw) == contents.signatures.get(fpr)
            else:
                _copy_checked(
                    archive, member, expected[member.name[len(PAYLOAD) :]], dest, progress
                )
                continue
            if not same:
                raise BundleError("changed", f"{member.name} changed while it was read")
        if next(layout, None) is not None:
            raise BundleError("changed", f"{self.path.name} changed while it was read")
        self.unchanged()


def read_contents(path: Path) -> Contents:
    """The first pass of the bundle at ``path``."""
    with BundleFile(path) as bundle:
        return bundle.contents


def _armored(raw: bytes) -> str:
    """A signature's text (ASCII armour; anything else cannot be a good signature)."""
    return raw.decode("ascii", errors="replace")


def _identity(stat: os.stat_result) -> tuple[int, ...]:
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)


def _check_member(member: tarfile.TarInfo) -> None:
    if member.issym() or member.islnk():
        raise BundleError("link", f"{member.name!r} is a link; bundles carry regular files only")
    if not member.isreg() or member.issparse():
        raise BundleError(
            "special_file", f"{member.name!r} is not a regular file (device, FIFO or folder)"
        )
    safe_path(member.name)  # BundleError unsafe_path


def _check_declared(member: tarfile.TarInfo, manifest: Manifest) -> None:
    name = member.name[len(PAYLOAD) :]
    declared = manifest.sizes.get(name)
    if declared is None:
        raise BundleError("extra_file", f"not in the manifest: {name}")
    if member.size != declared:
        raise BundleError(
            "size_mismatch", f"{name} is {member.size} bytes; the manifest says {declared}"
        )


def _parse_manifest(raw: bytes) -> Manifest:
    try:
        return Manifest.model_validate_json(raw)
    except ValidationError as exc:
        problem = exc.errors()[0]
        where = ".".join(str(p) for p in problem["loc"]) or "manifest"
        raise BundleError("malformed", f"{MANIFEST}: {where}: {problem['msg']}") from None


def _read_small(archive: tarfile.TarFile, member: tarfile.TarInfo, limit: int) -> bytes:
    if member.size > limit:
        raise BundleError("too_large", f"{member.name} is {member.size} bytes; at most {limit}")
    data = _read(archive.extractfile(member), member.size)
    if len(data) != member.size:
        raise BundleError("malformed", f"{member.name} ends before its size")
    return data


def _read(handle: IO[bytes] | None, size: int) -> bytes:
    """Up to ``size`` bytes of a member; a damaged archive is a refusal."""
    assert handle is not None
    try:
        return handle.read(size)
    except (tarfile.TarError, OSError, ValueError) as exc:
        raise BundleError("malformed", f"the archive is damaged: {exc}") from None


def _copy_checked(
    archive: tarfile.TarFile,
    member: tarfile.TarInfo,
    entry: Any,
    dest: Path | None,
    progress: Progress | None,
) -> None:
    """Hash one payload member (writing it under ``dest`` when given)."""
    digest = hashlib.sha256()
    source = archive.extractfile(member)
    target = None
    if dest is not None:
        out = dest / PAYLOAD / entry.path
        out.parent.mkdir(parents=True, exist_ok=True)
        target = open(out, "xb")
    try:
        remaining = entry.size
        while remaining > 0:
            chunk = _read(source, min(CHUNK, remaining))
            if not chunk:
                raise BundleError("size_mismatch", f"{entry.path} ends before its size")
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
        raise BundleError("hash_mismatch", f"{entry.path} does not match its SHA-256")


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
    if fingerprint in read_contents(path).signatures:
        raise BundleError("malformed", f"already signed by {fingerprint}")
    name = f"{SIGNATURES}{fingerprint}.asc"
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
