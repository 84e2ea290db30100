"""Verifying a bundle against the site's policy, and installing it all or nothing.

The policy: at least ``threshold`` good signatures by distinct pinned keys that are
neither expired nor revoked (one bad signature refuses the bundle outright), made no
later than now, created no later than now and not past its expiry (the clock may be
behind the signer's by :data:`CLOCK_TOLERANCE`), usable by this BotArena, and newer than
the installed version of the same name unless a downgrade is explicitly allowed (and then
recorded). :func:`verify` refuses everything :func:`install` would, before anything is
written. Installing unpacks into a staging folder under ``var/bundles`` while checking
every byte, and then switches to it through the journal (:mod:`botarena.bundles.journal`).
A model file is linked into ``var/models`` for the bundle that ships it; another bundle
shipping a model of the same file name is refused (``conflict``), never allowed to take
the link over.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib.metadata import version as package_version
from typing import Any

from packaging.version import Version

from botarena.bundles.archive import (
    MANIFEST,
    PAYLOAD,
    SIGNATURES,
    BundleError,
    BundleFile,
    Contents,
    Progress,
)
from botarena.bundles.journal import Plan, Step, recover, switch
from botarena.bundles.manifest import FileEntry
from botarena.bundles.ollama import install_models
from botarena.bundles.site import MODELS, Site
from botarena.bundles.trust import SignatureCheck, TrustStore

CLOCK_TOLERANCE = timedelta(hours=1)


def botarena_version() -> str:
    return package_version("botarena")


@dataclass(frozen=True)
class Policy:
    threshold: int = 1
    allow_downgrade: bool = False
    now: datetime | None = None
    clock_tolerance: timedelta = CLOCK_TOLERANCE


def verify(
    bundle: BundleFile,
    trust: TrustStore,
    policy: Policy,
    site: Site | None = None,
    progress: Progress | None = None,
    *,
    payload: bool = True,
) -> tuple[Contents, list[SignatureCheck]]:
    """Check a bundle against the policy, the ``site`` it is meant for (its installed
    version and models) and, with ``payload``, every byte of it."""
    contents = bundle.contents
    manifest = contents.manifest
    if not contents.signatures:
        raise BundleError("unsigned", f"{bundle.path.name} carries no signature")
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
    _not_ahead(now, policy, "was created", manifest.created)
    for check in checks:
        if check.made is not None:
            _not_ahead(now, policy, f"was signed by {check.fingerprint}", check.made)
    if manifest.expires <= now:
        raise BundleError(
            "expired", f"{manifest.name} {manifest.version} expired on {manifest.expires}"
        )
    if Version(manifest.min_botarena) > Version(botarena_version()):
        raise BundleError(
            "too_new",
            f"needs BotArena {manifest.min_botarena} or later; this is {botarena_version()}",
        )
    installed = site.installed(manifest.name) if site is not None else None
    if installed is not None and Version(manifest.version) <= installed:
        if not policy.allow_downgrade:
            raise BundleError(
                "rollback",
                f"{manifest.name} {manifest.version} is not newer than the installed {installed}"
                " (a deliberate downgrade needs --allow-downgrade and a reason)",
            )
    if site is not None:
        _model_links(site, manifest.name, manifest.files)
    if payload:
        bundle.check_payload(None, progress)
    return contents, checks


def _not_ahead(now: datetime, policy: Policy, what: str, when: datetime) -> None:
    if when > now + policy.clock_tolerance:
        raise BundleError(
            "future",
            f"the bundle {what} at {when.isoformat()}, ahead of this machine's clock"
            f" ({now.isoformat()}) by more than {policy.clock_tolerance}",
        )


def install(
    site: Site,
    bundle: BundleFile,
    trust: TrustStore,
    policy: Policy,
    progress: Progress | None = None,
    reason: str = "",
    ollama: str | None = None,
    on_step: Step | None = None,
) -> dict[str, Any]:
    """Install all or nothing; the history record of what was done. With ``ollama`` (its
    address), models that come with a Modelfile are also created in Ollama, after every
    byte is checked and before the switch. ``on_step`` is told each step as it begins
    (``stage``, then the journal's)."""
    if not site.root.exists():  # a site with no bundles yet stays without even a lock file
        verify(bundle, trust, policy, site, payload=False)
    with site.locked():
        recover(site)
        manifest = bundle.contents.manifest
        before = site.installed(manifest.name)
        _, checks = verify(bundle, trust, policy, site, payload=False)
        added = _model_links(site, manifest.name, manifest.files)
        install_id = uuid.uuid4().hex
        staging = site.root / f".staging-{install_id}"
        staging.mkdir()
        if on_step is not None:
            on_step("stage")
        try:
            bundle.check_payload(staging, progress)
            (staging / MANIFEST).write_bytes(bundle.contents.manifest_bytes)
            (staging / SIGNATURES).mkdir()
            for fpr, armored in bundle.contents.signatures.items():
                (staging / SIGNATURES / f"{fpr}.asc").write_text(armored)
            made = install_models(ollama, staging / PAYLOAD, manifest.files) if ollama else []
        except BaseException:
            site.sweep()
            raise
        record = {
            "id": install_id,
            "at": datetime.now(UTC).isoformat(),
            "name": manifest.name,
            "version": manifest.version,
            "previous": str(before) if before else None,
            "downgrade": before is not None and Version(manifest.version) <= before,
            "reason": reason,
            "signed_by": sorted(c.fingerprint for c in checks if c.counts),
            "files": len(manifest.files),
            "bytes": manifest.total_size,
            "ollama_models": made,
        }
        plan = Plan(
            id=install_id,
            name=manifest.name,
            staging=staging.name,
            folder=f"{manifest.name}-{manifest.version}-{install_id[:8]}",
            added_models=added,
            record=record,
        )
        try:
            switch(site, plan, on_step)
        except BaseException:
            recover(site)  # forward if the switch was taken, back otherwise
            raise
        return record


def _model_links(site: Site, name: str, files: list[FileEntry]) -> list[str]:
    """The ``var/models`` entries bundle ``name`` would add for the models it ships; a
    ``conflict`` if one is a file of the site's own or another bundle's model."""
    added = []
    for entry in files:
        file = entry.path[len(MODELS) :]
        if not entry.path.startswith(MODELS) or "/" in file or file.startswith("."):
            continue
        target = site.models / file
        owner = site.model_owner(target)
        if owner == name:
            continue
        if owner is not None and (site.active / owner).exists():
            raise BundleError("conflict", f"model {file} belongs to the installed bundle {owner}")
        if owner is None and (target.exists() or target.is_symlink()):
            raise BundleError("conflict", f"{target} exists and is not a bundle's model")
        added.append(file)
    return added
