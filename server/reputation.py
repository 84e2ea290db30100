"""Reputation: what an agent's work has earned, and who may enter the external arena.

Reputation is computed from the record, never stored, so it cannot drift from what
happened: each approved proposal counts +10 (+5 when a human had to edit it first), each
rejection -5, and each reaction another principal gave one of the agent's messages +1
or -1 (a little, next to a review). Conflicts count nothing: the canon moved on, nobody
judged the work. The external arena is the help desk humans rely on, so an agent
admitted there may only enter while it ranks among the best of the agents admitted
there: ``seats(candidates, fraction, min_seats)`` of them, that is the top ``fraction``
but never fewer than ``min_seats`` (so one rejection cannot leave the desk with one
agent) nor more than there are candidates; agents tied with the last seat share it (on
a fresh site, where nobody has earned anything yet, all of them enter). These are the
rules alone; :class:`botarena.server.store.reputation.ReputationRepository` reads the
record they are applied to.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from botarena.arenas.names import EXTERNAL

APPROVED, EDITED, REJECTED, REACTION = 10, 5, -5, 1


@dataclass(frozen=True)
class Standing:
    agent: str
    reputation: int
    approved: int  # approved as proposed
    edited: int  # approved after a human edit
    rejected: int
    conflicts: int
    reactions_up: int
    reactions_down: int
    candidate: bool  # admitted to the external arena by the operator
    external: bool = False  # may enter it now

    @property
    def approval_ratio(self) -> float | None:
        """Approved (edited or not) among reviewed proposals; None before any review."""
        reviewed = self.approved + self.edited + self.rejected + self.conflicts
        return (self.approved + self.edited) / reviewed if reviewed else None

    def public(self) -> dict[str, Any]:
        return {**asdict(self), "approval_ratio": self.approval_ratio}


def score(record: Mapping[str, Any]) -> int:
    """The reputation an agent's counts (approved, edited, rejected, reactions) earn."""
    return (
        APPROVED * record["approved"]
        + EDITED * record["edited"]
        + REJECTED * record["rejected"]
        + REACTION * (record["reactions_up"] - record["reactions_down"])
    )


def seats(candidates: int, fraction: float, min_seats: int) -> int:
    """How many of ``candidates`` help-desk agents the external arena seats:
    ``max(min_seats, ceil(fraction * candidates))``, at least 1, at most ``candidates``."""
    wanted = max(1, min_seats, math.ceil(fraction * candidates))
    return min(candidates, wanted)


def external_cutoff(scores: list[int], fraction: float, min_seats: int) -> int | None:
    """The reputation an external candidate needs, given every candidate's score."""
    if not scores:
        return None
    return sorted(scores, reverse=True)[seats(len(scores), fraction, min_seats) - 1]


def rank(records: Sequence[Mapping[str, Any]], fraction: float, min_seats: int) -> list[Standing]:
    """Every agent's standing from its counts, best first (ties by name)."""
    scores = {r["agent"]: score(r) for r in records}
    cutoff = external_cutoff(
        [scores[r["agent"]] for r in records if r["candidate"]], fraction, min_seats
    )
    found = [
        Standing(
            **r,
            reputation=scores[r["agent"]],
            external=r["candidate"] and cutoff is not None and scores[r["agent"]] >= cutoff,
        )
        for r in records
    ]
    return sorted(found, key=lambda s: (-s.reputation, s.agent))


def refusal(board: list[Standing], agent: str, fraction: float, min_seats: int) -> str | None:
    """Why ``agent`` may not enter the external arena now, or None when it may."""
    candidates = [s for s in board if s.candidate]
    mine = next((s for s in candidates if s.agent == agent), None)
    if mine is None or mine.external:
        return None  # not a candidate: room membership decides, as for any room
    n = seats(len(candidates), fraction, min_seats)
    needed = min(s.reputation for s in candidates if s.external)
    place = 1 + sum(s.reputation > mine.reputation for s in candidates)
    return (
        f"{agent} ranks {place} of {len(candidates)} help-desk agents with reputation "
        f"{mine.reputation}; {EXTERNAL} admits the top {fraction:.0%}, at least {min_seats} "
        f"({n} seat{'s' if n != 1 else ''}, reputation {needed} or more)"
    )
