"""Verifying a bundle against the site's policy, and installing it all or nothing.

The policy: at least ``threshold`` good signatures by distinct pinned keys that are
neither expired nor revoked (one bad signature refuses the bundle outright), not past
its expiry, usable by this BotArena, and newer than the installed version of the same
name unless a downgrade is explicitly allowed (and then recorded). Installing unpacks
into a staging folder under ``var/bundles`` while checking every byte, moves it into
``var/bundles/store/`` and then switches ``var/bundles/<name>`` (a symbolic link) to it
with one atomic rename; a failure at any point before that leaves the site as it was.
Model files are linked from ``var/models`` through that name, so they switch with it.
Each install is appended to ``var/bundles/history.jsonl`` and, when the hub's store is
reachable, to the audit chain.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

from packaging.version import Version

from botarena.bundles.archive import (
    MANIFEST,
    PAYLOAD,
    SIGNATURES,
    BundleError,
    Contents,
    Progress,
    check_payload,
    read_contents,
)
from botarena.bundles.ollama import install_models
from botarena.bundles.trust import SignatureCheck, TrustStore

MODELS = "models/"


def botarena_version() -> str:
    return package_version("botarena")


@dataclass(frozen=True)
class Policy:
    threshold: int = 1
    allow_downgrade: bool = False
    now: datetime | None = None


def verify(
    path: Path,
    trust: TrustStore,
    policy: Policy,
    installed: Version | None = None,
    progress: Progress | None = None,
    *,
    payload: bool = True,
    contents: Contents | None = None,
) -> tuple[Contents, list[SignatureCheck]]:
    """Check a bundle against the policy (and, with ``payload``, every byte of it);
    ``contents``: its first pass, when the caller has read it already."""
    contents = contents or read_contents(path)
    manifest = contents.manifest
    if not contents.signatures:
        raise BundleError("unsigned", f"{path.name} carries no signature")
    checks = [
        trust.check(contents.manifest_bytes, named, armored)
        for named, armored in sorted(contents.signatures.items())
    ]
    bad = [c for c in checks if c.outcome == "bad_signature"]
    if bad:
        raise BundleError("bad_signature", f"signature {bad[0].fingerprint}: {bad[0].detail}")
    good = {c.fingerprint for c in checks if c.counts}
    if len(good) < policy.threshold:
        refused = [c for c in checks if not c.counts]
        why = "; ".join(f"{c.fingerprint}: {c.detail}" for c in refused)
        code = refused[0].outcome if len(checks) == 1 and policy.threshold == 1 else "threshold"
        raise BundleError(
            code,
            f"{len(good)} good trusted signature(s), {policy.threshold} needed"
            + (f" ({why})" if why else ""),
        )
    now = policy.now or datetime.now(UTC)
    if manifest.expires <= now:
        raise BundleError(
            "expired", f"{manifest.name} {manifest.version} expired on {manifest.expires}"
        )
    if Version(manifest.min_botarena) > Version(botarena_version()):
        raise BundleError(
            "too_new",
            f"needs BotArena {manifest.min_botarena} or later; this is {botarena_version()}",
        )
    if installed is not None and Version(manifest.version) <= installed:
        if not policy.allow_downgrade:
            raise BundleError(
                "rollback",
                f"{manifest.name} {manifest.version} is not newer than the installed {installed}"
                " (a deliberate downgrade needs --allow-downgrade and a reason)",
            )
    if payload:
        check_payload(path, manifest, None, progress)
    return contents, checks


class Site:
    """Where bundles are installed: ``var/bundles`` and ``var/models``."""

    def __init__(self, var_dir: Path) -> None:
        self.root = var_dir / "bundles"
        self.store = self.root / "store"
        self.models = var_dir / "models"
        self.history = self.root / "history.jsonl"

    def installed(self, name: str) -> Version | None:
        manifest = self.root / name / MANIFEST
        if not manifest.exists():
            return None
        return Version(json.loads(manifest.read_text())["version"])

    def listing(self) -> list[dict[str, Any]]:
        if not self.root.exists():
            return []
        found = []
        for link in sorted(self.root.iterdir()):
            if link.is_symlink() and (link / MANIFEST).exists():
                manifest = json.loads((link / MANIFEST).read_text())
                found.append(
                    {
                        "name": manifest["name"],
                        "version": manifest["version"],
                        "expires": manifest["expires"],
                        "files": len(manifest["files"]),
                        "path": str(link.resolve()),
                    }
                )
        return found

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """One install at a time; staging left by an install that died is removed."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            for stale in self.root.glob(".staging-*"):
                shutil.rmtree(stale, ignore_errors=True)
            yield

    def install(
        self,
        path: Path,
        trust: TrustStore,
        policy: Policy,
        progress: Progress | None = None,
        reason: str = "",
        ollama: str | None = None,
        contents: Contents | None = None,
    ) -> dict[str, Any]:
        """Install all or nothing; the record of what was done. With ``ollama`` (its
        address), models that come with a Modelfile are also created in Ollama, after
        every byte is checked and before the switch."""
        with self.locked():
            contents = contents or read_contents(path)
            manifest = contents.manifest
            name = manifest.name
            before = self.installed(name)
            _, checks = verify(path, trust, policy, before, payload=False, contents=contents)
            models = self._model_links(manifest.files)
            staging = self.root / f".staging-{uuid.uuid4().hex}"
            staging.mkdir()
            try:
                check_payload(path, manifest, staging, progress)
                (staging / MANIFEST).write_bytes(contents.manifest_bytes)
                (staging / SIGNATURES).mkdir()
                for fpr, armored in contents.signatures.items():
                    (staging / SIGNATURES / f"{fpr}.asc").write_text(armored)
                made = install_models(ollama, staging / PAYLOAD, manifest.files) if ollama else []
                self.store.mkdir(parents=True, exist_ok=True)
                final = self.store / f"{name}-{manifest.version}-{uuid.uuid4().hex[:8]}"
                os.rename(staging, final)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            for target, inside in models.items():  # dangle until the switch for a new model
                relative = os.path.relpath(self.root / name / PAYLOAD / inside, self.models)
                temporary = self.models / f".{target.name}.{uuid.uuid4().hex}"
                os.symlink(relative, temporary)
                os.replace(temporary, target)
            link = self.root / f".{name}.link-{uuid.uuid4().hex}"
            os.symlink(os.path.relpath(final, self.root), link)
            os.replace(link, self.root / name)  # the one step that switches
            record = {
                "at": datetime.now(UTC).isoformat(),
                "name": name,
                "version": manifest.version,
                "previous": str(before) if before else None,
                "downgrade": before is not None and Version(manifest.version) <= before,
                "reason": reason,
                "signed_by": sorted(c.fingerprint for c in checks if c.counts),
                "files": len(manifest.files),
                "bytes": manifest.total_size,
                "ollama_models": made,
            }
            with open(self.history, "a") as history:
                history.write(json.dumps(record) + "\n")
            return record

    def _model_links(self, files: list[Any]) -> dict[Path, str]:
        """``var/models/<file>`` for each model in the payload, to be linked through
        ``var/bundles/<name>`` (so models follow the switch). A file of that name that is
        not such a link is never replaced."""
        self.models.mkdir(parents=True, exist_ok=True)
        links = {}
        for entry in files:
            if entry.path.startswith(MODELS) and entry.path.count("/") == 1:
                target = self.models / entry.path[len(MODELS) :]
                if target.exists() and not target.is_symlink():
                    raise BundleError("conflict", f"{target} exists and is not a bundle's model")
                links[target] = entry.path
        return links
