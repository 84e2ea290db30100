"""Small waiting helpers for tests that watch asynchronous delivery."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


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
