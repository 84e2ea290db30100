"""Stopping a long-running command the way operators and service managers expect: the
first SIGINT (Ctrl-C) or SIGTERM sets an event the command waits on, so it closes what
it started in order instead of dying mid-write."""

from __future__ import annotations

import asyncio
import signal


def stop_requested() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM, for the running event loop."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop
