"""Sharing the agents out among worker processes, by rendezvous hashing.

Every worker knows every persona and token; which agents it runs follows from the live
workers the hub lists (``workers``): an agent belongs to the live worker that ranks
highest for it (:func:`owner`, highest random weight). Every worker computes the same
owners from the same list with no talk between them; when a worker joins or dies only
the agents it gains or held move, about one in as many as there are workers. The
lease (:mod:`botarena.server.hub.leases`) makes the outcome safe whatever the workers
believe: an agent is admitted from one worker at a time.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import socket
from collections.abc import Iterable


def rank(agent: str, worker: str) -> int:
    """The weight of ``worker`` for ``agent``: the first 8 bytes of a hash of both."""
    digest = hashlib.blake2b(f"{worker}\x00{agent}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def owner(agent: str, workers: Iterable[str]) -> str:
    """The worker that runs ``agent`` among ``workers`` (at least one)."""
    return max(workers, key=lambda worker: (rank(agent, worker), worker))


def worker_id() -> str:
    """A new id for this worker process: its host, its process id and a random part
    (a restarted worker is a new one, even where every container is process 1)."""
    host = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname())[:40].strip(".-_") or "worker"
    return f"{host}-{os.getpid()}-{secrets.token_hex(3)}"
