"""The site's trusted bundle keys, pinned by full fingerprint, and signature checks.

Keys live in a GnuPG home of the trust store's own (``var/trust/gnupg``); the pinned
list (``keys.json``) is what makes one trusted, because python-gnupg calls a good
signature from *any* key in the keyring valid. A signature counts only when it is good,
made by a pinned key, and that key is neither expired nor revoked; a bad signature is
never mistaken for a missing one. Each check names its outcome so that a refusal can
say exactly why. Checks and listings only read: gpg runs without its random seed file,
locks or trust database upkeep, and the signature under check stays outside the folder,
so a ``verify`` leaves the trust folder byte for byte as it was.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import gnupg

from botarena.server.errors import BundleError
from botarena.server.files import write_atomic
from botarena.server.signatures import fingerprint, verify_detached

READ_ONLY = ["--no-random-seed-file", "--lock-never", "--no-auto-check-trustdb"]


def full_fingerprint(text: str, code: str = "key") -> str:
    """``text`` as a full fingerprint in canonical form; :class:`BundleError` ``code``
    when it is not one."""
    try:
        return fingerprint(text)
    except ValueError as exc:
        raise BundleError(code, str(exc)) from None


@dataclass(frozen=True)
class SignatureCheck:
    fingerprint: str  # as named in the bundle
    outcome: str  # good, bad_signature, unknown_key, untrusted_key, expired_key, revoked_key
    detail: str = ""
    made: datetime | None = None  # when a good signature says it was made

    @property
    def counts(self) -> bool:
        return self.outcome == "good"


class TrustStore:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.home = directory / "gnupg"
        self.pins = directory / "keys.json"

    def _gpg(self) -> gnupg.GPG:
        self.home.mkdir(parents=True, exist_ok=True, mode=0o700)
        return gnupg.GPG(gnupghome=str(self.home))

    def _reader(self) -> gnupg.GPG | None:
        """gpg on the keyring for reading only; None when there is no keyring yet."""
        if not self.home.is_dir():
            return None
        return gnupg.GPG(gnupghome=str(self.home), options=READ_ONLY)

    def pinned(self) -> dict[str, dict[str, Any]]:
        """The pinned keys by fingerprint (:class:`BundleError` ``key`` when the pin file
        cannot be read)."""
        if not self.pins.exists():
            return {}
        try:
            keys = json.loads(self.pins.read_text())["keys"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise BundleError("key", f"{self.pins} cannot be read: {exc!r}") from None
        if not isinstance(keys, dict):
            raise BundleError("key", f"{self.pins} cannot be read: its keys are not a mapping")
        return keys

    def _save(self, keys: dict[str, dict[str, Any]]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        write_atomic(self.pins, json.dumps({"keys": keys}, indent=1, sort_keys=True) + "\n")

    def add(self, key_file: Path, expected: str) -> dict[str, Any]:
        """Import a public key and pin it; ``expected`` must be its full fingerprint
        (:class:`BundleError` ``key`` otherwise)."""
        wanted = full_fingerprint(expected)
        try:
            armored = key_file.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise BundleError("key", f"cannot read {key_file}: {exc}") from None
        result = self._gpg().import_keys(armored)
        found = {f.upper() for f in result.fingerprints}
        if wanted not in found:
            shown = ", ".join(sorted(found)) or "no key"
            raise BundleError("key", f"{key_file} holds {shown}, not {wanted}")
        info = self._key(wanted) or {}
        keys = self.pinned()
        keys[wanted] = {"added": datetime.now(UTC).isoformat(), "uid": info.get("uid", "")}
        self._save(keys)
        return {"fingerprint": wanted, **keys[wanted]}

    def remove(self, key: str) -> None:
        """Unpin a key and drop it from the keyring (:class:`BundleError` ``key`` when
        it is not pinned)."""
        wanted = full_fingerprint(key)
        keys = self.pinned()
        if wanted not in keys:
            raise BundleError("key", f"{wanted} is not a trusted key")
        del keys[wanted]
        self._save(keys)
        self._gpg().delete_keys(wanted)

    def _key(self, fpr: str) -> dict[str, Any] | None:
        gpg = self._reader()
        for key in gpg.list_keys(keys=[fpr]) if gpg is not None else []:
            if key["fingerprint"].upper() == fpr:
                return {
                    "uid": (key.get("uids") or [""])[0],
                    "expires": key.get("expires") or "",
                    "revoked": key.get("trust") == "r",
                    "expired": key.get("trust") == "e",
                }
        return None

    def listing(self) -> list[dict[str, Any]]:
        """Every pinned key with its state in the keyring."""
        found = []
        for fpr, pin in sorted(self.pinned().items()):
            key = self._key(fpr)
            state = "missing from the keyring"
            if key is not None:
                state = "revoked" if key["revoked"] else "expired" if key["expired"] else "ok"
            found.append({"fingerprint": fpr, **pin, "state": state})
        return found

    def check(self, data: bytes, named: str, armored: str) -> SignatureCheck:
        """What one detached signature over ``data`` is worth."""
        pinned = self.pinned()
        gpg = self._reader()
        if gpg is None:
            return SignatureCheck(named, "unknown_key", f"key {named} is not known here")
        result = verify_detached(gpg, data, armored)
        signer, status, key_status = result.signer, result.status, result.key_status
        if "bad" in status:
            return SignatureCheck(named, "bad_signature", "the signature does not match")
        if "no public key" in status:
            return SignatureCheck(named, "unknown_key", f"key {result.key_id} is not known here")
        if "revoked" in status or "revoked" in key_status:
            return SignatureCheck(named, "revoked_key", f"{signer or named} is revoked")
        if "expired" in status or "expired" in key_status:
            return SignatureCheck(named, "expired_key", f"{signer or named} has expired")
        if not result.valid:
            return SignatureCheck(named, "bad_signature", status or "not a valid signature")
        if signer not in pinned:
            return SignatureCheck(named, "untrusted_key", f"{signer} is not a trusted key")
        if signer != named:
            return SignatureCheck(named, "bad_signature", f"filed as {named} but made by {signer}")
        return SignatureCheck(named, "good", made=result.made)
