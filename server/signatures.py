"""Detached PGP signatures, made and checked one way for bundles and audit checkpoints.

python-gnupg calls a good signature from *any* key in the keyring valid, so a check
here never stops at ``valid``: it gives the signer's full fingerprint (and gpg's status
words) for the caller to compare with the keys it pins.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import gnupg

FINGERPRINT = re.compile(r"^[0-9A-F]{40}$")


def fingerprint(text: str) -> str:
    """A full fingerprint in canonical form (upper case, no spaces), or ValueError."""
    clean = text.replace(" ", "").upper()
    if not FINGERPRINT.match(clean):
        raise ValueError(f"not a full 40-hex-digit fingerprint: {text!r}")
    return clean


@dataclass(frozen=True)
class Verified:
    """What gpg said of one detached signature."""

    valid: bool  # good and made by some key of the keyring: not enough alone
    signer: str  # the signing key's full fingerprint, upper case ("" when unknown)
    status: str  # gpg's status, lower case ("signature valid", "bad signature", ...)
    key_status: str  # "expired", "revoked"... of the key, lower case
    key_id: str
    made: datetime | None = None  # when the signature says it was made (good ones only)


def sign_detached(gpg: gnupg.GPG, data: bytes, fpr: str) -> gnupg.Sign:
    """An armored detached signature over ``data`` by exactly the key ``fpr``: gpg's
    ``--default-key`` (python-gnupg's ``keyid``) falls back to another secret key when
    that one is missing, ``--local-user`` fails instead."""
    return gpg.sign(data, keyid=fpr, detach=True, clearsign=False, extra_args=["--local-user", fpr])


def verify_detached(
    gpg: gnupg.GPG, data: bytes, armored: str, scratch: Path | None = None
) -> Verified:
    """Check the armored detached signature ``armored`` over ``data`` with ``gpg``'s
    keyring; the signature passes through a temporary file in ``scratch`` (default: the
    system's temporary folder)."""
    with tempfile.NamedTemporaryFile("w", suffix=".asc", dir=scratch) as sig:
        sig.write(armored)
        sig.flush()
        result = gpg.verify_data(sig.name, data)
    return Verified(
        valid=bool(result.valid),
        signer=(result.pubkey_fingerprint or result.fingerprint or "").upper(),
        status=(result.status or "").lower(),
        key_status=(getattr(result, "key_status", None) or "").lower(),
        key_id=result.key_id or "",
        made=_epoch(result.sig_timestamp),
    )


def _epoch(text: str | None) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(text or ""), UTC)
    except (ValueError, OverflowError, OSError):
        return None
