"""Audit checkpoints: the chain head and a Merkle root of the canon, signed with the
site's PGP key — the offline counterpart of anchoring.

A checkpoint records the audit chain's last entry (sequence and hash), every canon
document's newest version and the SHA-256 of its content, and the Merkle root over
those leaves (sorted by path). It is written as JSON with a detached, ASCII-armoured
signature made by python-gnupg with the key named by fingerprint. Verifying checks
the signature against that pinned fingerprint (python-gnupg calls any good signature
from any key in the keyring valid, so the fingerprint is compared explicitly; an
expired or revoked key does not count), that the audit chain still verifies and still
has that entry with that hash, and recomputes every recorded canon document, naming
each one whose content no longer matches.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from botarena.server.errors import CheckpointError
from botarena.server.signatures import sign_detached, verify_detached
from botarena.server.store import Store


def merkle_root(leaves: list[str]) -> str:
    """The Merkle root (SHA-256, last node duplicated on odd levels) of hex leaves."""
    level = [bytes.fromhex(leaf) for leaf in leaves] or [hashlib.sha256(b"").digest()]
    while len(level) > 1:
        if len(level) % 2:
            level.append(level[-1])
        level = [
            hashlib.sha256(a + b).digest() for a, b in zip(level[::2], level[1::2], strict=True)
        ]
    return level[0].hex()


def leaf(path: str, version: int, digest: str) -> str:
    return hashlib.sha256(f"{path}\0{version}\0{digest}".encode()).hexdigest()


def root_of(canon: dict[str, dict[str, Any]]) -> str:
    return merkle_root([leaf(p, d["version"], d["sha256"]) for p, d in sorted(canon.items())])


async def create(store: Store) -> dict[str, Any]:
    """The checkpoint document of the database's current state (the chain must verify).

    Each canon document is recorded with the digest recorded when it was merged: the
    content itself need not travel, verification recomputes it.
    """
    verdict = await store.audit.verify()
    if not verdict.ok:
        raise CheckpointError(f"the audit chain is broken, no checkpoint: {verdict.problem}")
    canon = await store.canon.heads()
    return {
        "created": datetime.now(UTC).isoformat(),
        "audit_seq": verdict.entries,
        "audit_head": verdict.head,
        "canon_root": root_of(canon),
        "canon": canon,
    }


class Signer:
    """Detached signatures with the site's key, in a GnuPG home of its own."""

    def __init__(self, home: Path) -> None:
        import gnupg

        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.home = home
        self.gpg = gnupg.GPG(gnupghome=str(home))

    def secret_keys(self) -> list[str]:
        """The fingerprints of the secret keys in the home."""
        return [key["fingerprint"].upper() for key in self.gpg.list_keys(secret=True)]

    def create_key(self, name: str) -> str:
        """A new ed25519 signing key without a passphrase (the home is the site's, 0700);
        its fingerprint."""
        request = self.gpg.gen_key_input(
            key_type="EDDSA",
            key_curve="ed25519",
            key_usage="sign",
            name_real=name,
            name_email=f"{name}@botarena.local",
            expire_date=0,
            no_protection=True,
        )
        made = self.gpg.gen_key(request)
        self._stop_agent()
        if not made.fingerprint:
            raise CheckpointError(f"gpg made no key: {made.status or made.stderr[-300:]}")
        return str(made.fingerprint).upper()

    def _stop_agent(self) -> None:
        subprocess.run(
            ["gpgconf", "--homedir", str(self.home), "--kill", "gpg-agent"],
            capture_output=True,
            check=False,
        )

    def sign(self, data: bytes, fingerprint: str) -> str:
        """A detached signature by ``fingerprint``; the gpg-agent that signing starts is
        stopped again, so no command leaves one running."""
        try:
            signed = sign_detached(self.gpg, data, fingerprint)
        finally:
            self._stop_agent()
        if not signed.data:
            raise CheckpointError(
                f"cannot sign with {fingerprint}: {signed.status or signed.stderr}"
            )
        return str(signed)

    def verify(self, data: bytes, signature: str, fingerprint: str) -> str | None:
        """None when ``signature`` is a good, current signature by ``fingerprint``;
        otherwise why not."""
        result = verify_detached(self.gpg, data, signature, self.home)
        if not result.valid:
            return f"bad signature ({result.status or 'no valid signature'})"
        if result.signer != fingerprint.upper().replace(" ", ""):
            return f"signed by {result.signer}, not the site key {fingerprint}"
        return None


@dataclass
class CheckpointReport:
    ok: bool
    problems: list[str] = field(default_factory=list)
    changed_documents: list[str] = field(default_factory=list)


async def check(store: Store, document: dict[str, Any]) -> CheckpointReport:
    """Compare a checkpoint (already signature-checked) with the database."""
    report = CheckpointReport(ok=True)
    if root_of(document["canon"]) != document["canon_root"]:
        report.problems.append("the checkpoint's own canon list does not give its root")
    verdict = await store.audit.verify()
    if not verdict.ok:
        report.problems.append(f"the audit chain is broken: {verdict.problem}")
    if await store.audit.hash_at(document["audit_seq"]) != document["audit_head"]:
        report.problems.append(f"audit entry {document['audit_seq']} is not the one checkpointed")
    for path, recorded in sorted(document["canon"].items()):
        found = await store.canon.get(path, recorded["version"])
        if found is None:
            report.changed_documents.append(f"{path} v{recorded['version']} is gone")
        elif hashlib.sha256(found[1].encode()).hexdigest() != recorded["sha256"]:
            report.changed_documents.append(f"{path} v{recorded['version']} changed")
    report.ok = not report.problems and not report.changed_documents
    return report


def dump(document: dict[str, Any]) -> bytes:
    return (json.dumps(document, indent=1, sort_keys=True) + "\n").encode()
