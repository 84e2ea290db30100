"""Making and signing bundles from a spec.

A spec is YAML: the bundle's ``name``, ``version``, ``min_botarena``, ``expires_days``
and ``include``, a list of ``{from: PATH, to: PATH}`` (a file, or a folder taken whole;
``from`` relative to the spec). Conventional destinations: ``wheels/`` (for ``pip install
--no-index --find-links``), ``models/`` (GGUF files, with a ``.Modelfile`` beside one for
Ollama), ``personas/``, ``knowledge/<pack>/`` and ``config/``. Signing adds a detached
signature over the manifest with a key chosen by full fingerprint. A spec that cannot be
built is a :class:`BundleError` ``spec``, a signature that cannot be made one ``sign``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import gnupg
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from botarena.bundles.archive import Progress, add_signature, read_contents, write_bundle
from botarena.bundles.manifest import (
    BUNDLE_NAME,
    FileEntry,
    Manifest,
    SafePath,
    VersionText,
    safe_path,
)
from botarena.bundles.trust import full_fingerprint
from botarena.server.errors import BundleError
from botarena.server.files import sha256_file
from botarena.server.signatures import sign_detached


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
    """The spec and every payload path with the file it comes from; :class:`BundleError`
    ``spec`` when the spec cannot be built (OSError when a file cannot be read)."""
    try:
        spec = Spec.model_validate(yaml.safe_load(spec_path.read_text()))
    except yaml.YAMLError as exc:
        raise BundleError("spec", f"{spec_path} is not YAML: {exc}") from None
    except ValidationError as exc:
        raise BundleError("spec", str(exc)) from None
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
            raise BundleError("spec", f"{spec_path}: {item.source} does not exist")
        for path in found:
            try:
                safe_path(path)
            except BundleError as exc:
                raise BundleError("spec", exc.message) from None
            if path in sources:
                raise BundleError("spec", f"{spec_path}: {path} is included twice")
        sources.update(found)
    return spec, sources


def build(spec_path: Path, out: Path, progress: Progress | None = None) -> Manifest:
    """Write the bundle a spec describes; its manifest."""
    spec, sources = collect(spec_path)
    created = datetime.now(UTC).replace(microsecond=0)
    try:
        manifest = Manifest(
            name=spec.name,
            version=spec.version,
            created=created,
            expires=created + timedelta(days=spec.expires_days),
            min_botarena=spec.min_botarena,
            files=[
                FileEntry(
                    path=path, size=source.stat().st_size, sha256=sha256_file(source, progress)
                )
                for path, source in sorted(sources.items())
            ],
        )
    except ValidationError as exc:  # too many or too large files, a file also a folder
        raise BundleError("spec", str(exc)) from None
    write_bundle(out, manifest, sources, progress)
    return manifest


def sign(bundle: Path, key: str, gnupg_home: Path) -> str:
    """Add a detached signature by ``key`` (a full fingerprint) over the manifest."""
    fpr = full_fingerprint(key, "sign")
    contents = read_contents(bundle)
    gpg = gnupg.GPG(gnupghome=str(gnupg_home))
    signed = sign_detached(gpg, contents.manifest_bytes, fpr)
    if not signed.data:
        raise BundleError(
            "sign", f"cannot sign with {fpr}: {signed.status or signed.stderr[-300:]}"
        )
    add_signature(bundle, fpr, str(signed))
    return fpr
