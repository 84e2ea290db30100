"""Making and signing bundles from a spec.

A spec is YAML: the bundle's ``name``, ``version``, ``min_botarena``, ``expires_days``
and ``include``, a list of ``{from: PATH, to: PATH}`` (a file, or a folder taken whole;
``from`` relative to the spec). Conventional destinations: ``wheels/`` (for ``pip install
--no-index --find-links``), ``models/`` (GGUF files, with a ``.Modelfile`` beside one for
Ollama), ``personas/``, ``knowledge/<pack>/`` and ``config/``. Signing adds a detached
signature over the manifest with a key chosen by full fingerprint.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import gnupg
import yaml
from pydantic import BaseModel, ConfigDict, Field

from botarena.bundles.archive import Progress, add_signature, read_contents, write_bundle
from botarena.bundles.manifest import (
    BUNDLE_NAME,
    FileEntry,
    Manifest,
    SafePath,
    VersionText,
    safe_path,
)
from botarena.server.files import sha256_file
from botarena.server.signatures import fingerprint, sign_detached


class Include(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    source: str = Field(alias="from", min_length=1)
    to: SafePath


class Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=BUNDLE_NAME)
    version: VersionText
    min_botarena: VersionText = "0.1.0"
    expires_days: int = Field(90, ge=1, le=3650)
    include: list[Include] = Field(min_length=1)


def collect(spec_path: Path) -> tuple[Spec, dict[str, Path]]:
    """The spec and every payload path with the file it comes from."""
    spec = Spec.model_validate(yaml.safe_load(spec_path.read_text()))
    sources: dict[str, Path] = {}
    for item in spec.include:
        source = (spec_path.parent / item.source).resolve()
        if source.is_file():
            found = {item.to: source}
        elif source.is_dir():
            found = {
                f"{item.to}/{f.relative_to(source).as_posix()}": f
                for f in sorted(source.rglob("*"))
                if f.is_file() and not f.is_symlink() and "__pycache__" not in f.parts
            }
        else:
            raise FileNotFoundError(f"{spec_path}: {item.source} does not exist")
        for path in found:
            safe_path(path)
            if path in sources:
                raise ValueError(f"{spec_path}: {path} is included twice")
        sources.update(found)
    return spec, sources


def build(spec_path: Path, out: Path, progress: Progress | None = None) -> Manifest:
    """Write the bundle a spec describes; its manifest."""
    spec, sources = collect(spec_path)
    created = datetime.now(UTC).replace(microsecond=0)
    manifest = Manifest(
        name=spec.name,
        version=spec.version,
        created=created,
        expires=created + timedelta(days=spec.expires_days),
        min_botarena=spec.min_botarena,
        files=[
            FileEntry(path=path, size=source.stat().st_size, sha256=sha256_file(source, progress))
            for path, source in sorted(sources.items())
        ],
    )
    write_bundle(out, manifest, sources, progress)
    return manifest


def sign(bundle: Path, key: str, gnupg_home: Path) -> str:
    """Add a detached signature by ``key`` (a full fingerprint) over the manifest."""
    fpr = fingerprint(key)
    contents = read_contents(bundle)
    gpg = gnupg.GPG(gnupghome=str(gnupg_home))
    signed = sign_detached(gpg, contents.manifest_bytes, fpr)
    if not signed.data:
        raise ValueError(f"cannot sign with {fpr}: {signed.status or signed.stderr[-300:]}")
    add_signature(bundle, fpr, str(signed))
    return fpr
