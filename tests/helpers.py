"""Small waiting helpers for tests that watch asynchronous delivery."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Callable
from pathlib import Path


async def eventually(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    """Wait until ``predicate()`` holds; fail the test with ``what`` when it never does."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        await asyncio.sleep(0.02)


async def stays(predicate: Callable[[], bool], duration: float = 0.5) -> bool:
    """True when ``predicate()`` holds throughout ``duration`` seconds."""
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        if not predicate():
            return False
        await asyncio.sleep(0.02)
    return predicate()


def make_key(home: Path, name: str) -> str:
    """A new ed25519 signing key in GnuPG home ``home``; its fingerprint."""
    subprocess.run(
        [
            "gpg",
            "--homedir",
            str(home),
            "--batch",
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
            "--quick-gen-key",
            f"{name} <{name}@site.local>",
            "ed25519",
            "sign",
            "1y",
        ],
        check=True,
        capture_output=True,
    )
    listing = subprocess.run(
        [
            "gpg",
            "--homedir",
            str(home),
            "--with-colons",
            "--list-secret-keys",
            f"{name}@site.local",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr"))
